"""score: the judge model fills the checklists for every blinded implementation; code turns them into scores."""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from speedrun import prompts
from speedrun.config import RunContext
from speedrun.judging import blind, read_sources
from speedrun.llm import structured
from speedrun.nodes.common import progress, run_settings
from speedrun.scoring import FITNESS_ITEMS, MAINTAINABILITY_ITEMS, ROBUSTNESS_ITEMS, build_scorecard
from speedrun.state.judging import JudgeState, Verdict

JUDGE_BUDGET = 120_000  # characters of code across all implementations in one judge prompt
MODE_TEXT = {"showdown": "showdown — every implementation follows the same design; judge execution quality.",
             "any_percent": "any-percent — each implementation takes a different approach; judge the trade-offs."}


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
        blocks.append(prompts.JUDGE_IMPLEMENTATION.format(
            label=label, loc=m.loc, files=m.files,
            violations=", ".join(f"{k} {v}" for k, v in m.violation_counts().items()),
            tests="not run" if t is None else f"{t.passed} passed, {t.failed} failed, {t.errors} errors",
            findings="; ".join(f"{f.severity} {f.category} {f.file}:{f.line} {f.message}"
                               for f in findings.findings) if findings and findings.findings else "none",
            sources=read_sources(Path(impls[name].path), budget)))
    numbered = lambda items: "\n".join(f"{i}. {text}" for i, text in enumerate(items, 1))  # noqa: E731
    messages = [("system", prompts.JUDGE_SYSTEM), ("user", prompts.JUDGE_USER.format(
        mode_text=MODE_TEXT[state.mode], design=state.design, fitness=numbered(FITNESS_ITEMS),
        robustness=numbered(ROBUSTNESS_ITEMS), maintainability=numbered(MAINTAINABILITY_ITEMS),
        labels=", ".join(sorted(by_label)), implementations="\n".join(blocks)))]
    progress(runtime, "score", f"judge is scoring {len(by_label)} implementation(s)")
    verdict, ledger = await structured(settings, "judge", Verdict, messages,
                                       check=lambda v: _verdict_problem(v, set(by_label)))
    cards = []
    for checklists in verdict.implementations:
        name = by_label[checklists.label]
        card = build_scorecard(measured[name], checklists, name=name)
        findings = reviews.get(name)
        if findings:
            for f in findings.findings:
                key = f"review_{f.severity}"
                card.findings_count[key] = card.findings_count.get(key, 0) + 1
        cards.append(card)
    cards.sort(key=lambda c: [i.name for i in state.implementations].index(c.name))
    return {"cards": cards, "ledger": ledger}


def _verdict_problem(verdict: Verdict, labels: set[str]) -> str | None:
    """Reject answers for the wrong labels or with the wrong number of checklist items."""
    got = [c.label for c in verdict.implementations]
    if sorted(got) != sorted(labels):
        return f"answer exactly one entry per label {sorted(labels)}; got {got}"
    for c in verdict.implementations:
        for field, items in (("fitness", FITNESS_ITEMS), ("robustness", ROBUSTNESS_ITEMS),
                             ("maintainability", MAINTAINABILITY_ITEMS)):
            if len(getattr(c, field)) != len(items):
                return f"label {c.label}: {field} needs {len(items)} answers, got {len(getattr(c, field))}"
        if c.estimated_necessary_loc < 1:
            return f"label {c.label}: estimated_necessary_loc must be at least 1"
    return None
