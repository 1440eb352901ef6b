"""Showdown and any-percent at the edges: real MCP stdio sessions and the real CLI, on temp git repos."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import jsonschema
import pytest

from tests.fake_llm import FakeLLM
from tests.helpers import (
    PYTEST,
    Caller,
    RunnerScript,
    Script,
    ctrl_c_able,
    fake_env,
    git,
    make_repo,
    mcp_session,
    read_terminal,
    run_cli,
    server_env,
)

DESIGN = "Build calc.add(a, b): the sum of two integers, with pytest tests."
SUM = "def add(a, b):\n    return a + b\n"
STRONG = (
    "def add(a: int, b: int) -> int:\n    '''The sum of a and b.'''\n    total = a + b  # STRONG\n    return total\n"
)
BUILTIN = "def add(a, b):\n    return sum((a, b))\n"
# turbo's compact result budget (tests/test_compact.py), one line per runner instead of per file
BYTES_BASE, BYTES_PER_RUNNER = 1024, 120


def speedrun_branches(repo: Path) -> list[str]:
    return sorted(git(repo, "branch", "--list", "--format=%(refname:short)", "*speed-run*").split())


def worktree_count(repo: Path) -> int:
    return git(repo, "worktree", "list", "--porcelain").count("worktree ")


async def poll(caller: Caller, run_id: str, seen: list[dict]) -> dict:
    """run_status until the run is no longer running; every answer is kept in `seen`."""
    while True:
        status = await caller.call("run_status", run_id=run_id, wait_seconds=2)
        seen.append(status)
        if status["status"] != "running":
            return status


@pytest.mark.anyio
async def test_showdown_over_mcp_polled_to_the_end_is_compact_and_promotes_the_winner(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "root" / "repo")
    code = {"runner-1": SUM, "runner-2": STRONG, "runner-3": BUILTIN}
    fake_llm.responder = RunnerScript(code, judge=Script("# STRONG"), delay=0.3)
    with anyio.fail_after(150):
        async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
            schemas = {t.name: t.output_schema for t in (await session.list_tools()).tools}
            caller = Caller(session)
            started = await caller.call(
                "showdown", design=DESIGN, feature="calc", repo="repo", runners=3, test_command=PYTEST, wait_seconds=0
            )
            assert started["status"] == "running" and started["workflow"] == "showdown"
            seen: list[dict] = []
            done = await poll(caller, started["run_id"], seen)
            listed = await caller.call("list_runs")

    for answer in [started, *seen]:
        jsonschema.validate(answer, schemas["run_status"])
    # While it ran, a poll showed each runner's latest step.
    tables = [s["runners"] for s in seen if s.get("runners")]
    assert tables and set(tables[-1]) <= {"runner-1", "runner-2", "runner-3"}
    assert any(len(t) == 3 for t in tables), tables
    # Progress notifications went out per runner and per step, the runners' turbo steps included. (Which steps a
    # poll sees depends on timing: a step that ends between two polls, e.g. the plan on a loaded machine, is missed.)
    for name in ("runner-1", "runner-2", "runner-3"):
        steps = {p.split(": ")[1] for p in caller.progress if p.startswith(f"{name}: ")}
        assert "run_tests" in steps and len(steps) >= 2, (name, caller.progress)

    assert done["status"] == "done"
    result = done["result"]
    assert (result["status"], result["winner"], result["winner_branch"]) == (
        "promoted",
        "runner-2",
        "calc/speed-run/runner-2",
    )
    table = result["runners"]
    assert table["columns"][:3] == ["name", "status", "tests"] and "scenario" not in table["columns"]
    assert [row[:3] for row in table["rows"]] == [[f"runner-{i}", "passed", "1 passed"] for i in (1, 2, 3)]
    assert done["report_path"] == str(repo / "docs/plans/calc/speed-run/showdown/result.md")
    assert "| runner-2 |" in Path(done["report_path"]).read_text()
    size = len(json.dumps(done).encode())
    assert size <= BYTES_BASE + BYTES_PER_RUNNER * 3, size
    assert "return a + b" not in json.dumps(done) and "STRONG" not in json.dumps(done)
    # The winner's branch holds its code; every worktree is gone; the run is listed with its repo.
    assert speedrun_branches(repo) == ["calc/speed-run/runner-2"]
    assert "# STRONG" in git(repo, "show", "calc/speed-run/runner-2:calc.py")
    assert worktree_count(repo) == 1 and not any((repo / ".worktrees").glob("speed-run-*"))
    [row] = listed["runs"]
    assert (row["workflow"], row["status"], row["output_dir"]) == ("showdown", "done", str(repo))


@pytest.mark.anyio
async def test_any_percent_over_the_cli_prints_runner_lines_and_the_final_table(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    (tmp_path / "design.md").write_text(DESIGN + "\n")  # outside the repo: the CLI reads it itself
    code = {"variant-plain": SUM, "variant-typed": STRONG}
    fake_llm.responder = RunnerScript(code, judge=Script("# STRONG"))

    done = run_cli(
        [
            "any-percent",
            "--design",
            "design.md",
            "--repo",
            "repo",
            "--feature",
            "calc",
            "--approach",
            "plain: one expression, no types",
            "--approach",
            "typed: annotated, documented function",
            "--test-cmd",
            PYTEST,
        ],
        tmp_path,
        **fake_env(fake_llm),
    )

    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    # Plain progress lines (stdout is not a terminal), naming each runner and its steps.
    for name in ("variant-plain", "variant-typed"):
        assert f"  · run_runner: {name}: writing its plan" in out
        assert f"  · {name}: run_tests:" in out
        assert f"  · run_runner: {name}: committing on its branch" in out
    assert "\x1b[" not in out  # no terminal control codes when not at a terminal
    # The final table: a header, then one row per variant, then the winner and result.md.
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("runner ") and "llm calls" in line)
    rows = [line.split() for line in lines[header + 2 : header + 4]]
    assert [r[:4] for r in rows] == [
        ["variant-plain", "passed", "1", "passed"],
        ["variant-typed", "passed", "1", "passed"],
    ]
    assert "winner: variant-typed (branch calc/speed-run/variant-typed)" in out
    assert f"result: {repo / 'docs/plans/calc/speed-run/any-percent/result.md'}" in out
    assert speedrun_branches(repo) == ["calc/speed-run/variant-typed"]
    assert worktree_count(repo) == 1


@pytest.mark.anyio
async def test_a_dirty_repo_is_refused_over_both_edges_with_the_same_words_and_nothing_is_made(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "root" / "repo", {"calc.py": SUM})
    (repo / "calc.py").write_text(SUM + "# local change\n")
    args = {"design": DESIGN, "feature": "calc", "test_command": PYTEST, "runners": 2}
    with anyio.fail_after(60):
        async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
            caller = Caller(session)
            over_mcp = await caller.error("showdown", repo="repo", **args)
            over_mcp_ap = await caller.error("any_percent", repo="repo", design=DESIGN, feature="calc")
            runs = await caller.call("list_runs")

    cli = run_cli(
        ["showdown", "--design", DESIGN, "--repo", str(repo), "--feature", "calc", "--runners", "2"],
        tmp_path,
        **fake_env(fake_llm),
    )

    assert cli.returncode == 2, cli.stderr
    words = f"repo '{repo.resolve()}' has uncommitted changes to tracked files (calc.py)"
    assert words in over_mcp and words in over_mcp_ap and words in cli.stderr
    assert "include_uncommitted" in over_mcp and "--include-uncommitted" in cli.stderr
    message = over_mcp.removeprefix("Error executing tool showdown: ")
    assert cli.stderr.strip() == f"speedrun: {message}"  # one rule, one message
    # Nothing was made: no run, no branch, no worktree, no model call; the caller's change is untouched.
    assert runs["runs"] == [] and not (tmp_path / "state" / "runs").exists()
    assert speedrun_branches(repo) == [] and worktree_count(repo) == 1 and not (repo / ".worktrees").exists()
    assert fake_llm.chat_requests() == []
    assert (repo / "calc.py").read_text().endswith("# local change\n")


@pytest.mark.anyio
async def test_clean_after_a_cancelled_showdown_removes_its_worktrees_and_a_second_clean_finds_nothing(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "root" / "repo")
    code = {"runner-1": SUM, "runner-2": STRONG}
    fake_llm.responder = RunnerScript(code, judge=Script("# STRONG"), delay=30)  # the plans never arrive in time
    with anyio.fail_after(90):
        async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
            schemas = {t.name: t.output_schema for t in (await session.list_tools()).tools}
            caller = Caller(session)
            started = await caller.call(
                "showdown", design=DESIGN, feature="calc", repo="repo", runners=2, test_command=PYTEST, wait_seconds=0
            )
            while worktree_count(repo) < 3 or len(fake_llm.chat_requests()) < 2:
                await anyio.sleep(0.1)
            cancelled = await caller.call("cancel_run", run_id=started["run_id"])
            assert cancelled["status"] == "cancelled"
            assert worktree_count(repo) == 3  # a cancelled run stays resumable: its worktrees stay until cleaned

            first = await caller.call("clean")
            second = await caller.call("clean")

    jsonschema.validate(first, schemas["clean"])
    jsonschema.validate(second, schemas["clean"])
    assert sorted((r["name"], r["branch"], r["run_id"]) for r in first["removed"]) == [
        (f"runner-{i}", f"calc/speed-run/runner-{i}", started["run_id"]) for i in (1, 2)
    ]
    assert "can no longer be resumed" in first["note"] and first.get("problems", []) == []
    assert second.get("removed", []) == [] and "nothing to clean" in second["note"]
    assert speedrun_branches(repo) == [] and worktree_count(repo) == 1
    assert not any((repo / ".worktrees").glob("speed-run-*"))
    # The CLI agrees there is nothing left.
    cli = run_cli(["clean"], tmp_path, **fake_env(fake_llm))
    assert cli.returncode == 0 and "nothing to clean" in cli.stdout


def test_cli_clean_removes_what_a_dead_run_left(fake_llm: FakeLLM, tmp_path: Path) -> None:
    """A journal whose owner process is gone: `speedrun clean` removes its worktree and branch, and says so."""
    import subprocess
    import sys

    repo = make_repo(tmp_path / "repo")
    args = [str(repo), str(tmp_path / "state"), "showdown-dead"]
    subprocess.run([sys.executable, "-c", DEAD_OWNER, *args], check=True, timeout=60)
    assert speedrun_branches(repo) == ["calc/speed-run/runner-1"]

    cli = run_cli(["clean"], tmp_path, **fake_env(fake_llm))

    assert cli.returncode == 0, cli.stderr
    worktree = repo.resolve() / ".worktrees" / "speed-run-runner-1"
    assert f"run showdown-dead: removed worktree {worktree} and branch calc/speed-run/runner-1" in cli.stdout
    assert "can no longer be resumed" in cli.stdout
    assert speedrun_branches(repo) == [] and worktree_count(repo) == 1


def test_showdown_at_a_terminal_shows_a_live_table_with_a_row_per_runner(fake_llm: FakeLLM, tmp_path: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    repo = make_repo(tmp_path / "repo")
    fake_llm.responder = RunnerScript({"runner-1": SUM, "runner-2": STRONG}, judge=Script("# STRONG"), delay=0.3)
    main, child = pty.openpty()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SPEEDRUN_HOME": str(tmp_path / "state"), "TERM": "xterm"}
    args = ["showdown", "--design", DESIGN, "--repo", str(repo), "--feature", "calc", "--runners", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "speedrun", *args, "--test-cmd", PYTEST],
        cwd=tmp_path,
        env={**env, **fake_env(fake_llm), "COLUMNS": "160"},
        stdout=child,
        stderr=subprocess.PIPE,
    )
    os.close(child)
    seen = read_terminal(main)
    assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    raw = seen.decode("utf-8", "replace")
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    # While it ran: rich redrew a table whose rows are the runners and their current steps, as they changed.
    assert "\x1b[" in raw and "┃ runner   ┃ step" in screen, screen[-2000:]
    for name in ("runner-1", "runner-2"):
        rows = [line for line in screen.splitlines() if line.startswith(f"│ {name} │ ")]
        for step in ("plan: writing its plan", "run_tests:", "done: passed"):
            assert any(f"│ {name} │ {step}" in row for row in rows), (name, step, rows)
    assert "winner: runner-2 (branch calc/speed-run/runner-2)" in screen


def test_the_parallel_skills_call_only_tools_the_server_has_and_keep_valid_front_matter() -> None:
    import yaml

    from speedrun.mcp_bridge.server import TOOLS

    tools = {tool.__name__ for tool in TOOLS}
    root = Path(__file__).resolve().parent.parent / "skills"
    for name in ("showdown", "any-percent", "judge"):
        text = (root / name / "SKILL.md").read_text()
        _, front, body = text.split("---\n", 2)
        meta = yaml.safe_load(front)
        assert meta["name"] == name and len(meta["description"]) <= 1024 and set(meta) == {"name", "description"}
        called = set(re.findall(r"mcp__speed-run__([a-z_]+)", body))
        assert called <= tools, called - tools
    showdown = (root / "showdown" / "SKILL.md").read_text()
    assert {"showdown", "run_status", "clean"} <= set(re.findall(r"mcp__speed-run__([a-z_]+)", showdown))
    assert "git worktree add" not in showdown  # the tool makes the worktrees, not the caller
    any_percent = (root / "any-percent" / "SKILL.md").read_text()
    assert {"any_percent", "run_status", "clean"} <= set(re.findall(r"mcp__speed-run__([a-z_]+)", any_percent))
    assert "git worktree add" not in any_percent


def test_ctrl_c_on_a_cli_showdown_keeps_it_resumable_and_resume_prints_the_runners_table(
    fake_llm: FakeLLM, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    repo = make_repo(tmp_path / "repo")
    fake_llm.responder = RunnerScript({"runner-1": SUM, "runner-2": STRONG}, judge=Script("# STRONG"), delay=1.0)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "SPEEDRUN_HOME": str(tmp_path / "state")}
    env.update(fake_env(fake_llm))
    args = ["showdown", "--design", DESIGN, "--repo", str(repo), "--feature", "calc", "--runners", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "speedrun", *args, "--test-cmd", PYTEST],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_able,
    )
    deadline = time.monotonic() + 60
    while worktree_count(repo) < 3 or not fake_llm.chat_requests():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # Ctrl-C during the fan-out
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err
    run_id = out.splitlines()[0].removeprefix("run ")
    assert f"continue later with: speedrun resume {run_id} (or remove its worktrees: speedrun clean)" in err
    assert worktree_count(repo) == 3  # kept for the resume

    fake_llm.responder = RunnerScript({"runner-1": SUM, "runner-2": STRONG}, judge=Script("# STRONG"))
    resumed = run_cli(["resume", run_id], tmp_path, **fake_env(fake_llm))

    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "winner: runner-2 (branch calc/speed-run/runner-2)" in resumed.stdout
    assert any(line.startswith("runner-1  passed") for line in resumed.stdout.splitlines()), resumed.stdout
    assert speedrun_branches(repo) == ["calc/speed-run/runner-2"] and worktree_count(repo) == 1


@pytest.mark.parametrize("count", [2, 3, 5])
def test_a_parallel_result_stays_within_turbos_budget_however_long_its_texts(count: int) -> None:
    """Every cell filled, a long reason, many warnings and near-duplicates, promote=ask with every branch kept."""
    from speedrun.runs import fill_parallel
    from speedrun.state.parallel import ParallelResult, RunnerRow, SimilarityFlag
    from speedrun.state.records import RunStatus

    names = [f"variant-event-driven-{i}" for i in range(count)]
    feature = "rate-limiter"
    rows = [
        RunnerRow(
            name=n,
            status="failed_scenario",
            tests="13 passed, 2 failed, 1 error (timed out)",
            scenario="3 passed, 12 failed",
            fix_cycles=3,
            llm_calls=12,
            lines=12345,
            wall_s=1234.5,
        )
        for n in names
    ]
    pairs = [SimilarityFlag(first=a, second=b, ratio=0.97) for a in names for b in names if a < b]
    long_path = "/home/someone/projects/" + "deep/" * 10 + "result.md"
    result = ParallelResult(
        mode="any_percent",
        status="awaiting_choice",
        winner=names[0],
        winner_branch=f"{feature}/speed-run/{names[0]}",
        why="The first variant wins on fitness and robustness; " * 10,
        runners=rows,
        similar=pairs,
        flip_rate=0.123,
        result_path=long_path,
        worksheet_path=long_path,
        caller_tokens_saved=1234567,
        warnings=[f"warning {i}: " + "w" * 300 for i in range(6)],
    )
    values = {"survivors": names, "worktrees": [{"name": n, "branch": f"{feature}/speed-run/{n}"} for n in names]}
    status = RunStatus(
        run_id="any_percent-20261129-120000-abcd",
        workflow="any_percent",
        status="running",
        created_at="2026-11-29T12:00:00+00:00",
    )
    fill_parallel(status, result, values)

    assert (status.status, status.report_path) == ("done", long_path)
    size = len(json.dumps(status.model_dump(mode="json")).encode())  # as the client shows it
    assert size <= BYTES_BASE + BYTES_PER_RUNNER * count, size
    summary = status.result or {}
    # What matters is never cut: every runner's row, the winner, and every kept branch to choose from.
    assert [row[0] for row in summary["runners"]["rows"]] == names
    assert summary["winner_branch"] == f"{feature}/speed-run/{names[0]}"
    assert all(n in summary["choose"] for n in names) and "git merge" in summary["choose"]
    assert "warnings" in summary["omitted"] and "see result.md" in summary["omitted"]


DEAD_OWNER = (
    "import asyncio, sys\n"
    "from pathlib import Path\n"
    "from speedrun import worktrees\n"
    "async def main():\n"
    "    state = await worktrees.inspect_repo(sys.argv[1])\n"
    "    (wt,) = worktrees.plan_worktrees(state, 'calc', ['runner-1'])\n"
    "    journal = worktrees.Journal.for_run(Path(sys.argv[2]), sys.argv[3])\n"
    "    await worktrees.create_worktree(state, wt, state.head, journal)\n"
    "asyncio.run(main())\n"
)


@pytest.mark.anyio
async def test_clean_spares_a_run_another_live_process_resumed_though_its_journal_names_a_dead_one(
    speedrun_env: dict[str, str], tmp_path: Path
) -> None:
    """Process A made the worktrees and died; process B resumed the run and drives it, and has not written the
    journal yet. The run database says B drives it: clean must leave its worktrees alone until B is gone."""
    import subprocess
    import sys

    from speedrun.config import load_settings
    from speedrun.procs import process_tag
    from speedrun.runs import RunManager
    from speedrun.runs_db import Liveness, set_liveness

    repo = make_repo(tmp_path / "repo")
    home = Path(speedrun_env["SPEEDRUN_HOME"])
    subprocess.run([sys.executable, "-c", DEAD_OWNER, str(repo), str(home), "showdown-resumed"], check=True)
    driver = subprocess.Popen(["sleep", "60"])
    try:
        async with RunManager.open(load_settings()) as runs:
            live = Liveness(state="running", owner=process_tag(driver.pid))
            await set_liveness(runs.saver.conn, "showdown-resumed", live)

            spared = await runs.clean()
            assert spared.removed == [] and speedrun_branches(repo) == ["calc/speed-run/runner-1"]

            driver.kill()
            driver.wait(timeout=10)
            cleaned = await runs.clean()
    finally:
        driver.kill()
        driver.wait(timeout=10)

    assert [(r.run_id, r.branch) for r in cleaned.removed] == [("showdown-resumed", "calc/speed-run/runner-1")]
    assert speedrun_branches(repo) == [] and worktree_count(repo) == 1
