"""worksheet: write the Markdown worksheet and the JSON scorecard, and return the compact result."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from speedrun.config import RunContext, ensure_home
from speedrun.files import write_text_atomic
from speedrun.judge.panel import render_worksheet
from speedrun.judge.stability import verdict_stability
from speedrun.nodes.common import progress, run_settings
from speedrun.state.judge import (
    MAX_TRADEOFFS,
    RATIONALE_CHARS,
    TRADEOFF_CHARS,
    Decision,
    ImplementationReview,
    JudgeResult,
    JudgeState,
    RunMetrics,
    Scorecard,
    ScorecardSummary,
)


async def worksheet(state: JudgeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Write judge-worksheet.md and scorecard.json; the result carries their paths and numbers, not their text."""
    decision = _decision(state)
    if state.worksheet_dir:
        out = Path(state.worksheet_dir)
    else:  # under SPEEDRUN_HOME, which is created 0700 if this is its first use
        home = run_settings(runtime).home
        out = home / "judgements" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        await asyncio.to_thread(ensure_home, home)
    md_path, json_path = await asyncio.to_thread(_write, out, state)
    progress(runtime, "worksheet", f"wrote {md_path}")
    reviews = {r.name: r for r in state.reviews}
    stability = verdict_stability(state.cards)
    result = JudgeResult(
        mode=state.mode,
        winner=decision.winner,
        decision=compact_decision(decision),
        scorecards=[summary(c, reviews.get(c.name)) for c in state.cards],
        worksheet_path=str(md_path),
        scorecard_path=str(json_path),
        ledger_calls=len(state.ledger),
        flip_rate=stability.flip_rate,
    )
    return {"result": result}


def summary(card: Scorecard, review: ImplementationReview | None) -> ScorecardSummary:
    """The numbers of one scorecard, for the compact result."""
    m = card.measurement
    return ScorecardSummary(
        name=card.name,
        label=card.label,
        scores=card.scores,
        total=card.scores.total,
        eliminated=card.eliminated,
        elimination_reasons=card.elimination_reasons,
        metrics=RunMetrics(llm_calls=m.llm_calls, fix_cycles=m.fix_cycles, generation_ms=m.generation_ms),
        loc=m.loc,
        violations=len(m.violations),
        findings=len(review.findings) if review else 0,
        flips=card.checklists.flips() if card.checklists and card.checklists.orders == 2 else None,
    )


def compact_decision(decision: Decision) -> Decision:
    """The decision with its texts cut to bounded lengths (the worksheet keeps them whole)."""
    return decision.model_copy(
        update={
            "rationale": _clip(decision.rationale, RATIONALE_CHARS),
            "tradeoffs": [_clip(t, TRADEOFF_CHARS) for t in decision.tradeoffs[:MAX_TRADEOFFS]]
            + (
                [f"{len(decision.tradeoffs) - MAX_TRADEOFFS} more in the worksheet"]
                if len(decision.tradeoffs) > MAX_TRADEOFFS
                else []
            ),
        }
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20].rstrip() + " … (see worksheet)"


def _decision(state: JudgeState) -> Decision:
    """The decision the decide node made (the graph runs it before this node)."""
    if state.decision is None:
        raise RuntimeError("the worksheet is written after the decide step, which has not run")
    return state.decision


def _write(out: Path, state: JudgeState) -> tuple[Path, Path]:
    """Blocking part: create the folder and write both files atomically."""
    decision = _decision(state)
    out.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out / "judge-worksheet.md", out / "scorecard.json"
    full = {
        "mode": state.mode,
        "decision": decision.model_dump(mode="json"),
        "verdict_stability": verdict_stability(state.cards).model_dump(mode="json"),
        "scorecards": [c.model_dump(mode="json") for c in state.cards],
        "reviews": [r.model_dump(mode="json") for r in state.reviews],
    }
    write_text_atomic(md_path, render_worksheet(state, state.cards, decision, state.reviews))
    write_text_atomic(json_path, json.dumps(full, indent=2) + "\n")
    return md_path, json_path
