"""The showdown graph end to end in a temp git repo: worktrees, plans, concurrency, judge, promotion, result.md."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import anyio
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from speedrun import prompts
from speedrun.config import RunContext, Settings
from speedrun.graphs.showdown import builder
from speedrun.state.parallel import ParallelResult
from tests.fake_llm import FakeLLM
from tests.helpers import (
    PLAN_SYSTEM_START,
    PYTEST,
    RunnerScript,
    Script,
    git,
    make_repo,
    runner_of,
)

DESIGN = "Build calc.add(a, b): the sum of two integers, with pytest tests."
SUM = "def add(a, b):\n    return a + b\n"
STRONG = (
    "def add(a: int, b: int) -> int:\n    '''The sum of a and b.'''\n    total = a + b  # STRONG\n    return total\n"
)
BUILTIN = "def add(a, b):\n    return sum((a, b))\n"
COMPACT_BASE, COMPACT_PER_RUNNER = 1024, 120


async def run(repo: Path, saver=None, thread: str = "t1", **extra) -> ParallelResult:
    graph = builder.compile(checkpointer=saver or InMemorySaver(), name="showdown")
    args = {"design": DESIGN, "repo": str(repo), "feature": "calc", "test_command": PYTEST, "runners": 3, **extra}
    with anyio.fail_after(120):
        final = await graph.ainvoke(
            args, config={"configurable": {"thread_id": thread}}, context=RunContext(Settings())
        )
    return final["result"]


def plan_requests(fake: FakeLLM) -> list:
    return [r for r in fake.chat_requests() if r.body["messages"][0]["content"].startswith(PLAN_SYSTEM_START)]


def speedrun_branches(repo: Path) -> list[str]:
    return sorted(git(repo, "branch", "--list", "--format=%(refname:short)", "*speed-run*").split())


@pytest.mark.anyio
async def test_three_runners_plan_build_get_judged_and_only_the_winner_branch_remains(
    speedrun_env, fake_llm: FakeLLM, tmp_path
):
    repo = make_repo(tmp_path / "repo")
    code = {"runner-1": SUM, "runner-2": STRONG, "runner-3": SUM}  # 1 and 3 write the same code
    fake_llm.responder = RunnerScript(code, judge=Script("# STRONG"))

    result = await run(repo)

    assert (result.status, result.winner, result.winner_branch) == ("promoted", "runner-2", "calc/speed-run/runner-2")
    # Only the winner's branch is left; every worktree is gone.
    assert speedrun_branches(repo) == ["calc/speed-run/runner-2"]
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert not any((repo / ".worktrees").glob("speed-run-*"))
    assert "/.worktrees/" in (repo / git(repo, "rev-parse", "--git-common-dir") / "info" / "exclude").read_text()
    # The winner's branch holds its code and its own plan, committed on top of the caller's HEAD.
    assert git(repo, "show", "calc/speed-run/runner-2:calc.py") + "\n" == STRONG
    plan = git(repo, "show", "calc/speed-run/runner-2:docs/plans/calc/speed-run/showdown/runner-2/plan.md")
    assert "PLAN-FOR runner-2" in plan
    assert git(repo, "merge-base", "main", "calc/speed-run/runner-2") == git(repo, "rev-parse", "main")

    # Three plans, one per runner, from one byte-identical prefix (system text + design) and differing tails.
    plans = plan_requests(fake_llm)
    assert sorted(runner_of(r.body) for r in plans) == ["runner-1", "runner-2", "runner-3"]
    assert len({r.body["messages"][0]["content"] for r in plans}) == 1
    users = [r.body["messages"][1]["content"] for r in plans]
    shared = os.path.commonprefix(users)
    assert shared.startswith("Design:\n" + DESIGN)
    assert len(set(users)) == 3
    assert len({u[len(shared) :] for u in users}) == 3
    framings = [next(f for f in prompts.RUNNER_FRAMINGS if f in u) for u in users]
    assert len(set(framings)) == 3
    assert len({r.body["temperature"] for r in plans}) == 3  # the planners' temperatures differ too

    # The judge was asked in both orders about the three survivors; each got a fresh-eyes review.
    texts = [json.dumps(r.body) for r in fake_llm.chat_requests()]
    assert sum("=== Implementation" in t for t in texts) == 2
    assert sum("fresh-eyes" in t for t in texts) == 3

    # Near-duplicates are flagged; result.md has the table, the winner and the flags.
    assert [(f.first, f.second) for f in result.similar] == [("runner-1", "runner-3")]
    assert result.similar[0].ratio == 1.0
    doc = (repo / "docs/plans/calc/speed-run/showdown/result.md").read_text()
    assert result.result_path == str(repo / "docs/plans/calc/speed-run/showdown/result.md")
    assert "| Runner | Approach | Tests | Scenario | Fresh-eyes findings | Lines | LLM calls |" in doc
    rows = [line for line in doc.splitlines() if line.startswith("| runner-")]
    assert len(rows) == 3 and "**winner**" in rows[1] and "1 passed" in rows[0]
    assert "runner-1 and runner-3 are 100.0% alike" in doc
    assert "Winner: **runner-2**, branch `calc/speed-run/runner-2`" in doc
    promotion = "kept branch calc/speed-run/runner-2; merge it with `git merge calc/speed-run/runner-2`"
    assert result.promotion == promotion and f"Promotion: {promotion}." in doc
    # Compact result: the runners table and the winner within turbo's budget.
    assert [(r.name, r.status, r.tests, r.llm_calls) for r in result.runners] == [
        (f"runner-{i}", "passed", "1 passed", 2) for i in (1, 2, 3)
    ]
    assert len(result.model_dump_json().encode()) <= COMPACT_BASE + COMPACT_PER_RUNNER * 3
    assert result.caller_tokens_saved > 0


@pytest.mark.anyio
async def test_a_runner_whose_model_fails_is_marked_error_and_the_others_finish(
    speedrun_env, fake_llm: FakeLLM, tmp_path, monkeypatch
):
    monkeypatch.setenv("SPEEDRUN_MAX_RETRIES", "0")
    repo = make_repo(tmp_path / "repo")
    code = {"runner-1": SUM, "runner-2": STRONG, "runner-3": BUILTIN}
    fake_llm.responder = RunnerScript(code, judge=Script("return sum("), fail=("runner-2",))

    result = await run(repo)

    by_name = {r.name: r for r in result.runners}
    assert by_name["runner-2"].status == "error"
    assert by_name["runner-1"].status == by_name["runner-3"].status == "passed"
    assert result.winner == "runner-3" and result.status == "promoted"
    assert speedrun_branches(repo) == ["calc/speed-run/runner-3"]
    doc = (repo / "docs/plans/calc/speed-run/showdown/result.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| runner-2 "))
    assert "error:" in row and "500" in row
    assert "sk-test-not-a-real-key" not in doc + result.model_dump_json()


ENV_TEST = (
    "import os\nfrom calc import add\n\n\n"
    "def test_add():\n"
    "    with open('runner-env.txt', 'w') as f:\n"
    "        f.write(os.environ['SPEEDRUN_RUNNER'] + ' ' + os.environ['SPEEDRUN_PORT_BASE'])\n"
    "    assert add(2, 3) == 5\n"
)


@pytest.mark.anyio
async def test_each_runner_tests_see_their_number_and_own_port_range_and_plans_differ_on_the_branches(
    speedrun_env, fake_llm: FakeLLM, tmp_path
):
    # A repo test that records what the runner's environment says, committed with each runner's work.
    repo = make_repo(tmp_path / "repo", {"test_env.py": ENV_TEST})
    fake_llm.responder = RunnerScript({"runner-1": SUM, "runner-2": STRONG, "runner-3": BUILTIN}, judge=Script("x"))

    result = await run(repo, promote="ask")

    assert result.status == "awaiting_choice"
    branches = speedrun_branches(repo)
    assert branches == [f"calc/speed-run/runner-{i}" for i in (1, 2, 3)]
    seen = [git(repo, "show", f"{b}:runner-env.txt") for b in branches]
    assert [s.split()[0] for s in seen] == ["1", "2", "3"]
    ports = [int(s.split()[1]) for s in seen]
    assert len(set(ports)) == 3 and all(b - a >= 100 for a, b in zip(ports, ports[1:], strict=False))
    plans = [
        git(repo, "show", f"{b}:docs/plans/calc/speed-run/showdown/{b.rsplit('/', 1)[1]}/plan.md") for b in branches
    ]
    assert len(set(plans)) == 3 and all(f"PLAN-FOR runner-{i}" in p for i, p in enumerate(plans, 1))


@pytest.mark.anyio
async def test_client_fixer_is_refused_before_any_work(speedrun_env, fake_llm: FakeLLM, tmp_path):
    repo = make_repo(tmp_path / "repo")
    with pytest.raises(Exception, match="fixer 'client' cannot work in parallel runners"):
        await run(repo, roles={"fixer": "client"})
    assert fake_llm.chat_requests() == [] and speedrun_branches(repo) == []


@pytest.mark.anyio
async def test_runners_run_concurrently(speedrun_env, fake_llm: FakeLLM, tmp_path):
    """3 runners take about the wall time of 1: the fan-out's span against one runner alone (1 s per reply)."""
    from types import SimpleNamespace

    from speedrun import worktrees
    from speedrun.graphs.parallel import runner_tasks
    from speedrun.nodes.run_runner import run_runner
    from speedrun.state.parallel import ShowdownState

    code = {"runner-1": SUM, "runner-2": STRONG, "runner-3": BUILTIN}
    fake_llm.responder = RunnerScript(code, judge=Script("# STRONG"), delay=1.0)

    # One runner alone, in a worktree of its own repo.
    solo = make_repo(tmp_path / "solo")
    repo_state = await worktrees.inspect_repo(str(solo))
    (wt,) = worktrees.plan_worktrees(repo_state, "calc", ["runner-1"])
    journal = worktrees.Journal.for_run(Settings().home, "solo")
    await worktrees.create_worktree(repo_state, wt, repo_state.head, journal)
    state = ShowdownState(
        design=DESIGN, feature="calc", test_command=PYTEST, design_text=DESIGN, worktrees=[wt], base=repo_state.head
    )
    started = time.monotonic()
    solo_out = await run_runner(runner_tasks(state)[0], SimpleNamespace(context=RunContext(Settings())))
    one = time.monotonic() - started
    assert solo_out["results"][0].status == "passed", (solo_out["results"][0].error, fake_llm.base_url)

    # Three in the graph: the span from the worktrees being ready to the gate.
    repo = make_repo(tmp_path / "repo")
    graph = builder.compile(checkpointer=InMemorySaver(), name="showdown")
    args = {"design": DESIGN, "repo": str(repo), "feature": "calc", "test_command": PYTEST, "runners": 3}
    marks: dict[str, float] = {}
    with anyio.fail_after(120):
        async for update in graph.astream(
            args, config={"configurable": {"thread_id": "c"}}, context=RunContext(Settings()), stream_mode="updates"
        ):
            for name in update:
                marks.setdefault(name, time.monotonic())
    span = marks["gate"] - marks["prepare_worktrees"]
    assert fake_llm.max_in_flight >= 3
    assert span / one < 2, (span, one)
