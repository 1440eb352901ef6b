"""The any-percent graph in a temp git repo: approaches given or proposed, and the shared scenario gate."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from langgraph.checkpoint.memory import InMemorySaver

from speedrun.config import RunContext, Settings
from speedrun.graphs.any_percent import builder
from speedrun.state.parallel import ParallelResult
from tests.fake_llm import FakeLLM
from tests.helpers import PYTEST, RunnerScript, Script, git, make_repo, runner_of

DESIGN = "Build calc.add(a, b): the sum of two integers, negative ones included, with pytest tests."
APPROACHES = [
    {"slug": "arith", "summary": "Plain arithmetic.", "pros": ["simple"], "cons": ["none"]},
    {"slug": "magnitudes", "summary": "Add magnitudes.", "pros": ["branch-free"], "cons": ["signs"]},
]
# The scenario every variant must pass: negative numbers. The 'magnitudes' variant passes its own test, not this.
SCENARIO = "from calc import add\n\n\ndef test_negative():\n    assert add(-1, 1) == 0\n"


async def run(repo: Path, **extra) -> ParallelResult:
    graph = builder.compile(checkpointer=InMemorySaver(), name="any_percent")
    args = {"design": DESIGN, "repo": str(repo), "feature": "calc", "test_command": f"{PYTEST} test_calc.py", **extra}
    with anyio.fail_after(120):
        final = await graph.ainvoke(args, config={"configurable": {"thread_id": "a"}}, context=RunContext(Settings()))
    return final["result"]


@pytest.mark.anyio
async def test_the_variant_failing_the_shared_scenario_loses_to_the_other(speedrun_env, fake_llm: FakeLLM, tmp_path):
    repo = make_repo(tmp_path / "repo", {"scenario/test_scenario.py": SCENARIO})
    code = {
        "variant-arith": "def add(a, b):\n    return a + b\n",
        "variant-magnitudes": "def add(a, b):\n    return abs(a) + abs(b)\n",
    }
    fake_llm.responder = RunnerScript(code)

    result = await run(repo, approaches=APPROACHES, scenario_command=f"{PYTEST} scenario")

    rows = {r.name: r for r in result.runners}
    assert rows["variant-magnitudes"].status == "failed_scenario" and rows["variant-magnitudes"].tests == "1 passed"
    assert rows["variant-magnitudes"].scenario == "0 passed, 1 failed"
    assert rows["variant-arith"].status == "passed" and rows["variant-arith"].scenario == "1 passed"
    assert (result.status, result.winner, result.winner_branch) == (
        "promoted",
        "variant-arith",
        "calc/speed-run/variant-arith",
    )
    assert git(repo, "branch", "--list", "--format=%(refname:short)", "*speed-run*") == "calc/speed-run/variant-arith"
    # Each variant planned for its own approach only; a lone survivor needs no judge.
    plans = [r for r in fake_llm.chat_requests() if runner_of(r.body) and "and only this one" in json.dumps(r.body)]
    assert sorted(runner_of(r.body) for r in plans) == ["variant-arith", "variant-magnitudes"]
    assert not any("=== Implementation" in json.dumps(r.body) for r in fake_llm.chat_requests())
    plan = git(repo, "show", "calc/speed-run/variant-arith:docs/plans/calc/speed-run/any-percent/variant-arith/plan.md")
    assert "PLAN-FOR variant-arith" in plan
    doc = (repo / "docs/plans/calc/speed-run/any-percent/result.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| variant-magnitudes "))
    assert "scenario failed" in row and "0 passed, 1 failed" in row
    assert "## Trade-offs the judge found" in doc and "only runner that passed every gate" in doc


@pytest.mark.anyio
async def test_without_approaches_the_planner_proposes_them_capped_at_five(speedrun_env, fake_llm: FakeLLM, tmp_path):
    repo = make_repo(tmp_path / "repo")
    proposed = [{"slug": f"Way {i}", "summary": f"way {i}", "pros": [], "cons": []} for i in range(1, 8)]
    code = {f"variant-way-{i}": "def add(a, b):\n    return a + b\n" for i in range(1, 6)}
    script = RunnerScript(code, judge=Script("nothing-strong"))

    def responder(body: dict):
        if "PRIMARY architectural axis" in json.dumps(body):
            return json.dumps({"axis": "representation", "approaches": proposed})
        return script(body)

    fake_llm.responder = responder
    result = await run(repo, promote="ask")

    assert [r.name for r in result.runners] == [f"variant-way-{i}" for i in range(1, 6)]
    assert result.status == "awaiting_choice"
    # The five survivors' branches stay for the user to choose from; the judge compared all five.
    kept = git(repo, "branch", "--list", "--format=%(refname:short)", "*speed-run*").split()
    assert kept == [f"calc/speed-run/variant-way-{i}" for i in range(1, 6)]
    assert result.winner in {r.name for r in result.runners} and result.flip_rate is not None
