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


def finished_runners(db: Path, thread: str) -> int:
    """How many run_runner tasks have their result saved as pending writes of the parent graph's checkpoint."""
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        try:
            rows = conn.execute(
                "SELECT count(*) FROM writes WHERE thread_id = ? AND checkpoint_ns = '' AND channel = 'results'",
                (thread,),
            ).fetchone()
        except sqlite3.OperationalError:  # the saver has not made its tables yet
            return 0
    return int(rows[0])


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
