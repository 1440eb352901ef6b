"""The judge graph: measure and review each implementation in parallel (Send), then score, decide, worksheet."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from speedrun.config import RunContext
from speedrun.graphs.common import node
from speedrun.judge.panel import blind
from speedrun.nodes.common import confined
from speedrun.nodes.decide import decide
from speedrun.nodes.fresh_eyes_review import fresh_eyes_review
from speedrun.nodes.measure import measure
from speedrun.nodes.score import score
from speedrun.nodes.worksheet import worksheet
from speedrun.state.judge import JudgeInput, JudgeOutput, JudgeState, MeasureTask, ReviewTask


def fan_out_measure(state: JudgeState) -> list[Send]:
    """One measure branch per implementation."""
    return [Send("measure", MeasureTask(impl=impl)) for impl in state.implementations]


def fan_out_review(state: JudgeState) -> list[Send]:
    """One fresh-eyes review branch per implementation, under its blinded label."""
    labels = blind(state)
    return [
        Send("fresh_eyes_review", ReviewTask(impl=impl, label=labels[impl.name], design=state.design))
        for impl in state.implementations
    ]


def _join(state: JudgeState) -> dict[str, object]:
    return {}


builder = StateGraph(JudgeState, context_schema=RunContext, input_schema=JudgeInput, output_schema=JudgeOutput)
builder.add_node("measure", node(measure), input_schema=MeasureTask)
builder.add_node("fresh_eyes_review", node(fresh_eyes_review), input_schema=ReviewTask)
builder.add_node("score", node(score))
builder.add_node("decide", node(decide))
builder.add_node("worksheet", node(confined(worksheet, "worksheet_dir", home_too=True)))  # checks a Studio run's path
builder.add_conditional_edges(START, fan_out_measure, ["measure"])
builder.add_node("measured", _join)  # waits for every measure branch, so reviews fan out once
builder.add_edge("measure", "measured")
builder.add_conditional_edges("measured", fan_out_review, ["fresh_eyes_review"])
builder.add_edge("fresh_eyes_review", "score")
builder.add_edge("score", "decide")
builder.add_edge("decide", "worksheet")
builder.add_edge("worksheet", END)

graph = builder.compile(name="judge")
