"""Benchmark: MCP spawn → initialize of `speedrun mcp` against a bare MCPServer with one tool, same interpreter.

Rounds alternate between the two servers (so load that comes and goes on a shared machine hits both alike) and
the median of the rounds' ratios is held to the target. Also shown: the time to the first tools/list answer, and
the CPU time each server process had used when it answered initialize (read from /proc), which is steadier than
wall time on a busy machine. Run: uv run python -m bench startup [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client

from bench.common import ROOT, Result, child_pids, emit, median, server_env, spread

TARGET = 1.15
BARE = '''
from mcp.server.mcpserver import MCPServer
server = MCPServer("bare")
@server.tool()
def ping() -> str:
    """Answer pong."""
    return "pong"
server.run()
'''


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def spawn_once(params: StdioServerParameters) -> tuple[float, float, float]:
    """(seconds to initialize, seconds to the first tools/list answer, server CPU seconds at initialize)."""
    before = set(child_pids())
    started = time.perf_counter()
    with open(os.devnull, "w") as quiet:
        async with stdio_client(params, errlog=quiet) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            ready = time.perf_counter()
            new = [p for p in child_pids() if p not in before]
            cpu = cpu_seconds(new[0]) if new else float("nan")
            await session.list_tools()
            listed = time.perf_counter()
    return ready - started, listed - started, cpu


async def measure(rounds: int, tmp: Path) -> dict[str, list[tuple[float, float, float]]]:
    """Alternate bare and speedrun rounds, after one unmeasured warm-up of each (page cache, .pyc files)."""
    bare_file = tmp / "bare.py"
    bare_file.write_text(BARE)
    env = server_env(None, tmp)
    servers = {
        "bare": StdioServerParameters(command=sys.executable, args=[str(bare_file)], env=env, cwd=str(ROOT)),
        "speedrun": StdioServerParameters(
            command=sys.executable, args=["-m", "speedrun", "mcp"], env=env, cwd=str(ROOT)
        ),
    }
    for params in servers.values():
        await spawn_once(params)
    seen: dict[str, list[tuple[float, float, float]]] = {name: [] for name in servers}
    for i in range(rounds):
        order = list(servers) if i % 2 == 0 else list(reversed(servers))
        for name in order:
            seen[name].append(await spawn_once(servers[name]))
    return seen


def main(argv: list[str] | None = None) -> list[Result]:
    """Run the rounds, print the medians and the verdict."""
    parser = argparse.ArgumentParser(prog="python -m bench startup", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="7 rounds instead of 13")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    rounds = args.rounds or (7 if args.quick else 13)
    with tempfile.TemporaryDirectory() as tmp:
        seen = asyncio.run(measure(rounds, Path(tmp)))
    init = {name: [s[0] for s in v] for name, v in seen.items()}
    listed = {name: [s[1] for s in v] for name, v in seen.items()}
    cpu = {name: [s[2] for s in v] for name, v in seen.items()}
    print(f"MCP start-up, {rounds} alternating rounds of each server, medians:")
    for name in seen:
        print(
            f"  {name:<9} spawn→initialize {median(init[name]) * 1000:5.0f} ms "
            f"(rounds {spread(init[name], 1000, ' ms')}), →tools/list {median(listed[name]) * 1000:5.0f} ms, "
            f"server CPU at initialize {median(cpu[name]) * 1000:5.0f} ms"
        )
    # Each round's two spawns ran back to back, so their ratio sees the same load; the median of those ratios is
    # steadier than a ratio of medians when other jobs come and go.
    ratios = [o / b for o, b in zip(init["speedrun"], init["bare"], strict=True)]
    ratio = median(ratios)
    cpu_ratio = median([o / b for o, b in zip(cpu["speedrun"], cpu["bare"], strict=True)])
    extra = (median(init["speedrun"]) - median(init["bare"])) * 1000
    return [
        emit(
            Result(
                name="startup",
                title="MCP start-up, spawn→initialize, speedrun mcp / bare MCPServer",
                measured=f"{ratio:.2f}x (rounds {spread(ratios, digits=2)}x; {extra:+.0f} ms; CPU {cpu_ratio:.2f}x)",
                target=f"<= {TARGET}x",
                ok=ratio <= TARGET,
                note=""
                if ratio <= TARGET
                else "speedrun mcp also imports pydantic-settings and its record models and builds 12 tools' JSON "
                "schemas (~100 ms of CPU); wall-time ratios swing with the machine's load",
            )
        )
    ]


if __name__ == "__main__":
    main()
