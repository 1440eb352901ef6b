"""SIGKILL at seeded points of a CLI turbo run and of a CLI showdown; `speedrun resume` in a new process finishes it.

Each point: the run is killed (the whole process group), what the kill left is checked (no half-written file, no
test process), then `speedrun resume <run_id>` must pass, ask the model again only for work in flight at the kill,
and leave no worktree, branch, test process or temp file behind. The full sets are `heavy`
(`uv run --frozen pytest -m heavy tests/test_crash_points.py`); one turbo and one showdown point run by default.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.crash_points import (
    Killer,
    Point,
    lines_in,
    nth_answered,
    nth_arrived,
    only_run_id,
    repeats,
    seeded,
    start_cli,
    temp_leftovers,
)
from tests.fake_llm import FakeLLM, RecordedRequest, Reply
from tests.helpers import (
    CONTRACT_TEXT,
    PYTEST,
    TEST_CALC,
    RunnerScript,
    Script,
    file_blocks,
    fix_reply,
    git,
    make_repo,
    processes_marked,
    role_of,
    run_cli,
    runner_of,
    wait_for,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads processes from /proc")

# calc.py's three complete versions: generated (subtracts), after the first fix (multiplies), after the second.
PADDING = "".join(f"# line {i}: padding, so the streamed reply takes a while to arrive\n" for i in range(12))
BUGGY = f"{PADDING}def add(a, b):\n    return a - b\n"
TIMES = BUGGY.replace("a - b", "a * b")
FIXED = BUGGY.replace("a - b", "a + b")
STREAM = {"chunk_size": 20, "chunk_delay": 0.02}  # the generator's reply streams for about 0.5 s


def marked_command(marker: str) -> str:
    """Counts its runs in .test-runs, carries `marker` in its command line, and runs long enough to be killed in."""
    return f"echo run >> .test-runs; : {marker}; sleep 0.3; {PYTEST}"


# --- turbo: generate (streamed), test, fix, test, fix, test ------------------------------------------------


class TurboScript:
    """Generator writes BUGGY; the fixer answers from the code it is shown, so a re-asked fixer answers alike."""

    def __init__(self) -> None:
        self.arrivals = 0
        self.on_arrival: Callable[[int], None] = lambda n: None

    def __call__(self, body: dict) -> Reply:
        self.arrivals += 1
        self.on_arrival(self.arrivals)
        if body["messages"][0]["content"].startswith("You write complete, working source files"):
            return Reply(content=file_blocks({"calc.py": BUGGY, "test_calc.py": TEST_CALC}), **STREAM)
        text = last_user_text_of(body)
        if "return a - b" in text:
            return Reply(content=fix_reply(("calc.py", "return a - b", "return a * b")))
        return Reply(content=fix_reply(("calc.py", "return a * b", "return a + b"), diagnosis="multiplies"))


def last_user_text_of(body: dict) -> str:
    return str(body["messages"][-1]["content"])


def turbo_points() -> list[Point]:
    """One point per event of the timeline (the seed picks the delay after it), then two picked wholly by seed."""
    events = [("request", 1), ("stream", 1), ("answered", 1), ("test-run", 1), ("request", 2), ("answered", 2)]
    events += [("test-run", 2), ("request", 3), ("answered", 3), ("test-run", 3)]
    max_ms = {"request": 0, "stream": 450, "answered": 120, "test-run": 250}
    points = [seeded(kind, seed, range(k, k + 1), max_ms[kind]) for seed, (kind, k) in enumerate(events, 1)]
    for seed in (101, 102):
        kind = ("answered", "test-run")[seed % 2]
        points.append(seeded(kind, seed, range(1, 4), max_ms[kind]))
    return points


def arm_turbo(point: Point, killer: Killer, fake: FakeLLM, script: TurboScript, out: Path) -> None:
    if point.kind == "request":
        script.on_arrival = lambda n: killer.kill() if n == point.k else None
    elif point.kind == "stream":
        killer.when(nth_arrived(fake, point.k), point.ms)
    elif point.kind == "answered":
        killer.when(nth_answered(fake, point.k), point.ms)
    else:
        killer.when(lines_in(out / ".test-runs", point.k), point.ms)


TURBO = turbo_points()
TURBO_DEFAULT = "answered2"  # killed just after the fixer answered: its edit may or may not be on disk


@pytest.mark.parametrize(
    "point",
    [pytest.param(p, marks=[] if str(p).startswith(TURBO_DEFAULT) else [pytest.mark.heavy], id=str(p)) for p in TURBO],
)
def test_turbo_killed_at_a_seeded_point_resumes_in_a_new_process(
    point: Point, speedrun_env: dict[str, str], fake_llm: FakeLLM, tmp_path: Path
) -> None:
    script = TurboScript()
    fake_llm.responder = script
    (tmp_path / "contract.txt").write_text(CONTRACT_TEXT)
    out = tmp_path / "ws"
    marker = f"crashmark-{uuid.uuid4().hex}"
    args = ["turbo", "--contract", "contract.txt", "--out", str(out), "--test-cmd", marked_command(marker)]
    cli = start_cli([*args, "--max-fix-cycles", "3"], speedrun_env, tmp_path, tmp_path / "first.log")
    killer = Killer(cli.pid)
    arm_turbo(point, killer, fake_llm, script, out)
    before = killed_by(point, cli, killer, script, fake_llm, tmp_path / "first.log", within=90)

    # What the kill left: no test process (the sandbox's watchdog dies with speed-run), no half-written file.
    wait_for(lambda: not processes_marked(marker), 10, f"{point}: the killed run's test processes to end")
    assert_complete_versions(out)

    home = Path(speedrun_env["SPEEDRUN_HOME"])
    run_id = only_run_id(speedrun_env, tmp_path)
    resumed = run_cli(["resume", run_id], tmp_path, timeout=150, **speedrun_env)
    assert resumed.returncode == 0, f"{point}: {resumed.stderr[-3000:]}"
    assert re.search(rf"PASSED: 1 passed, 0 failed, 0 errors after \d fix cycles?; run {run_id}", resumed.stdout)
    assert (out / "calc.py").read_text() == FIXED and (out / "test_calc.py").read_text() == TEST_CALC
    after = fake_llm.chat_requests()[len(before) :]
    assert repeats(before, after, lambda body: "turbo", killer.at or 0) == [], point
    # Whole, the conversation is generate then the fixes, each asked at most twice (once more after the kill).
    roles = [role_of(r) for r in before + after]
    assert roles[0] == "generator" and set(roles[1:]) <= {"fixer", "generator"}, roles
    assert roles.count("generator") <= 2 and roles.count("fixer") <= 3, roles
    assert_nothing_left(marker, out, home)


def assert_complete_versions(out: Path) -> None:
    """Every file the run writes is absent or one of its complete versions."""
    calc, tests = out / "calc.py", out / "test_calc.py"
    assert not calc.exists() or calc.read_text() in (BUGGY, TIMES, FIXED), calc.read_text()
    assert not tests.exists() or tests.read_text() == TEST_CALC, tests.read_text()


def assert_nothing_left(marker: str, out: Path, home: Path) -> None:
    """No test process, no recorded test group still alive, no temp file of an atomic writer."""
    from speedrun.procs import group_alive

    assert processes_marked(marker) == []
    records = home / "test-groups"
    groups = [int(m) for f in records.glob("*") if (m := re.search(r"\d+", f.name))] if records.is_dir() else []
    assert not [g for g in groups if group_alive(g)], groups
    assert temp_leftovers(out, home) == []


# --- showdown: worktrees, two runners (plan, generate, test, commit), reviews, judge, promote, result -------

SUM = "def add(a, b):\n    return a + b\n"
STRONG = "def add(a: int, b: int) -> int:\n    '''The sum.'''\n    total = a + b  # STRONG\n    return total\n"
DESIGN = "Build calc.add(a, b): the sum of two integers, with pytest tests."


class ShowdownScript(RunnerScript):
    """RunnerScript for two runners (runner-2 strong), 0.1 s per answer, with a hook on each request's arrival."""

    def __init__(self) -> None:
        super().__init__({"runner-1": SUM, "runner-2": STRONG}, judge=Script("# STRONG"), delay=0.1)
        self.arrivals = 0
        self.on_arrival: Callable[[int], None] = lambda n: None

    def __call__(self, body: dict) -> Reply:
        self.arrivals += 1
        self.on_arrival(self.arrivals)
        return super().__call__(body)


