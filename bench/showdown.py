"""Benchmark: an N-runner showdown's fan-out against one runner doing the same work alone, with slow model replies.

Both run side by side in one process against the scripted server (tests/fake_llm.py), every reply delayed by the
same latency (default 1 s). The solo run is one runner's branch (run_runner: plan, turbo's generate-test loop,
commit) in its own worktree; the showdown is the real graph, timed from its worktrees being ready to the gate (the
fan-out). The target is about 1x: N runners take about the wall time of one. The whole showdown's wall time
(judge and promotion included) is printed too. Run: uv run python bench/showdown.py [RUNNERS] [DELAY_S] [ROUNDS]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Test-only server and script; benchmarks are not product code.
from tests.fake_llm import FakeLLM  # noqa: E402
from tests.helpers import PYTEST, RunnerScript, Script, make_repo  # noqa: E402

TARGET = 1.25  # issue 12's bound for parallel efficiency: N runners within 1.25x the wall time of one
DESIGN = "Build calc.add(a, b): the sum of two integers, with pytest tests."
CODE = [
    "def add(a, b):\n    return a + b\n",
    "def add(a: int, b: int) -> int:\n    total = a + b  # STRONG\n    return total\n",
    "def add(a, b):\n    return sum((a, b))\n",
    "def add(a, b):\n    return int(a) + int(b)\n",
    "def add(a, b):\n    return a.__add__(b)\n",
]


def script(runners: int, delay: float) -> RunnerScript:
    """Plans, code and judge answers told apart by runner; every reply `delay` seconds late."""
    return RunnerScript({f"runner-{i + 1}": CODE[i] for i in range(runners)}, judge=Script("# STRONG"), delay=delay)


async def solo(workdir: Path, test_command: str) -> float:
    """Seconds one runner takes alone for the work each showdown runner does: plan, generate, test, commit."""
    from speedrun import worktrees
    from speedrun.config import RunContext, Settings
    from speedrun.graphs.parallel import runner_tasks
    from speedrun.nodes.run_runner import run_runner
    from speedrun.state.parallel import ShowdownState

    repo = make_repo(workdir / "solo")
    repo_state = await worktrees.inspect_repo(str(repo))
    (wt,) = worktrees.plan_worktrees(repo_state, "calc", ["runner-1"])
    journal = worktrees.Journal.for_run(Settings().home, f"bench-solo-{workdir.name}")
    await worktrees.create_worktree(repo_state, wt, repo_state.head, journal)
    state = ShowdownState(
        design=DESIGN,
        feature="calc",
        test_command=test_command,
        design_text=DESIGN,
        worktrees=[wt],
        base=repo_state.head,
    )
    started = time.perf_counter()
    out = await run_runner(runner_tasks(state)[0], SimpleNamespace(context=RunContext(Settings())))
    elapsed = time.perf_counter() - started
    assert out["results"][0].status == "passed", out["results"][0]
    return elapsed


async def showdown(workdir: Path, runners: int, test_command: str) -> tuple[float, float]:
    """(fan-out seconds, whole-run seconds) of a real showdown graph with `runners` runners."""
    from speedrun.config import RunContext, Settings
    from speedrun.graphs.showdown import graph

    repo = make_repo(workdir / f"showdown-{runners}")
    args = {"design": DESIGN, "repo": str(repo), "feature": "calc", "test_command": test_command, "runners": runners}
    marks: dict[str, float] = {}
    final: Any = None
    started = time.perf_counter()
    async for update in graph.astream(args, context=RunContext(Settings()), stream_mode="updates"):
        for name, value in update.items():
            marks.setdefault(name, time.perf_counter())
            if name == "write_result":
                final = value["result"]
    total = time.perf_counter() - started
    assert final is not None and final.status == "promoted", final
    assert [r.status for r in final.runners] == ["passed"] * runners, final.runners
    return marks["gate"] - marks["prepare_worktrees"], total


#: The same work with two test commands: the real tests (pytest starts, ~1.2 s of CPU each) and none at all
#: (`true`), which leaves the model's latency alone, so the two ratios show what the runners hide and what the
#: machine's cores cost.
TEST_COMMANDS = {"pytest": PYTEST, "no tests": "true"}


async def measure(
    fake: FakeLLM, runners: int, delay: float, rounds: int, tmp: Path
) -> dict[str, dict[str, list[float]]]:
    """Warm up at zero latency (imports, first connection, pytest's first start), then alternate the runs."""
    fake.responder = script(runners, 0.0)
    await showdown(tmp / "warmup", runners, PYTEST)
    fake.responder = script(runners, delay)
    times: dict[str, dict[str, list[float]]] = {
        label: {"solo": [], "fanout": [], "total": []} for label in TEST_COMMANDS
    }
    for i in range(rounds):
        for label, command in TEST_COMMANDS.items():
            workdir = tmp / f"round-{i}-{label.replace(' ', '-')}"
            times[label]["solo"].append(await solo(workdir, command))
            fanout, total = await showdown(workdir, runners, command)
            times[label]["fanout"].append(fanout)
            times[label]["total"].append(total)
    return times


def report(times: dict[str, dict[str, list[float]]], runners: int) -> None:
    """One line per test command: medians, and the median of each round's fan-out/solo ratio with its verdict.

    Ratios are paired per round (solo and showdown run back to back), so load that comes and goes on a shared
    machine skews both sides of a ratio alike."""
    for label, seen in times.items():
        one, fan, total = (statistics.median(seen[k]) for k in ("solo", "fanout", "total"))
        ratios = [f / s for f, s in zip(seen["fanout"], seen["solo"], strict=True)]
        ratio = statistics.median(ratios)
        verdict = "meets" if ratio <= TARGET else "MISSES"
        spread = f" (rounds {min(ratios):.2f}-{max(ratios):.2f}x)" if len(ratios) > 1 else ""
        print(
            f"  tests={label}: one runner alone {one:.2f}s, {runners}-runner fan-out {fan:.2f}s "
            f"(whole showdown {total:.2f}s): ratio {ratio:.2f}x{spread}, {verdict} the target of at most {TARGET}x"
        )


def main() -> None:
    """Parse RUNNERS DELAY_S ROUNDS, run the bench against a scripted server, print the ratios and verdicts."""
    runners = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    with FakeLLM() as fake, tempfile.TemporaryDirectory() as tmp:
        # Per-minute budgets off: this measures how much latency the runners hide, not the provider's quota.
        # They still share one concurrency budget, as in a real run.
        os.environ.update(
            CEREBRAS_API_KEY="sk-bench",
            CEREBRAS_URL=fake.base_url,
            CEREBRAS_MODEL="fake-model",
            SPEEDRUN_HOME=str(Path(tmp) / "home"),
            SPEEDRUN_LIMITS__CEREBRAS__RPM="1000000",
            SPEEDRUN_LIMITS__CEREBRAS__TPM="1000000000",
        )
        times = asyncio.run(measure(fake, runners, delay, rounds, Path(tmp)))
        in_flight = fake.max_in_flight
        from speedrun.config import Settings

        slots = Settings().role("generator").primary.limits.concurrency
    print(f"showdown: {runners} runners vs 1, model reply delay {delay}s, {rounds} round(s), {os.cpu_count()} cores")
    print(f"  most model requests in flight at once: {in_flight}; the provider's concurrency budget: {slots}")
    if runners > slots:
        # The shared budget is the user's setting, not overhead: say so rather than let the ratio look like a bug.
        print(f"  {runners} runners > {slots} slots: some wait; SPEEDRUN_LIMITS__CEREBRAS__CONCURRENCY raises it")
    report(times, runners)


if __name__ == "__main__":
    main()
