"""The turbo graph: contract_write → generate → run_tests ⇄ surgical_fix → report. Reused by every runner."""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph

from speedrun.config import RunContext
from speedrun.graphs.common import node
from speedrun.nodes.common import confined
from speedrun.nodes.contract_write import contract_write
from speedrun.nodes.generate import generate
from speedrun.nodes.report import report
from speedrun.nodes.run_tests import run_tests
from speedrun.nodes.surgical_fix import surgical_fix
from speedrun.state.turbo import TurboInput, TurboOutput, TurboState


def after_generate(state: TurboState) -> Literal["run_tests", "report"]:
    """Nothing written means nothing to test."""
    return "run_tests" if state.files else "report"


def after_tests(state: TurboState) -> Literal["report", "surgical_fix"]:
    """Green → report; red with fix cycles left → fix; otherwise report the failure.

    A test command that could not run at all (not found, not executable) is no code defect: no edit can fix it.
    """
    if state.tests is not None and (state.tests.ok or state.tests.problem):
        return "report"
    return "surgical_fix" if len(state.cycles) < state.max_fix_cycles else "report"


def after_fix(state: TurboState) -> Literal["run_tests", "report"]:
    """The caller may stop during a client fix."""
    return "report" if state.stopped else "run_tests"


builder = StateGraph(TurboState, context_schema=RunContext, input_schema=TurboInput, output_schema=TurboOutput)
builder.add_node("contract_write", node(confined(contract_write, "output_dir")))  # checks a Studio run's path
builder.add_node("generate", node(generate))
builder.add_node("run_tests", node(run_tests))
builder.add_node("surgical_fix", node(surgical_fix))
builder.add_node("report", node(report))
builder.add_edge(START, "contract_write")
builder.add_edge("contract_write", "generate")
builder.add_conditional_edges("generate", after_generate, ["run_tests", "report"])
builder.add_conditional_edges("run_tests", after_tests, ["report", "surgical_fix"])
builder.add_conditional_edges("surgical_fix", after_fix, ["run_tests", "report"])
builder.add_edge("report", END)

graph = builder.compile(name="turbo")
