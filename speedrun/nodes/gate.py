"""gate: the evidence gate — only runners whose tests (and scenario tests, when given) pass go on to the judge."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime

from speedrun.config import RunContext
from speedrun.nodes.common import progress
from speedrun.state.parallel import AnyPercentState, RunnerResult, ShowdownState
from speedrun.state.records import TestReport

RunnerStatus = Literal["passed", "failed_tests", "failed_scenario"]


def gate_status(tests: TestReport | None, scenario: TestReport | None, scenario_required: bool) -> RunnerStatus:
    """The one rule of the gate: tests ran and passed, then the scenario ran and passed when one is given."""
    if tests is None or not tests.ok:
        return "failed_tests"
    if scenario_required and (scenario is None or not scenario.ok):
        return "failed_scenario"
    return "passed"


def by_index(results: list[RunnerResult]) -> list[RunnerResult]:
    """Runners in their number order (the reducer keeps them in the order they finished)."""
    return sorted(results, key=lambda r: r.index)


async def gate(state: ShowdownState | AnyPercentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Set `survivors`: the runners that passed every gate, in runner order."""
    survivors = [r.name for r in by_index(state.results) if r.status == "passed"]
    out = [f"{r.name}: {r.status}" for r in by_index(state.results) if r.status != "passed"]
    progress(
        runtime,
        "gate",
        f"{len(survivors)} of {len(state.results)} runners passed" + (f" ({'; '.join(out)})" if out else ""),
        survivors=survivors,
    )
    return {"survivors": survivors}
