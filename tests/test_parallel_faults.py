"""Parallel runs that fail: worktrees kept for a resume (or cleaned), per-runner reports, nothing left at the end."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from speedrun import worktrees
from speedrun.config import RunContext, Settings
from speedrun.errors import SpeedRunError
from speedrun.graphs.parallel import runner_tasks
from speedrun.graphs.showdown import builder
from speedrun.nodes.run_runner import run_runner
from speedrun.state.parallel import ShowdownState
from tests.fake_llm import FakeLLM, Reply
from tests.helpers import PLAN_SYSTEM_START, PYTEST, RunnerScript, Script, git, make_repo, runner_of

DESIGN = "Build calc.add(a, b): the sum of two integers, with pytest tests."
SUM = "def add(a, b):\n    return a + b\n"
STRONG = "def add(a: int, b: int) -> int:\n    '''The sum.'''\n    total = a + b  # STRONG\n    return total\n"
BUILTIN = "def add(a, b):\n    return sum((a, b))\n"
CODE = {"runner-1": SUM, "runner-2": STRONG, "runner-3": BUILTIN}
KEY = "sk-test-not-a-real-key"


class JudgeOutage(RunnerScript):
    """RunnerScript whose judge answers HTTP 500 while `down` is set; counts plan and generate calls per runner."""

    def __init__(self) -> None:
        super().__init__(CODE, judge=Script("# STRONG"))
        self.down = True
        self.lock = threading.Lock()
        self.calls: Counter[tuple[str, str]] = Counter()

    def __call__(self, body: dict) -> Reply:
        name = runner_of(body)
        if name is None and self.down:
            return Reply(status=500, error_message="judge model overloaded")
        if name is not None:
            kind = "plan" if body["messages"][0]["content"].startswith(PLAN_SYSTEM_START) else "generate"
            with self.lock:
                self.calls[(name, kind)] += 1
        return super().__call__(body)


def graph_and_args(repo: Path, **extra: object) -> tuple[object, dict]:
    graph = builder.compile(checkpointer=InMemorySaver(), name="showdown")
    args = {"design": DESIGN, "repo": str(repo), "feature": "calc", "test_command": PYTEST, "runners": 3, **extra}
    return graph, args


def speedrun_branches(repo: Path) -> list[str]:
    return sorted(git(repo, "branch", "--list", "--format=%(refname:short)", "*speed-run*").split())


def worktree_count(repo: Path) -> int:
    return git(repo, "worktree", "list", "--porcelain").count("worktree ")


async def fail_at_the_judge(repo: Path, thread: str) -> tuple[object, dict, str]:
    """Run a 3-runner showdown whose judge is down; the graph, its config and the error the caller saw."""
    graph, args = graph_and_args(repo)
    config = {"configurable": {"thread_id": thread}}
    with anyio.fail_after(120), pytest.raises(SpeedRunError) as failed:
        await graph.ainvoke(args, config=config, context=RunContext(Settings()))  # type: ignore[attr-defined]
    return graph, config, str(failed.value)


def assert_kept(repo: Path, error: str, home: Path, thread: str) -> None:
    """The failure says the run is resumable and how to discard it; its worktrees and branches are journaled."""
    assert error.startswith("judge_runners failed: ") and "500" in error
    assert "worktrees and branches are kept" in error and "resume it" in error and "speedrun clean" in error
    assert KEY not in error and "Traceback" not in error and len(error) < 700
    assert worktree_count(repo) == 4 and speedrun_branches(repo) == [f"calc/speed-run/runner-{i}" for i in (1, 2, 3)]
    entries = worktrees.Journal.for_run(home, thread).entries()
    assert [(e.name, e.state) for e in entries] == [(f"runner-{i}", "created") for i in (1, 2, 3)]


@pytest.mark.anyio
async def test_a_failed_judge_keeps_the_worktrees_and_a_resume_finishes_without_rerunning_runners(
    speedrun_env, fake_llm: FakeLLM, tmp_path, monkeypatch
):
    monkeypatch.setenv("SPEEDRUN_MAX_RETRIES", "0")
    repo = make_repo(tmp_path / "repo")
    script = JudgeOutage()
    fake_llm.responder = script
    home = Settings().home

    graph, config, error = await fail_at_the_judge(repo, "t-judge")
    assert_kept(repo, error, home, "t-judge")
    ran = dict(script.calls)
    assert ran == {(f"runner-{i}", k): 1 for i in (1, 2, 3) for k in ("plan", "generate")}

    script.down = False  # the provider is back: resume retries from the judge
    with anyio.fail_after(120):
        final = await graph.ainvoke(None, config=config, context=RunContext(Settings()))  # type: ignore[attr-defined]

    result = final["result"]
    assert (result.status, result.winner) == ("promoted", "runner-2")
    assert dict(script.calls) == ran  # no runner planned or generated again
    assert speedrun_branches(repo) == ["calc/speed-run/runner-2"] and worktree_count(repo) == 1
    assert await worktrees.clean_orphans(home) == []
    # Every runner kept its own turbo report (they share the run's id), each about its own worktree.
    state = await graph.aget_state(config)  # type: ignore[attr-defined]
    by_name = {r.name: r for r in state.values["results"]}
    for name in CODE:
        path = home / "runs" / "t-judge" / name / "report.json"
        assert by_name[name].report_path == str(path)
        assert json.loads(path.read_text())["output_dir"] == by_name[name].worktree
    assert not (home / "runs" / "t-judge" / "report.json").exists()


@pytest.mark.anyio
async def test_a_failed_run_nobody_resumes_is_removed_by_clean(speedrun_env, fake_llm: FakeLLM, tmp_path, monkeypatch):
    monkeypatch.setenv("SPEEDRUN_MAX_RETRIES", "0")
    repo = make_repo(tmp_path / "repo")
    fake_llm.responder = JudgeOutage()
    home = Settings().home

    _, _, error = await fail_at_the_judge(repo, "t-clean")
    assert_kept(repo, error, home, "t-clean")

    cleaned = await worktrees.clean_orphans(home)

    assert len(cleaned) == 3 and all("t-clean" in line for line in cleaned)
    assert speedrun_branches(repo) == [] and worktree_count(repo) == 1
    assert not any((repo / ".worktrees").glob("speed-run-*"))
    assert await worktrees.clean_orphans(home) == []


@pytest.mark.anyio
async def test_when_every_runner_errors_the_run_ends_with_nothing_left(
    speedrun_env, fake_llm: FakeLLM, tmp_path, monkeypatch
):
    monkeypatch.setenv("SPEEDRUN_MAX_RETRIES", "0")
    repo = make_repo(tmp_path / "repo")
    fake_llm.responder = RunnerScript(CODE, judge=Script("# STRONG"), fail=tuple(CODE))
    graph, args = graph_and_args(repo)

    with anyio.fail_after(120):
        final = await graph.ainvoke(
            args, config={"configurable": {"thread_id": "t-all"}}, context=RunContext(Settings())
        )  # type: ignore[attr-defined]

    result = final["result"]
    assert result.status == "no_survivor" and [r.status for r in result.runners] == ["error"] * 3
    assert result.promotion == "no winner: every runner's worktree and branch was removed"
    assert speedrun_branches(repo) == [] and worktree_count(repo) == 1
    assert await worktrees.clean_orphans(Settings().home) == []
    doc = Path(result.result_path).read_text()
    assert "Promotion: no winner: every runner's worktree and branch was removed." in doc


@pytest.mark.anyio
async def test_a_runner_run_again_after_it_committed_reports_that_commit(speedrun_env, fake_llm: FakeLLM, tmp_path):
    """A runner killed after its commit but before its result was saved runs again on resume: same work, no new
    commit to make, and its result must still name the commit that holds its work."""
    fake_llm.responder = RunnerScript(CODE)
    repo = make_repo(tmp_path / "repo")
    repo_state = await worktrees.inspect_repo(str(repo))
    (wt,) = worktrees.plan_worktrees(repo_state, "calc", ["runner-1"])
    await worktrees.create_worktree(repo_state, wt, repo_state.head, worktrees.Journal.for_run(Settings().home, "r"))
    state = ShowdownState(
        design=DESIGN, feature="calc", test_command=PYTEST, design_text=DESIGN, worktrees=[wt], base=repo_state.head
    )
    task = runner_tasks(state)[0]
    rt = SimpleNamespace(context=RunContext(Settings()))

    first = (await run_runner(task, rt))["results"][0]
    again = (await run_runner(task, rt))["results"][0]

    assert first.commit and first.commit == git(repo, "rev-parse", "calc/speed-run/runner-1")
    assert (again.status, again.commit) == ("passed", first.commit)
    assert again.files_changed == first.files_changed
