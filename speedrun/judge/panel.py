"""Judge helpers: blinded labels, the judge model's answer schema, bounded source excerpts, and the worksheet."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, create_model

from speedrun.excerpts import within_budget
from speedrun.judge.measure import source_files
from speedrun.judge.scoring import CRITERIA, FITNESS_ITEMS, MAINTAINABILITY_ITEMS, ROBUSTNESS_ITEMS, format_score_tables
from speedrun.judge.stability import stability_line, verdict_stability
from speedrun.loop.edits import numbered
from speedrun.state.judge import (
    ChecklistAnswer,
    Checklists,
    Decision,
    Finding,
    ImplementationReview,
    JudgeFields,
    Scorecard,
)

LABELS = "ABCDE"

#: Checklist -> (key prefix, items). Item keys are F1..F8, R1..R12, M1..M6, as the judge prompt numbers them.
CHECKLISTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fitness": ("F", FITNESS_ITEMS),
    "robustness": ("R", ROBUSTNESS_ITEMS),
    "maintainability": ("M", MAINTAINABILITY_ITEMS),
}


class ItemAnswer(BaseModel):
    """The judge model's answer to one checklist item."""

    answer: bool = Field(description="true when the implementation satisfies the item, false otherwise.")
    evidence: str = Field(description="A short quote from the code or a concrete observation supporting it.")


def item_keys(checklist: str) -> list[str]:
    """The answer keys of one checklist, in item order: F1..F8, R1..R12 or M1..M6."""
    prefix, items = CHECKLISTS[checklist]
    return [f"{prefix}{number}" for number in range(1, len(items) + 1)]


def numbered_items(checklist: str) -> str:
    """The checklist's items, one per line, each after its answer key (for the judge prompt)."""
    items = CHECKLISTS[checklist][1]
    return "\n".join(f"{key}. {text}" for key, text in zip(item_keys(checklist), items, strict=True))


@cache
def _answers_model() -> type[BaseModel]:
    """One implementation's answers. Every item is a required property named by its key, so a schema-following
    model cannot skip, repeat or reorder items; fields holding models carry no description (strict JSON-schema
    modes refuse keywords beside a $ref)."""
    checklists: dict[str, Any] = {}
    for name in CHECKLISTS:
        items: dict[str, Any] = {key: (ItemAnswer, ...) for key in item_keys(name)}
        checklists[name] = (create_model(f"{name.title()}Answers", **items), ...)
    return create_model(
        "ImplementationAnswers",
        __doc__="The judge model's answers for one implementation. Every field is required.",
        **checklists,
        complexity_justified=(
            bool,
            Field(description="true when the extra size beyond a lean solution buys something the design asks for."),
        ),
        complexity_evidence=(
            str,
            Field(description="One or two sentences on what the extra code is for, or what is superfluous."),
        ),
        estimated_necessary_loc=(
            int,
            Field(
                ge=1,
                description="Lines of code (no blanks or comments) a lean, "
                "complete solution of the design needs; at least 1.",
            ),
        ),
        bad_names=(
            list[str],
            Field(
                description="Identifiers whose names mislead or say nothing (e.g. 'data2', "
                "'do_stuff'); empty when none."
            ),
        ),
    )


def verdict_model(labels: list[str]) -> type[BaseModel]:
    """The judge model's answer schema for this run: one REQUIRED property per blinded label, no other keys.

    Built per run so that every constraint the code relies on (which labels, how many items, the bounds) is
    in the schema the provider enforces, and an answer that follows the schema is always accepted. The
    properties come in the order given, the order the implementations are shown in, so a model that answers
    in schema order reads and answers them in the same order (the position swap reverses both).
    """
    fields: dict[str, Any] = {label: (_answers_model(), ...) for label in labels}
    return create_model("Verdict", __doc__="The judge's answers, one property per implementation label.", **fields)


