"""The parallel workflows' shared graph: assess → worktrees → one runner per worktree (Send) → gate → judge → finish."""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from pydantic import BaseModel

from speedrun import prompts
from speedrun.config import RunContext
from speedrun.graphs.common import node
from speedrun.nodes.assess import assess
from speedrun.nodes.gate import gate
from speedrun.nodes.judge_runners import judge_runners
from speedrun.nodes.prepare_worktrees import prepare_worktrees
from speedrun.nodes.promote import promote
from speedrun.nodes.run_runner import run_runner
from speedrun.nodes.similarity import similarity
from speedrun.nodes.write_result import write_result
from speedrun.state.parallel import (
    AnyPercentState,
    ParallelInput,
    ParallelOutput,
    RunnerTask,
    ShowdownState,
    plans_dir,
)

#: Planner temperatures of runners 1..5: spread, so plans differ in more than their framing.
TEMPERATURES = (0.3, 0.55, 0.8, 0.45, 0.7)


def runner_tasks(state: ShowdownState | AnyPercentState) -> list[RunnerTask]:
    """One task per worktree: the same design, its own framing (showdown) or approach (any-percent) and plan path."""
    settings = ParallelInput.model_validate(state.model_dump(include=set(ParallelInput.model_fields)))
    approaches = {f"variant-{a.slug}": a for a in state.approaches} if isinstance(state, AnyPercentState) else {}
    tasks = []
    for i, wt in enumerate(state.worktrees):
        tasks.append(
            RunnerTask(
                index=i + 1,
                worktree=wt,
                base=state.base,
                design=state.design_text,
                approach=approaches.get(wt.name),
                framing="" if approaches else prompts.RUNNER_FRAMINGS[i % len(prompts.RUNNER_FRAMINGS)],
                temperature=TEMPERATURES[i % len(TEMPERATURES)],
                plan_path=f"{plans_dir(state.feature, state.mode)}/{wt.name}/plan.md",
                settings=settings,
            )
        )
    return tasks


def fan_out(state: ShowdownState | AnyPercentState) -> list[Send] | Literal["gate"]:
    """One run_runner branch per worktree, all in one step so they run concurrently."""
    tasks = runner_tasks(state)
    return [Send("run_runner", task) for task in tasks] if tasks else "gate"


def build(
    state_schema: type[BaseModel], input_schema: type[BaseModel]
) -> StateGraph[BaseModel, RunContext, BaseModel, ParallelOutput]:
    """The graph both workflows share; they differ in state (inputs) only."""
    builder = StateGraph(
        state_schema, context_schema=RunContext, input_schema=input_schema, output_schema=ParallelOutput
    )
    builder.add_node("assess", node(assess))
    builder.add_node("prepare_worktrees", node(prepare_worktrees))
    builder.add_node("run_runner", node(run_runner), input_schema=RunnerTask)
    for name, func in (
        ("gate", gate),
        ("similarity", similarity),
        ("judge_runners", judge_runners),
        ("promote", promote),
        ("write_result", write_result),
    ):
        builder.add_node(name, node(func))
    builder.add_edge(START, "assess")
    builder.add_edge("assess", "prepare_worktrees")
    builder.add_conditional_edges("prepare_worktrees", fan_out, ["run_runner", "gate"])
    builder.add_edge("run_runner", "gate")
    builder.add_edge("gate", "similarity")
    builder.add_edge("similarity", "judge_runners")
    builder.add_edge("judge_runners", "promote")
    builder.add_edge("promote", "write_result")
    builder.add_edge("write_result", END)
    return builder
