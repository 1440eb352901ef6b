"""judge_runners: the judge graph (fresh-eyes review, both orders, scores, decision) on the gates' survivors."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from speedrun.config import RunContext
from speedrun.errors import SpeedRunError
from speedrun.nodes.common import progress, run_settings
from speedrun.nodes.gate import by_index
from speedrun.nodes.prepare_worktrees import run_id_of
from speedrun.state.judge import Implementation, JudgeInput, JudgeResult, RunMetrics
from speedrun.state.parallel import AnyPercentState, RunnerResult, ShowdownState


def judge_design(state: ShowdownState | AnyPercentState) -> str:
    """What the judge reads as the design; an any-percent adds the approaches, so trade-offs are judged as such."""
    if not isinstance(state, AnyPercentState) or not state.approaches:
        return state.design_text
    lines = [f"- variant-{a.slug}: {a.summary}" for a in state.approaches]
    return f"{state.design_text}\n\nApproaches being compared:\n" + "\n".join(lines)


def implementation(result: RunnerResult) -> Implementation:
    """A runner's worktree as the judge sees it: its final test report and what producing it cost."""
    return Implementation(
        name=result.name,
        path=result.worktree,
        test_report=result.tests,
        metrics=RunMetrics(
            llm_calls=len(result.ledger),
            fix_cycles=result.fix_cycles,
            generation_ms=sum(e.duration_ms for e in result.ledger),
        ),
    )


async def judge_runners(state: ShowdownState | AnyPercentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Judge 2 or more survivors. None: nothing to judge. One: it wins on the gates alone (no judge call:
    there is nothing to compare it with, and promote picks a lone survivor)."""
    survivors = [r for r in by_index(state.results) if r.name in state.survivors]
    if len(survivors) < 2:
        progress(runtime, "judge_runners", "no judge needed: " + (survivors[0].name if survivors else "no survivor"))
        return {}
    progress(runtime, "judge_runners", f"judging {', '.join(r.name for r in survivors)}")
    home = run_settings(runtime).home
    worksheet_dir = home / "runs" / run_id_of(runtime, state) / "judge"
    # JudgeInput checks every path on disk: off the event loop.
    judge_input = await asyncio.to_thread(
        JudgeInput,
        implementations=[implementation(r) for r in survivors],
        design=judge_design(state),
        mode=state.mode,
        worksheet_dir=str(worksheet_dir),
    )
    from speedrun.graphs.judge import graph as judge_graph  # graphs import nodes, never the reverse at import time

    final = await judge_graph.ainvoke(judge_input, output_keys=["result", "ledger"])
    result = final.get("result")
    if not isinstance(result, JudgeResult):
        raise SpeedRunError("the judge ended without a verdict")
    progress(runtime, "judge_runners", f"winner: {result.winner or 'none'}", winner=result.winner)
    return {"judged": result, "ledger": list(final.get("ledger") or [])}