def checklists_from(label: str, answers: BaseModel) -> Checklists:
    """The scoring record for one label's answers (item texts restored from the keys)."""
    lists: dict[str, list[ChecklistAnswer]] = {}
    for name, (_prefix, items) in CHECKLISTS.items():
        given = getattr(answers, name)
        lists[name] = [
            ChecklistAnswer(item=text, answer=getattr(given, key).answer, evidence=getattr(given, key).evidence)
            for key, text in zip(item_keys(name), items, strict=True)
        ]
    extras = answers.model_dump(
        include={"complexity_justified", "complexity_evidence", "estimated_necessary_loc", "bad_names"}
    )
    return Checklists.model_validate({"label": label, **lists, **extras})


def blind(inputs: JudgeFields) -> dict[str, str]:
    """name → neutral label, in an order shuffled by a seed derived from the inputs (stable across resumes)."""
    names = [impl.name for impl in inputs.implementations]
    seed = hashlib.sha256(json.dumps([inputs.design, sorted(names)]).encode()).hexdigest()
    order = sorted(names)
    random.Random(seed).shuffle(order)
    return {name: LABELS[i] for i, name in enumerate(order)}


def read_sources(root: Path, budget: int) -> str:
    """Source files under root with relative paths and line numbers, cut at `budget` characters.

    Blocking (walks and reads files): async callers run it in a thread.
    """

    def blocks() -> Iterator[tuple[str, str]]:
        for path, rel in source_files(root):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue  # unreadable: measure names it in the worksheet
            yield rel, numbered(text)

    return within_budget(blocks(), budget, "(no source files)")


def _tests_text(card: Scorecard) -> str:
    t = card.measurement.tests
    if t is None:
        return "not run"
    return t.summary()


def render_worksheet(
    inputs: JudgeFields, cards: list[Scorecard], decision: Decision, reviews: list[ImplementationReview]
) -> str:
    """The worksheet as Markdown, in the seed's required order."""
    findings = {c.name: ImplementationReview(name=c.name).findings for c in cards}
    findings.update({r.name: r.findings for r in reviews})
    mode = (
        "Showdown (one design, several runners)" if inputs.mode == "showdown" else "Any-percent (different approaches)"
    )
    out = [f"# Judge worksheet — {mode}", ""]
    out += _gate_check(cards) + _feasibility(cards, findings)
    out += ["## Scoring Worksheet", "", "Score tables (code turns the answers into scores):", ""]
    out += [format_score_tables(), ""]
    for card in cards:
        out += _implementation_section(card, findings[card.name])
    out += _metrics(cards) + _scorecard_table(cards) + _gates_and_winner(cards, decision)
    return "\n".join(out)


def _gate_check(cards: list[Scorecard]) -> list[str]:
    out = ["## Gate Check", "", "| Implementation | Label | Tests | Files | LOC |", "|---|---|---|---|---|"]
    out += [f"| {c.name} | {c.label} | {_tests_text(c)} | {c.measurement.files} | {c.measurement.loc} |" for c in cards]
    return [*out, ""]


def _feasibility(cards: list[Scorecard], findings: dict[str, list[Finding]]) -> list[str]:
    out = ["## Feasibility Check", ""]
    for c in cards:
        found = findings[c.name]
        crit = [f for f in found if f.severity == "critical"]
        tests = c.measurement.tests
        verdict = "feasible" if tests is not None and tests.ok and not crit else "at risk"
        out.append(
            f"- **{c.name}**: {verdict} — tests {_tests_text(c)}; {len(crit)} critical, "
            f"{sum(f.severity == 'major' for f in found)} major, "
            f"{sum(f.severity == 'minor' for f in found)} minor fresh-eyes findings."
        )
        out += [f"  - critical ({f.category}) {f.file}:{f.line}: {f.message}" for f in crit]
    return [*out, ""]


def _implementation_section(card: Scorecard, findings: list[Finding]) -> list[str]:
    """One implementation in the scoring worksheet: measurements, every answer with its evidence, findings."""
    m = card.measurement
    out = [
        f"### {card.name} (shown to the judge as {card.label})",
        "",
        f"Measured: {m.loc} LOC in {m.files} files ({', '.join(m.languages) or 'no recognised language'}). {m.counted}",
        "",
        "Readability violations: " + ", ".join(f"{k} {v}" for k, v in m.violation_counts().items()),
        "",
    ]
    if m.test_violations:
        kinds: dict[str, int] = {}
        for violation in m.test_violations:
            kinds[violation.kind] = kinds.get(violation.kind, 0) + 1
        out += [
            "In test files (listed, not scored: tests often ship with the task): "
            + ", ".join(f"{k} {v}" for k, v in kinds.items()),
            "",
        ]
    if card.checklists:
        out += _answers(card.checklists, m.loc)
    if findings:
        out.append("**Fresh-eyes findings**")
        out += [f"- {f.severity} / {f.category} — {f.file}:{f.line}: {f.message}" for f in findings]
        out.append("")
    return out


