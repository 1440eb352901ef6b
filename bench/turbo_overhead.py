"""Benchmark: turbo's own share of a run's wall time (wall time minus model time minus test time).

The `turbo` tool through a real MCP session to `speedrun mcp`, against the scripted server with 500 ms per reply:
the generator writes calc.py with a bug and its test, the tests fail, the fixer's edit repairs it, the tests pass
(2 model calls, 2 test runs, 1 fix cycle). Model time is the union of the requests' spans at the scripted server;
test time is what the test command itself took, stamped by a wrapper inside it (so the sandbox's start-up counts
as turbo's). Wall time is the tool call as the client sees it. Run: uv run python -m bench turbo [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client

from bench.common import ROOT, Result, emit, median, server_env
from tests.fake_llm import FakeLLM, Reply
from tests.helpers import PYTEST, TEST_CALC, file_blocks, fix_reply

TARGET = 0.10
DELAY = 0.5
CONTRACT = (
    "DATA CONTRACT:\nints\n\nAPI CONTRACT:\nadd(a, b) -> int in calc.py\n\nALGORITHM:\nsum\n\n"
    "RULES:\ncalc.py and test_calc.py\n"
)
STAMPS = ".bench-test-times"
# The wrapper stamps the wall clock around the real test command and keeps its exit code.
TEST_COMMAND = (
    f'echo "start $(date +%s.%N)" >> {STAMPS}; {PYTEST}; rc=$?; echo "end $(date +%s.%N)" >> {STAMPS}; exit $rc'
)


def answer(body: dict) -> Reply:
    """The generator's buggy first pass, or the fixer's one-line repair, each DELAY seconds late."""
    system = body["messages"][0]["content"]
    if system.startswith("You repair code"):
        return Reply(content=fix_reply(("calc.py", "return a - b", "return a + b")), delay=DELAY)
    return Reply(
        content=file_blocks({"calc.py": "def add(a, b):\n    return a - b\n", "test_calc.py": TEST_CALC}), delay=DELAY
    )


def union(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one span."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def test_seconds(workspace: Path) -> float:
    """Seconds the test command ran, summed over its runs, from the wrapper's stamps."""
    stamps = [line.split() for line in (workspace / STAMPS).read_text().splitlines()]
    starts = [float(t) for kind, t in stamps if kind == "start"]
    ends = [float(t) for kind, t in stamps if kind == "end"]
    return sum(e - s for s, e in zip(starts, ends, strict=True))


async def one_run(session: ClientSession, fake: FakeLLM, workspace: Path) -> tuple[float, float, float, int]:
    """(wall, model, test seconds, fix cycles) of one turbo run."""
    first = len(fake.chat_requests())
    started = time.perf_counter()
    result = await session.call_tool(
        "turbo",
        {"contract": CONTRACT, "output_dir": str(workspace), "test_command": TEST_COMMAND, "wait_seconds": 120},
    )
    wall = time.perf_counter() - started
    assert not result.is_error, result.content
    status = result.structured_content or {}
    assert status.get("status") == "passed", status
    sent = fake.chat_requests()[first:]
    model = union([(r.started, r.finished or r.started) for r in sent])
    return wall, model, test_seconds(workspace), len(sent) - 1


async def measure(fake: FakeLLM, tmp: Path, rounds: int) -> list[tuple[float, float, float, int]]:
    """One unmeasured warm-up run (the server's first imports), then `rounds` runs."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "speedrun", "mcp"], env=server_env(fake.base_url, tmp), cwd=str(ROOT)
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await one_run(session, fake, tmp / "root" / "warm-up")
        return [await one_run(session, fake, tmp / "root" / f"run-{i}") for i in range(rounds)]


def main(argv: list[str] | None = None) -> list[Result]:
    """Run turbo, split each run's wall time, print the shares and the verdict on the median."""
    parser = argparse.ArgumentParser(prog="python -m bench turbo", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 run instead of 3")
    rounds = 1 if parser.parse_args(argv).quick else 3
    with FakeLLM() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.responder = answer
        runs = asyncio.run(measure(fake, Path(tmp), rounds))
    print(f"turbo over MCP, {rounds} runs: generate (buggy) → tests fail → 1 fix → tests pass; {DELAY}s per reply")
    shares = []
    for wall, model, tests, cycles in runs:
        own = wall - model - tests
        shares.append(own / wall)
        print(
            f"  wall {wall:5.2f} s = model {model:5.2f} s + tests {tests:5.2f} s + turbo {own:5.2f} s "
            f"({own / wall:5.1%}), {cycles} fix cycle(s)"
        )
    share = median(shares)
    return [
        emit(
            Result(
                name="turbo",
                title="Turbo overhead: wall - model - test time, share of the whole",
                measured=f"{share:.1%} median of {rounds} runs",
                target=f"<= {TARGET:.0%}",
                ok=share <= TARGET,
            )
        )
    ]


if __name__ == "__main__":
    main()
