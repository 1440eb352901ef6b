"""Judge helpers: blinded labels, bounded source excerpts, and the worksheet in the seed's section order."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from speedrun.measure import source_files
from speedrun.scoring import CRITERIA, format_score_tables
from speedrun.state.judge import Decision, Scorecard
from speedrun.state.judging import ImplementationReview, JudgeInput

LABELS = "ABCDE"


def blind(inputs: JudgeInput) -> dict[str, str]:
    """name → neutral label, in an order shuffled by a seed derived from the inputs (stable across resumes)."""
    names = [impl.name for impl in inputs.implementations]
    seed = hashlib.sha256(json.dumps([inputs.design, sorted(names)]).encode()).hexdigest()
    order = sorted(names)
    random.Random(seed).shuffle(order)
    return {name: LABELS[i] for i, name in enumerate(order)}


def read_sources(root: Path, budget: int) -> str:
    """Source files under root with relative paths and line numbers, cut at `budget` characters."""
    parts: list[str] = []
    used = 0
    for path, rel in source_files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        body = "\n".join(f"{n:4}| {line}" for n, line in enumerate(text.splitlines(), 1))
        block = f"--- {rel}\n{body}\n"
        if used + len(block) > budget:
            parts.append(f"--- {rel} (omitted: size bound reached)\n")
            continue
        parts.append(block)
        used += len(block)
    return "".join(parts) or "(no source files)"


def _tests_text(card: Scorecard) -> str:
    t = card.measurement.tests
    if t is None:
        return "not run"
    return f"{t.passed} passed, {t.failed} failed, {t.errors} errors" + (" (timed out)" if t.timed_out else "")


def render_worksheet(inputs: JudgeInput, cards: list[Scorecard], decision: Decision,
                     reviews: list[ImplementationReview]) -> str:
    """The worksheet as Markdown, in the seed's required order."""
    by_name = {r.name: r for r in reviews}
    mode = "Showdown (one design, several runners)" if inputs.mode == "showdown" else \
        "Any-percent (different approaches)"
    out = [f"# Judge worksheet — {mode}", ""]
    out += ["## Gate Check", "", "| Implementation | Label | Tests | Files | LOC |", "|---|---|---|---|---|"]
    for c in cards:
        m = c.measurement
        out.append(f"| {c.name} | {c.label} | {_tests_text(c)} | {m.files} | {m.loc} |")
    out += ["", "## Feasibility Check", ""]
    for c in cards:
        findings = by_name.get(c.name, ImplementationReview(name=c.name)).findings
        crit = [f for f in findings if f.severity == "critical"]
        tests = c.measurement.tests
        green = tests is not None and tests.ok
        verdict = "feasible" if green and not crit else "at risk"
        out.append(f"- **{c.name}**: {verdict} — tests {_tests_text(c)}; {len(crit)} critical, "
                   f"{sum(f.severity == 'major' for f in findings)} major, "
                   f"{sum(f.severity == 'minor' for f in findings)} minor fresh-eyes findings.")
        for f in crit:
            out.append(f"  - critical ({f.category}) {f.file}:{f.line}: {f.message}")
    out += ["", "## Scoring Worksheet", "", "Score tables (code turns the answers into scores):", "",
            format_score_tables(), ""]
    for c in cards:
        m = c.measurement
        out += [f"### {c.name} (shown to the judge as {c.label})", "",
                f"Measured: {m.loc} LOC in {m.files} files ({', '.join(m.languages) or 'no recognised language'}). "
                f"{m.counted}", "",
                "Readability violations: " + ", ".join(f"{k} {v}" for k, v in m.violation_counts().items()), ""]
        if c.checklists:
            for title, answers in (("Fitness", c.checklists.fitness), ("Robustness & scale", c.checklists.robustness),
                                   ("Maintainability", c.checklists.maintainability)):
                yes = sum(a.answer for a in answers)
                out.append(f"**{title}** ({yes}/{len(answers)} yes)")
                out += [f"- [{'x' if a.answer else ' '}] {a.item} — {a.evidence}" for a in answers]
                out.append("")
            cl = c.checklists
            out += [f"**Complexity**: estimated lean size {cl.estimated_necessary_loc} LOC vs {m.loc} measured; "
                    f"justified: {'yes' if cl.complexity_justified else 'no'} — {cl.complexity_evidence}",
                    f"**Bad names**: {', '.join(cl.bad_names) or 'none'}", ""]
        findings = by_name.get(c.name, ImplementationReview(name=c.name)).findings
        if findings:
            out.append("**Fresh-eyes findings**")
            out += [f"- {f.severity} / {f.category} — {f.file}:{f.line}: {f.message}" for f in findings]
            out.append("")
    out += ["## Speed-Run Metrics", "", "| Implementation | LLM calls | Fix cycles | Generation ms |", "|---|---|---|---|"]
    out += [f"| {c.name} | {c.measurement.llm_calls} | {c.measurement.fix_cycles} | {c.measurement.generation_ms} |"
            for c in cards]
    header = " | ".join(CRITERIA)
    out += ["", "## Judge Scorecard", "", f"| Implementation | {header} | Total |",
            "|---|" + "---|" * (len(CRITERIA) + 1)]
    for c in cards:
        scores = c.scores.as_dict()
        out.append(f"| {c.name} | " + " | ".join(str(scores[k]) for k in CRITERIA) + f" | {c.scores.total} |")
    out += ["", "## Hard Gates", ""]
    eliminated = [c for c in cards if c.eliminated]
    out += [f"- {c.name} eliminated: {'; '.join(c.elimination_reasons)}" for c in eliminated] or \
        ["- No implementation scored 1 on any criterion."]
    out.append(f"- Gate applied to the winner: {decision.gate_applied or 'none (clear lead on total)'}")
    out += ["", "## Winner Selection", "", f"**Winner: {decision.winner or 'none'}**", "",
            f"Rationale: {decision.rationale}", "", "Trade-offs acknowledged:"]
    out += [f"- {t}" for t in decision.tradeoffs] or ["- None: the winner was at least as good on every criterion."]
    out += ["", "Token efficiency: " + _efficiency(cards, decision.winner), ""]
    return "\n".join(out)


def _efficiency(cards: list[Scorecard], winner: str | None) -> str:
    calls = sum(c.measurement.llm_calls for c in cards)
    cycles = sum(c.measurement.fix_cycles for c in cards)
    text = f"{len(cards)} implementations cost {calls} hosted model calls and {cycles} fix cycles in total"
    if calls == 0:
        return ("no speed-run metrics were supplied (the implementations were judged as found on disk), so the "
                "tiebreak could not use calls, fix cycles or generation time.")
    win = next((c for c in cards if c.name == winner), None)
    if win is not None:
        text += f"; the winner needed {win.measurement.llm_calls} calls and {win.measurement.fix_cycles} fix cycles"
    return text + ". The fast model wrote the code; the caller received only this summary."
