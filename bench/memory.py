"""Benchmark: the MCP server's memory after start and after a 5-runner showdown (a reading; no target).

`speedrun mcp` over stdio against the scripted server; its VmRSS (resident now) and VmHWM (peak resident) are read
from /proc/<pid>/status right after initialize, and again once a 5-runner showdown with real pytest runs has been
judged and promoted. Test processes are the server's children and are not counted. Beside it, the bare MCPServer
with one tool from the start-up benchmark, for scale. Run: uv run python -m bench memory
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client

from bench.common import ROOT, Result, child_pids, emit, server_env, vm_status
from bench.showdown import DESIGN, script
from bench.startup import BARE
from tests.fake_llm import FakeLLM
from tests.helpers import PYTEST, make_repo

RUNNERS = 5


async def server_pid(before: set[int]) -> int:
    """The server process this client just started."""
    (pid,) = [p for p in child_pids() if p not in before]
    return pid


async def bare_rss(tmp: Path) -> int:
    """KiB resident in a bare one-tool MCPServer after initialize."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "bare.py").write_text(BARE)
    params = StdioServerParameters(command=sys.executable, args=[str(tmp / "bare.py")], env=server_env(None, tmp))
    before = set(child_pids())
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return vm_status(await server_pid(before))["VmRSS"]


async def measure(fake: FakeLLM, tmp: Path) -> tuple[dict[str, int], dict[str, int], float]:
    """(/proc readings after initialize, after the showdown, the showdown's seconds)."""
    repo = make_repo(tmp / "root" / "repo")
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "speedrun", "mcp"], env=server_env(fake.base_url, tmp), cwd=str(ROOT)
    )
    before = set(child_pids())
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        pid = await server_pid(before)
        await asyncio.sleep(1.0)  # let the warm-up imports that follow initialize finish: they are part of a start
        started_rss = vm_status(pid)
        started = time.perf_counter()
        args = {"design": DESIGN, "feature": "calc", "repo": str(repo), "runners": RUNNERS, "test_command": PYTEST}
        result = await session.call_tool("showdown", {**args, "wait_seconds": 300})
        seconds = time.perf_counter() - started
        status = result.structured_content or {}
        assert not result.is_error and (status.get("result") or {}).get("status") == "promoted", status
        return started_rss, vm_status(pid), seconds


def main(argv: list[str] | None = None) -> list[Result]:
    """Read the server's memory before and after, print it; a reading, so no verdict."""
    parser = argparse.ArgumentParser(prog="python -m bench memory", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the same single showdown")
    parser.parse_args(argv)
    with FakeLLM() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.responder = script(RUNNERS, 0.0)
        start, after, seconds = asyncio.run(measure(fake, Path(tmp)))
        bare = asyncio.run(bare_rss(Path(tmp) / "bare"))
    mib = 1024
    print(f"speedrun mcp memory (server process only), {RUNNERS}-runner showdown with pytest took {seconds:.1f} s")
    print(f"  after start:         VmRSS {start['VmRSS'] / mib:6.1f} MiB (bare MCPServer: {bare / mib:.1f} MiB)")
    print(f"  after the showdown:  VmRSS {after['VmRSS'] / mib:6.1f} MiB, peak VmHWM {after['VmHWM'] / mib:6.1f} MiB")
    return [
        emit(
            Result(
                name="memory",
                title=f"MCP server RSS: after start / after a {RUNNERS}-runner showdown (peak)",
                measured=f"{start['VmRSS'] / mib:.0f} MiB / {after['VmRSS'] / mib:.0f} MiB "
                f"(peak {after['VmHWM'] / mib:.0f} MiB; bare MCPServer {bare / mib:.0f} MiB)",
                target="—",
                ok=None,
            )
        )
    ]


if __name__ == "__main__":
    main()