def killed_by(
    point: Point, cli: subprocess.Popen[bytes], killer: Killer, script: Any, fake: FakeLLM, log: Path, within: float
) -> list[RecordedRequest]:
    """Wait for the killed CLI; check the kill came before the run ended; stop arming; the requests seen so far."""
    cli.wait(within)
    assert killer.fired.is_set() and killer.killed_live, (
        f"{point}: the run ended before the kill: {log.read_text(errors='replace')[-3000:]}"
    )
    script.on_arrival = lambda n: None
    return fake.chat_requests()


def lane_of(body: dict) -> str:
    """A showdown request's lane: its runner (plan, generate), else the review or the judge's scoring."""
    name = runner_of(body)
    if name is not None:
        return name
    return "review" if "fresh-eyes" in str(body["messages"][0]["content"]) else "judge"


def worktree_dirs(repo: Path) -> list[Path]:
    return sorted((repo / ".worktrees").glob("speed-run-*")) if (repo / ".worktrees").is_dir() else []


def showdown_points() -> list[Point]:
    """Requests: 2 plans, 2 generates, 2 reviews, 2 judge orders (8); plus worktree creation, test runs, commit,
    promote and result, each with a seeded delay."""
    points = [
        seeded("worktree", 1, range(1, 2), 20),
        seeded("request", 2, range(1, 3), 0),
        seeded("answered", 3, range(1, 3), 60),
        seeded("request", 4, range(3, 5), 0),
        seeded("test-run", 5, range(1, 3), 250),
        seeded("commit", 6, range(1, 3), 40),
        seeded("request", 7, range(5, 7), 0),
        seeded("answered", 8, range(5, 7), 60),
        seeded("request", 9, range(7, 9), 0),
        seeded("answered", 10, range(8, 9), 30),
        seeded("promote", 11, range(1, 2), 0),
        seeded("result", 12, range(1, 2), 0),
    ]
    return points


