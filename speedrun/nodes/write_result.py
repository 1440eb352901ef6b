"""write_result: result.md in the caller's repo (runners table, winner, similarity, tokens) and the compact result."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from speedrun.config import RunContext
from speedrun.files import SafeWriter
from speedrun.llm import estimate_tokens
from speedrun.nodes.common import progress, run_settings
from speedrun.nodes.gate import by_index
from speedrun.nodes.prepare_worktrees import run_id_of
from speedrun.nodes.report import GENERATING_ROLES
from speedrun.state.judge import JudgeResult
from speedrun.state.parallel import (
    AnyPercentState,
    ParallelResult,
    RunnerResult,
    RunnerRow,
    ShowdownState,
    plans_dir,
)
from speedrun.state.records import FileError, GeneratedFile, TestReport, one_line
from speedrun.state.turbo import LINE, SHOWN_WARNINGS

WHY_CHARS = 240  # the winner's reason in the compact result; result.md has it whole
LONE_SURVIVOR = "the only runner that passed every gate (no judge was needed)"
_RESULT_WORDS = {"passed": "passed", "failed_tests": "tests failed", "failed_scenario": "scenario failed"}


def tests_cell(report: TestReport | None) -> str:
    """A test report in a table cell: 'N passed, M failed' (and why it could not run)."""
    if report is None:
        return "-"
    if report.problem:
        return "could not run"
    text = f"{report.passed} passed" + (f", {report.failed} failed" if report.failed else "")
    text += f", {report.errors} errors" if report.errors else ""
    return text + (" (timed out)" if report.timed_out else "")


def row(result: RunnerResult) -> RunnerRow:
    """One runner in the compact table."""
    return RunnerRow(
        name=result.name,
        status=result.status,
        tests=tests_cell(result.tests),
        scenario=tests_cell(result.scenario) if result.scenario else "",
        fix_cycles=result.fix_cycles,
        llm_calls=len(result.ledger),
        lines=result.lines,
        wall_s=round(result.wall_ms / 1000, 1),
    )


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _outcome(result: RunnerResult, winner: str | None) -> str:
    if result.name == winner:
        return "**winner**"
    if result.status == "error":
        return f"error: {result.error or 'unknown'}"
    return _RESULT_WORDS[result.status]


def runners_table(results: list[RunnerResult], judged: JudgeResult | None, winner: str | None) -> list[str]:
    """The Markdown runners table of result.md."""
    findings = {card.name: card.findings for card in judged.scorecards} if judged else {}
    lines = [
        "| Runner | Approach | Tests | Scenario | Fresh-eyes findings | Lines | LLM calls | Fix cycles | Wall time "
        "| Result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = [
            r.name,
            r.approach or "-",
            tests_cell(r.tests),
            tests_cell(r.scenario),
            findings.get(r.name, "-"),
            r.lines,
            len(r.ledger),
            r.fix_cycles,
            f"{r.wall_ms / 1000:.1f} s",
            _outcome(r, winner),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def render(state: ShowdownState | AnyPercentState, result: ParallelResult, saved: int, generated: int) -> str:
    """result.md: the runners table, the winner and why, trade-offs (any-percent), similarity flags, tokens."""
    judged = state.judged
    title = "showdown" if state.mode == "showdown" else "any-percent"
    out = [f"# speed-run {title}: {state.feature}", ""]
    if result.winner:
        verb = {"promoted": f"promoted ({state.promote})", "awaiting_choice": "awaiting your choice"}
        out.append(f"Winner: **{result.winner}**, branch `{result.winner_branch}`, {verb.get(result.status, '')}.")
    else:
        out.append("No winner: no runner passed every gate, or the judge eliminated every survivor.")
    if result.promotion:
        out.append(f"Promotion: {result.promotion.rstrip('.')}.")
    if result.flip_rate is not None:
        out.append(f"Judge flip rate (answers that changed when the order was swapped): {result.flip_rate:.1%}.")
    if result.worksheet_path:
        out.append(f"Judge worksheet: `{result.worksheet_path}`.")
    out += ["", "## Runners", "", *runners_table(by_index(state.results), judged, result.winner), ""]
    why = judged.decision.rationale if judged and judged.winner == result.winner else result.why
    out += ["## Why this winner", "", why or "-", ""]
    if isinstance(state, AnyPercentState):
        out += ["## Trade-offs the judge found", ""]
        out += [f"- {t}" for t in (judged.decision.tradeoffs if judged else [])] or ["- none recorded"]
        out.append("")
    out += ["## Similarity", ""]
    out += [f"- {f.first} and {f.second} are {f.ratio:.1%} alike (near-duplicates)" for f in state.similar] or [
        "- no pair of implementations is 95% alike or more"
    ]
    if state.warnings:
        out += ["", "## Warnings", "", *[f"- {_cell(w)}" for w in state.warnings]]
    out += [
        "",
        "## Tokens",
        "",
        f"The hosted models generated {generated} tokens (plans, code, fixes); the caller read a compact result "
        f"instead, saving about {saved} tokens.",
        "",
    ]
    return "\n".join(out)


def _write(root: Path, rel: str, text: str, backups: Path) -> str | None:
    """Write result.md through the safe writer; the error text, or None when written. Blocking."""
    written = SafeWriter(root, backup_dir=backups).write(GeneratedFile(path=rel, content=text))
    return written.error if isinstance(written, FileError) else None


async def write_result(state: ShowdownState | AnyPercentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Complete promote's partial result with the runners, flags and tokens; write result.md; keep it compact."""
    base = state.result or ParallelResult(mode=state.mode, status="no_survivor" if not state.survivors else "failed")
    why = base.why or (LONE_SURVIVOR if base.winner and state.judged is None else "")
    result = base.model_copy(
        update={
            "why": one_line(why, WHY_CHARS),
            "runners": [row(r) for r in by_index(state.results)],
            "similar": state.similar,
            "warnings": [one_line(w, LINE) for w in state.warnings[:SHOWN_WARNINGS]],
        }
    )
    generated = sum(e.completion_tokens for e in state.ledger if e.role in GENERATING_ROLES)
    saved = max(0, generated - estimate_tokens(result.model_dump_json()))
    result.caller_tokens_saved = saved
    rel = f"{plans_dir(state.feature, state.mode)}/result.md"
    if state.repo_root:
        backups = run_settings(runtime).home / "runs" / run_id_of(runtime, state) / "backups"
        text = render(state, result.model_copy(update={"why": why}), saved, generated)
        error = await asyncio.to_thread(_write, Path(state.repo_root), rel, text, backups)
        if error:
            result.warnings = [*result.warnings, one_line(f"result.md not written: {error}", LINE)]
        else:
            result.result_path = str(Path(state.repo_root) / rel)
    progress(runtime, "write_result", f"{result.status}: winner {result.winner or 'none'}", winner=result.winner)
    return {"result": result}
