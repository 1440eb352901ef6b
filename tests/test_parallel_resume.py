"""A showdown killed during its fan-out resumes in a new process: finished runners are not re-run, nothing is left."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import anyio
import pytest

from speedrun import worktrees
from speedrun.config import Settings
from tests.fake_llm import FakeLLM, Reply
from tests.helpers import PLAN_SYSTEM_START, PYTEST, RunnerScript, Script, git, make_repo, runner_of, wait_for

CHILD = Path(__file__).with_name("parallel_child.py")
ROOT = Path(__file__).resolve().parents[1]
DESIGN = "Build calc.add(a, b): the sum of two integers, with pytest tests."
SUM = "def add(a, b):\n    return a + b\n"
STRONG = "def add(a: int, b: int) -> int:\n    '''The sum.'''\n    total = a + b  # STRONG\n    return total\n"
BUILTIN = "def add(a, b):\n    return sum((a, b))\n"
SLOW_S = 120.0  # runner-3's first generate call: far longer than the test waits, so it is in flight at the kill


class SlowThird(RunnerScript):
    """RunnerScript whose runner-3 generator call hangs the first time; counts plan and generate calls per runner."""

    def __init__(self) -> None:
        super().__init__({"runner-1": SUM, "runner-2": STRONG, "runner-3": BUILTIN}, judge=Script("# STRONG"))
        self.lock = threading.Lock()
        self.calls: Counter[tuple[str, str]] = Counter()

    def __call__(self, body: dict) -> Reply:
        name = runner_of(body)
        kind = "plan" if body["messages"][0]["content"].startswith(PLAN_SYSTEM_START) else "generate"
        with self.lock:
            if name is not None:
                self.calls[(name, kind)] += 1
            first_slow = (name, kind) == ("runner-3", "generate") and self.calls[(name, kind)] == 1
        reply = super().__call__(body)
        if first_slow:
            reply.delay = SLOW_S
        return reply


def child(db: Path, thread: str, payload: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(db), thread, payload],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finished_by_thread(db: Path) -> dict[str, int]:
    """Per thread: how many run_runner tasks have their result saved as pending writes of the parent graph."""
    if not db.exists():
        return {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        try:
            rows = conn.execute(
                "SELECT thread_id, count(*) FROM writes WHERE checkpoint_ns = '' AND channel = 'results' "
                "GROUP BY thread_id"
            ).fetchall()
        except sqlite3.OperationalError:  # the saver has not made its tables yet
            return {}
    return {str(thread): int(n) for thread, n in rows}


def finished_runners(db: Path, thread: str) -> int:
    """How many run_runner tasks of `thread` have their result saved."""
    return finished_by_thread(db).get(thread, 0)


def committed(repo: Path, branch: str) -> bool:
    found = subprocess.run(["git", "rev-parse", "-q", "--verify", branch], cwd=repo, capture_output=True, text=True)
    return found.returncode == 0 and found.stdout.strip() != git(repo, "rev-parse", "main")


def processes_in(folder: Path) -> list[int]:
    """Pids of live processes whose working directory lies in `folder` (a test run left behind would)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == str(folder) or cwd.startswith(f"{folder}/"):
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="reads working directories from /proc")
def test_killed_during_the_fan_out_resumes_without_rerunning_finished_runners_and_leaves_nothing(
    speedrun_env, fake_llm: FakeLLM, tmp_path
):
    repo = make_repo(tmp_path / "repo")
    script = SlowThird()
    fake_llm.responder = script
    db, thread = tmp_path / "checkpoints.sqlite", "showdown-kill-1"
    inputs = {"design": DESIGN, "repo": str(repo), "feature": "calc", "test_command": PYTEST, "runners": 3}

    first = child(db, thread, json.dumps(inputs), speedrun_env)
    try:
        wait_for(
            lambda: committed(repo, "calc/speed-run/runner-1") and committed(repo, "calc/speed-run/runner-2"),
            90,
            "runners 1 and 2 to commit on their branches",
        )
        wait_for(lambda: finished_runners(db, thread) == 2, 30, "both finished runners' writes to be saved")
        assert script.calls[("runner-3", "generate")] == 1 and first.poll() is None  # runner-3 is mid-call
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=10)
    assert first.returncode == -signal.SIGKILL
    before = dict(script.calls)

    second = child(db, thread, "resume", speedrun_env)
    out, err = second.communicate(timeout=180)
    assert second.returncode == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])

    # The run finished, with every runner's result, and runner-2's strong code won.
    assert (result["status"], result["winner"]) == ("promoted", "runner-2"), result
    assert [(r["name"], r["status"]) for r in result["runners"]] == [(f"runner-{i}", "passed") for i in (1, 2, 3)]
    # Finished runners were not re-run: no second plan or generate request for runners 1 and 2; runner-3 kept its
    # plan (written before the kill) and only asked again for the code whose call the kill cut off.
    assert before == {(f"runner-{i}", k): 1 for i in (1, 2, 3) for k in ("plan", "generate")}
    assert dict(script.calls) == {**before, ("runner-3", "generate"): 2}
    # Nothing is left behind: one worktree (the repo's own), only the winner's branch, no process in the repo.
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(repo, "branch", "--list", "--format=%(refname:short)", "*speed-run*").split() == [
        "calc/speed-run/runner-2"
    ]
    assert not any((repo / ".worktrees").glob("speed-run-*"))
    assert processes_in(repo) == []
    # ... so the clean-up of orphaned runs finds nothing to do.
    assert anyio.run(lambda: worktrees.clean_orphans(Settings().home)) == []


def speedrun_cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "speedrun", *args], env=env, capture_output=True, text=True, check=False, timeout=timeout
    )


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="reads working directories from /proc")
def test_the_cli_killed_during_the_fan_out_resumes_and_clean_finds_nothing_left(
    speedrun_env, fake_llm: FakeLLM, tmp_path
):
    """As a user would: `speedrun showdown` killed mid-fan-out, `speedrun resume <id>`, then `speedrun clean`."""
    repo = make_repo(tmp_path / "repo")
    design = tmp_path / "design.md"
    design.write_text(DESIGN)
    script = SlowThird()
    fake_llm.responder = script
    db = Path(speedrun_env["SPEEDRUN_HOME"]) / "runs.sqlite"
    argv = ["showdown", "--design", str(design), "--feature", "calc", "--repo", str(repo), "--runners", "3"]
    first = subprocess.Popen(
        [sys.executable, "-m", "speedrun", *argv, "--test-cmd", PYTEST],
        env=speedrun_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: 2 in finished_by_thread(db).values(), 90, "two runners' results to be saved")
        assert script.calls[("runner-3", "generate")] == 1 and first.poll() is None
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    [run_id] = finished_by_thread(db)
    before = dict(script.calls)

    resumed = speedrun_cli("resume", run_id, env=speedrun_env)
    assert "sk-test-not-a-real-key" not in resumed.stdout + resumed.stderr
    assert dict(script.calls) == {**before, ("runner-3", "generate"): 2}  # finished runners were not re-run
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(repo, "branch", "--list", "--format=%(refname:short)", "*speed-run*").split() == [
        "calc/speed-run/runner-2"
    ]
    assert processes_in(repo) == []

    cleaned = speedrun_cli("clean", env=speedrun_env)
    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stdout.strip() == "nothing to clean: no run left worktrees or branches behind"
    # Last, what `resume` printed: the runners table of the finished showdown, with its winner.
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "runner-2" in resumed.stdout and "Traceback" not in resumed.stderr