def arm_showdown(point: Point, killer: Killer, fake: FakeLLM, script: ShowdownScript, repo: Path) -> None:
    if point.kind == "request":
        script.on_arrival = lambda n: killer.kill() if n == point.k else None
    elif point.kind == "answered":
        killer.when(nth_answered(fake, point.k), point.ms)
    elif point.kind == "worktree":
        killer.when(lambda: bool(worktree_dirs(repo)), point.ms)
    elif point.kind == "test-run":
        killer.when(lambda: any(lines_in(d / ".test-runs", 1)() for d in worktree_dirs(repo)), point.ms)
    elif point.kind == "commit":
        branch = f"calc/speed-run/runner-{point.k}"
        killer.when(lambda: branch_ahead(repo, branch), point.ms)
    elif point.kind == "promote":  # the judge has answered both orders and the first worktree is being removed
        killer.when(lambda: nth_answered(fake, 8)() and len(worktree_dirs(repo)) < 2, point.ms)
    else:
        killer.when((repo / "docs/plans/calc/speed-run/showdown/result.md").exists, point.ms)


def branch_ahead(repo: Path, branch: str) -> bool:
    ref = repo / ".git" / "refs" / "heads" / branch
    return ref.is_file() and ref.read_text().strip() != (repo / ".git/refs/heads/main").read_text().strip()


SHOWDOWN = showdown_points()
SHOWDOWN_DEFAULT = "commit"


@pytest.mark.parametrize(
    "point",
    [
        pytest.param(p, marks=[] if str(p).startswith(SHOWDOWN_DEFAULT) else [pytest.mark.heavy], id=str(p))
        for p in SHOWDOWN
    ],
)
def test_showdown_killed_at_a_seeded_point_resumes_in_a_new_process(
    point: Point, speedrun_env: dict[str, str], fake_llm: FakeLLM, tmp_path: Path
) -> None:
    script = ShowdownScript()
    fake_llm.responder = script
    repo = make_repo(tmp_path / "repo")
    (tmp_path / "design.md").write_text(DESIGN)
    marker = f"crashmark-{uuid.uuid4().hex}"
    args = ["showdown", "--design", "design.md", "--repo", str(repo), "--feature", "calc", "--runners", "2"]
    cli = start_cli([*args, "--test-cmd", marked_command(marker)], speedrun_env, tmp_path, tmp_path / "first.log")
    killer = Killer(cli.pid)
    arm_showdown(point, killer, fake_llm, script, repo)
    before = killed_by(point, cli, killer, script, fake_llm, tmp_path / "first.log", within=120)

    wait_for(lambda: not processes_marked(marker), 10, f"{point}: the killed run's test processes to end")
    for wt in worktree_dirs(repo):
        calc = wt / "calc.py"
        assert not calc.exists() or calc.read_text() in (SUM, STRONG), calc.read_text()

    home = Path(speedrun_env["SPEEDRUN_HOME"])
    run_id = only_run_id(speedrun_env, tmp_path)
    resumed = run_cli(["resume", run_id], tmp_path, timeout=150, **speedrun_env)
    if point.kind == "result" and "already finished (done)" in resumed.stderr:
        pass  # killed after write_result's state was saved: the run is over, and nothing may be left either
    else:
        assert resumed.returncode == 0, f"{point}: {resumed.stderr[-3000:]}"
        assert "winner: runner-2 (branch calc/speed-run/runner-2)" in resumed.stdout, resumed.stdout[-2000:]
    after = fake_llm.chat_requests()[len(before) :]
    assert repeats(before, after, lane_of, killer.at or 0) == [], point
    # The work: the winner's code on its branch, result.md naming it; nothing else left in the repo.
    assert git(repo, "show", "calc/speed-run/runner-2:calc.py") + "\n" == STRONG
    assert "Winner: **runner-2**" in (repo / "docs/plans/calc/speed-run/showdown/result.md").read_text()
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert git(repo, "branch", "--format=%(refname:short)").split() == ["calc/speed-run/runner-2", "main"]
    assert worktree_dirs(repo) == []
    assert_nothing_left(marker, repo, home)
    cleaned = run_cli(["clean"], tmp_path, **speedrun_env)
    assert cleaned.stdout.strip() == "nothing to clean: no run left worktrees or branches behind", cleaned.stdout
    assert not (repo / ".git" / "worktrees").exists() or os.listdir(repo / ".git" / "worktrees") == []
