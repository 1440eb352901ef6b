"""score: the judge model fills the checklists for every blinded implementation; code turns them into scores."""

from __future__ import annotations

import asyncio
from pathlib import Path

from langgraph.runtime import Runtime

from speedrun import prompts
from speedrun.config import RunContext
from speedrun.judge.panel import blind, checklists_from, numbered_items, read_sources, verdict_model
from speedrun.judge.scoring import build_scorecard
from speedrun.llm import structured
from speedrun.nodes.common import progress, run_settings
from speedrun.state.judge import JudgeState

JUDGE_BUDGET = 120_000  # characters of code across all implementations in one judge prompt


async def score(state: JudgeState, runtime: Runtime[RunContext]) -> dict:
    """One judge call over all implementations, shown under neutral labels in shuffled order."""
    settings = run_settings(runtime)
    labels = blind(state)
    by_label = {label: name for name, label in labels.items()}
    measured = {m.name: m for m in state.measurements}
    reviews = {r.name: r for r in state.reviews}
    impls = {i.name: i for i in state.implementations}
    budget = JUDGE_BUDGET // max(1, len(impls))
    blocks = []
    for label in sorted(by_label):
        name = by_label[label]
        m = measured[name]
        t = m.tests
        findings = reviews.get(name)
        sources = await asyncio.to_thread(read_sources, Path(impls[name].path), budget)
        blocks.append(
            prompts.JUDGE_IMPLEMENTATION.format(
                label=label,
                loc=m.loc,
                files=m.files,
                violations=", ".join(f"{k} {v}" for k, v in m.violation_counts().items()),
                tests="not run" if t is None else t.summary(),
                findings="; ".join(
                    f"{f.severity} {f.category} {f.file}:{f.line} {f.message}" for f in findings.findings
                )
                if findings and findings.findings
                else "none",
                sources=sources,
            )
        )
    messages = [
        ("system", prompts.JUDGE_SYSTEM),
        (
            "user",
            prompts.JUDGE_USER.format(
                mode_text=prompts.JUDGE_MODE_TEXT[state.mode],
                design=state.design,
                fitness=numbered_items("fitness"),
                robustness=numbered_items("robustness"),
                maintainability=numbered_items("maintainability"),
                labels=", ".join(sorted(by_label)),
                implementations="\n".join(blocks),
            ),
        ),
    ]
    progress(runtime, "score", f"judge is scoring {len(by_label)} implementation(s)")
    # The schema names every label and every item as a required property, so no check beyond it is needed:
    # an answer that follows the schema is always usable.
    verdict, ledger = await structured(settings, "judge", verdict_model(list(by_label)), messages)
    cards = []
    for label, name in by_label.items():
        card = build_scorecard(measured[name], checklists_from(label, getattr(verdict, label)), name=name)
        findings = reviews.get(name)
        if findings:
            for f in findings.findings:
                key = f"review_{f.severity}"
                card.findings_count[key] = card.findings_count.get(key, 0) + 1
        cards.append(card)
    cards.sort(key=lambda c: [i.name for i in state.implementations].index(c.name))
    return {"cards": cards, "ledger": ledger}
