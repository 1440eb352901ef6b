"""worksheet: write the Markdown worksheet and the JSON scorecard, and return the compact result."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from langgraph.runtime import Runtime

from speedrun.config import RunContext
from speedrun.judging import render_worksheet
from speedrun.nodes.common import progress, run_settings
from speedrun.state.judging import JudgeResult, JudgeState


async def worksheet(state: JudgeState, runtime: Runtime[RunContext]) -> dict:
    """Write judge-worksheet.md and scorecard.json; the result carries their paths, not their text."""
    if state.worksheet_dir:
        out = Path(state.worksheet_dir)
    else:
        out = run_settings(runtime).home / "judgements" / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out / "judge-worksheet.md", out / "scorecard.json"
    reviews = {r.name: r for r in state.reviews}
    summary = [{
        "name": c.name, "label": c.label, "scores": c.scores.as_dict(), "total": c.scores.total,
        "eliminated": c.eliminated, "elimination_reasons": c.elimination_reasons,
        "metrics": {"llm_calls": c.measurement.llm_calls, "fix_cycles": c.measurement.fix_cycles,
                    "generation_ms": c.measurement.generation_ms},
        "loc": c.measurement.loc, "violations": c.measurement.violation_counts(),
        "findings": len(reviews[c.name].findings) if c.name in reviews else 0,
    } for c in state.cards]
    full = {"mode": state.mode, "decision": state.decision.model_dump(mode="json"),
            "scorecards": [c.model_dump(mode="json") for c in state.cards],
            "reviews": [r.model_dump(mode="json") for r in state.reviews]}
    _atomic_write(md_path, render_worksheet(state, state.cards, state.decision, state.reviews))
    _atomic_write(json_path, json.dumps(full, indent=2) + "\n")
    progress(runtime, "worksheet", f"wrote {md_path}")
    result = JudgeResult(mode=state.mode, winner=state.decision.winner, decision=state.decision, scorecards=summary,
                         worksheet_path=str(md_path), scorecard_path=str(json_path), ledger_calls=len(state.ledger))
    return {"result": result}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