def _answers(cl: Checklists, loc: int) -> list[str]:
    out: list[str] = []
    for title, answers in (
        ("Fitness", cl.fitness),
        ("Robustness & scale", cl.robustness),
        ("Maintainability", cl.maintainability),
    ):
        yes = sum(a.answer for a in answers)
        flipped = sum(a.flipped for a in answers)
        flips = f"; {flipped} flipped between the two orders, so not met" if flipped else ""
        out.append(f"**{title}** ({yes}/{len(answers)} yes{flips})")
        out += [f"- [{'x' if a.answer else ' '}] {a.item} — {a.evidence}" for a in answers]
        out.append("")
    return [
        *out,
        f"**Complexity**: estimated lean size {cl.estimated_necessary_loc} LOC vs {loc} measured; "
        f"justified: {'yes' if cl.complexity_justified else 'no'} — {cl.complexity_evidence}",
        f"**Bad names**: {', '.join(cl.bad_names) or 'none'}",
        "",
    ]


def _metrics(cards: list[Scorecard]) -> list[str]:
    out = [
        "## Speed-Run Metrics",
        "",
        "| Implementation | LLM calls | Fix cycles | Generation ms |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {c.name} | {c.measurement.llm_calls} | {c.measurement.fix_cycles} | {c.measurement.generation_ms} |"
        for c in cards
    ]
    return [*out, ""]


def _scorecard_table(cards: list[Scorecard]) -> list[str]:
    """The scores, and how stable the judge's answers were when the order was reversed."""
    header = " | ".join(CRITERIA)
    out = ["## Judge Scorecard", "", f"| Implementation | {header} | Total |", "|---|" + "---|" * (len(CRITERIA) + 1)]
    for c in cards:
        scores = c.scores.as_dict()
        out.append(f"| {c.name} | " + " | ".join(str(scores[k]) for k in CRITERIA) + f" | {c.scores.total} |")
    return [*out, "", stability_line(verdict_stability(cards)), ""]


def _gates_and_winner(cards: list[Scorecard], decision: Decision) -> list[str]:
    out = ["## Hard Gates", ""]
    eliminated = [c for c in cards if c.eliminated]
    out += [f"- {c.name} eliminated: {'; '.join(c.elimination_reasons)}" for c in eliminated] or [
        "- No implementation scored 1 on any criterion."
    ]
    out.append(f"- Gate applied to the winner: {decision.gate_applied or 'none (clear lead on total)'}")
    out += [
        "",
        "## Winner Selection",
        "",
        f"**Winner: {decision.winner or 'none'}**",
        "",
        f"Rationale: {decision.rationale}",
        "",
        "Trade-offs acknowledged:",
    ]
    out += [f"- {t}" for t in decision.tradeoffs] or ["- None: the winner was at least as good on every criterion."]
    return [*out, "", "Token efficiency: " + _efficiency(cards, decision.winner), ""]


def _efficiency(cards: list[Scorecard], winner: str | None) -> str:
    calls = sum(c.measurement.llm_calls for c in cards)
    cycles = sum(c.measurement.fix_cycles for c in cards)
    text = f"{len(cards)} implementations cost {calls} hosted model calls and {cycles} fix cycles in total"
    if calls == 0:
        return (
            "no speed-run metrics were supplied (the implementations were judged as found on disk), so the "
            "tiebreak could not use calls, fix cycles or generation time."
        )
    win = next((c for c in cards if c.name == winner), None)
    if win is not None:
        text += f"; the winner needed {win.measurement.llm_calls} calls and {win.measurement.fix_cycles} fix cycles"
    return text + ". The fast model wrote the code; the caller received only this summary."
