"""The parallel workflows' shared graph: assess → worktrees → one runner per worktree (Send) → gate → judge → finish.

What is left behind, and when (one rule):
- prepare_worktrees is all or none: if it fails, what it made is removed before the error is raised.
- A run that ends, whatever its status (promoted, awaiting_choice, no_survivor), keeps only what promotion hands
  to the user: the winner's branch (promote=branch), the survivors' branches (promote=ask), or nothing (merge, no
  winner). Every worktree goes.
- A run that fails, is cancelled or is killed after the worktrees exist KEEPS them, journaled under
  SPEEDRUN_HOME/runs/<run_id>/worktrees.json: it stays resumable, and a resume retries from the failed step
  without re-running finished runners (their results are in the checkpoint, their work on their branches).
  They are not strays: the error says so, and `speedrun clean` (worktrees.clean_orphans) removes them for a run
  that is not running, when the user will not resume it.
"""

from __future__ import annotations

from typing import Any, Literal

from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send
from pydantic import BaseModel

from speedrun import prompts
from speedrun.config import RunContext
from speedrun.errors import SpeedRunError
from speedrun.graphs.common import AsyncNode, node
from speedrun.nodes.assess import assess
from speedrun.nodes.common import confined, run_settings
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
from speedrun.state.records import one_line

#: Planner temperatures of runners 1..5: spread, so plans differ in more than their framing.
TEMPERATURES = (0.3, 0.55, 0.8, 0.45, 0.7)
#: How a failure after the worktrees exist reads: what failed, that the run is resumable, how to discard it.
KEPT_FOR_RESUME = (
    "{step} failed: {error}. The runners' worktrees and branches are kept, so this run can resume: resume it to "
    "retry from {step} (finished runners are not run again), or remove them with `speedrun clean` if you will not."
)
ERROR_CHARS = 300


def keeps_worktrees(func: AsyncNode) -> AsyncNode:
    """`func` as a node after the fan-out: its failure raises a SpeedRunError saying the worktrees are kept."""

    async def wrapped(state: Any, runtime: Runtime[RunContext]) -> dict[str, Any]:
        try:
            return await func(state, runtime)
        except GraphBubbleUp:  # LangGraph's own control flow (interrupts) is no failure
            raise
        except Exception as exc:
            text = str(exc) if isinstance(exc, SpeedRunError) else f"{type(exc).__name__}: {exc}"
            error = one_line(run_settings(runtime).redact(text), ERROR_CHARS) or type(exc).__name__
            raise SpeedRunError(KEPT_FOR_RESUME.format(step=func.__name__, error=error)) from exc

    wrapped.__name__ = wrapped.__qualname__ = func.__name__
    wrapped.__doc__ = func.__doc__
    return wrapped


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
    builder.add_node("assess", node(confined(assess, "repo")))  # checks a Studio run's repo
    builder.add_node("prepare_worktrees", node(prepare_worktrees))
    builder.add_node("run_runner", node(run_runner), input_schema=RunnerTask)
    for name, func in (
        ("gate", gate),
        ("similarity", similarity),
        ("judge_runners", judge_runners),
        ("promote", promote),
        ("write_result", write_result),
    ):
        builder.add_node(name, node(keeps_worktrees(func)))
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
