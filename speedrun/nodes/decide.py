"""decide: hard gates and tiebreak, applied by code to the scorecards."""

from __future__ import annotations

from langgraph.runtime import Runtime

from speedrun.config import RunContext
from speedrun.judge.scoring import decide as apply_gates
from speedrun.nodes.common import progress
from speedrun.state.judge import Decision, JudgeState


async def decide(state: JudgeState, runtime: Runtime[RunContext]) -> dict[str, Decision]:
    """Pick the winner: fitness gap, eliminations by a 1, then totals with the efficiency tiebreak."""
    decision = apply_gates(state.cards)
    progress(runtime, "decide", f"winner: {decision.winner or 'none'}")
    return {"decision": decision}
