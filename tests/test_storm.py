"""The 429 storm: a 5-runner showdown whose every runner is rate-limited 3 times finishes within the retry budget."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from tests.fake_llm import FakeLLM, Reply
from tests.helpers import PYTEST, RunnerScript, Script, fake_env, git, make_repo, runner_of

DESIGN = "Build calc.add(a, b): the sum of two integers, with pytest tests."
SUM = "def add(a, b):\n    return a + b\n"
STRONG = "def add(a: int, b: int) -> int:\n    '''The sum.'''\n    total = a + b  # STRONG\n    return total\n"
RUNNERS = 5
CONCURRENCY = 3
MAX_RETRIES = 3
STORM = 3  # 429s each runner's first requests get
LATENCY = 0.3  # every answer's latency, 429s included, so requests overlap at the server


class Storm(RunnerScript):
    """RunnerScript whose every runner gets 429 + Retry-After: 1 on its first STORM requests."""

    def __init__(self) -> None:
        code = {f"runner-{i}": SUM for i in range(1, RUNNERS + 1)} | {"runner-2": STRONG}
        super().__init__(code, judge=Script("# STRONG"), delay=LATENCY)
        self.lock = threading.Lock()
        self.seen: Counter[str] = Counter()
        self.log: list[tuple[str, int]] = []  # (runner or role, status) in arrival order

    def __call__(self, body: dict) -> Reply:
        name = runner_of(body)
        with self.lock:
            if name is not None:
                self.seen[name] += 1
            limited = name is not None and self.seen[name] <= STORM
            self.log.append((name or "other", 429 if limited else 200))
        if limited:
            return Reply(status=429, headers={"Retry-After": "1"}, error_message="rate limited", delay=LATENCY)
        return super().__call__(body)


def test_a_429_storm_over_five_runners_completes_within_the_retry_budget_and_the_concurrency(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    design = tmp_path / "design.md"
    design.write_text(DESIGN)
    storm = Storm()
    fake_llm.responder = storm
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "SPEEDRUN_HOME": str(tmp_path / "state"),
        **fake_env(fake_llm),
        "SPEEDRUN_MAX_RETRIES": str(MAX_RETRIES),
        "SPEEDRUN_LIMITS__CEREBRAS__CONCURRENCY": str(CONCURRENCY),
    }
    argv = ["showdown", "--design", str(design), "--repo", str(repo), "--feature", "calc", "--runners", str(RUNNERS)]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "speedrun", *argv, "--test-cmd", PYTEST],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]

    # Everything completed: every runner passed, the judge picked the strong one, its code is on its branch.
    rows = [line.split()[:4] for line in done.stdout.splitlines() if line.startswith("runner-")]
    assert rows == [[f"runner-{i}", "passed", "1", "passed"] for i in range(1, RUNNERS + 1)], done.stdout
    assert "winner: runner-2 (branch calc/speed-run/runner-2)" in done.stdout
    assert git(repo, "show", "calc/speed-run/runner-2:calc.py") + "\n" == STRONG
    assert "Winner: **runner-2**" in (repo / "docs/plans/calc/speed-run/showdown/result.md").read_text()
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1

    # The retry budget, exactly: each runner makes 2 calls (plan, generate) and its first 3 requests were refused,
    # each retried once (3 <= SPEEDRUN_MAX_RETRIES, so no call gave up); then one fresh-eyes review per runner and
    # the judge in both orders. Nothing else was asked, and no call was retried more than MAX_RETRIES times.
    calls = {"plan+generate": 2 * RUNNERS, "reviews": RUNNERS, "judge": 2}
    requests = fake_llm.chat_requests()
    assert len(requests) == sum(calls.values()) + STORM * RUNNERS, Counter(storm.log)
    assert Counter(status for _, status in storm.log) == {429: STORM * RUNNERS, 200: sum(calls.values())}
    assert all(storm.seen[f"runner-{i}"] == STORM + 2 for i in range(1, RUNNERS + 1)), storm.seen
    assert len(requests) <= sum(calls.values()) * (1 + MAX_RETRIES)
    # The shared concurrency held at the server, and was reached (so this check can fail).
    assert fake_llm.max_in_flight == CONCURRENCY
    # Retry-After was honoured: 15 refusals at 3 a time, each round held ~1 s by the shared block.
    assert took < 60, took
