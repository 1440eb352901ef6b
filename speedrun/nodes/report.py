"""report: assemble the TurboResult, write it in full to the run's folder, and keep the caller's copy compact."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Literal

from langgraph.runtime import Runtime

from speedrun.config import RunContext, ensure_home
from speedrun.files import write_text_atomic
from speedrun.llm import estimate_tokens
from speedrun.nodes.common import progress, run_settings
from speedrun.state.turbo import TurboResult, TurboState, ledger_by_role
from speedrun.words import plural

GENERATING_ROLES = ("generator", "fixer", "planner")


def report_path(home: Path, run_id: str, runner: str | None = None) -> Path:
    """Where a run's full report lives: SPEEDRUN_HOME/runs/<run_id>/report.json, or .../<runner>/report.json for
    turbo inside a parallel runner (the runners of one run share its id)."""
    folder = home / "runs" / run_id
    return (folder / runner if runner else folder) / "report.json"


def save_report(home: Path, run_id: str, text: str, runner: str | None = None) -> Path:
    """Write a run's full report under SPEEDRUN_HOME (created 0700 if this is its first use); returns its path."""
    path = report_path(ensure_home(home), run_id, runner)
    write_text_atomic(path, text, private=True)
    return path


async def report(state: TurboState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Decide the final status, summarize files, tests, fix cycles and the ledger, and save the full report."""
    tests = state.tests
    status: Literal["passed", "failed", "stopped"]
    if state.stopped:
        status = "stopped"
    elif tests is not None and tests.ok:
        status = "passed"
    else:
        status = "failed"
    warnings = list(state.warnings)
    if not state.files:
        warnings.append("the generator wrote no files; see file_errors and the ledger's finish reasons")
    for role in sorted({e.role for e in state.ledger if e.fallback}):
        used = [e for e in state.ledger if e.fallback and e.role == role]
        warnings.append(
            f"the {role}'s fallback {used[0].provider}:{used[0].model} answered {plural(len(used), 'call')}: "
            "its primary provider kept failing"
        )
    run_id = getattr(getattr(runtime, "execution_info", None), "thread_id", None)
    result = TurboResult(
        run_id=run_id,
        status=status,
        output_dir=state.output_dir,
        files=state.files,
        file_errors=state.file_errors,
        tests=tests,
        cycles=state.cycles,
        ledger=ledger_by_role(state.ledger),
        warnings=warnings,
    )
    generated = sum(e.completion_tokens for e in state.ledger if e.role in GENERATING_ROLES)
    result.caller_tokens_saved = max(0, generated - estimate_tokens(result.summary().model_dump_json()))
    if run_id:
        home = run_settings(runtime).home
        path = report_path(home, str(run_id), state.runner)
        result.report_path = str(path)
        text = json.dumps(result.model_dump(mode="json"), indent=1)
        try:  # off the event loop: Studio refuses blocking calls in nodes
            await asyncio.to_thread(save_report, home, str(run_id), text, state.runner)
        except OSError as exc:
            result.report_path = None
            result.warnings.append(f"could not write the full report to {path}: {exc.strerror or exc}")
    progress(
        runtime, "report", f"{status}: {plural(len(state.files), 'file')}, {plural(len(state.cycles), 'fix cycle')}"
    )
    return {"result": result}
