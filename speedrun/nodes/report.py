"""report: assemble the compact TurboResult the caller sees."""

from __future__ import annotations

from langgraph.runtime import Runtime

from speedrun.config import RunContext
from speedrun.llm import estimate_tokens
from speedrun.nodes.common import progress
from speedrun.state.turbo import TurboResult, TurboState, ledger_by_role

GENERATING_ROLES = ("generator", "fixer", "planner")


async def report(state: TurboState, runtime: Runtime[RunContext]) -> dict:
    """Decide the final status and summarize files, tests, fix cycles and the ledger."""
    tests = state.tests
    if state.stopped:
        status = "stopped"
    elif tests is not None and tests.ok:
        status = "passed"
    else:
        status = "failed"
    warnings = list(state.warnings)
    if not state.files:
        warnings.append("the generator wrote no files; see file_errors and the ledger's finish reasons")
    if tests is not None:
        tests = tests.compact()  # the caller's copy; the full report stays in the checkpoint
    run_id = getattr(getattr(runtime, "execution_info", None), "thread_id", None)
    result = TurboResult(run_id=run_id, status=status, output_dir=state.output_dir, files=state.files,
                         file_errors=state.file_errors, tests=tests, cycles=state.cycles,
                         ledger=ledger_by_role(state.ledger), warnings=warnings)
    generated = sum(e.completion_tokens for e in state.ledger if e.role in GENERATING_ROLES)
    result.caller_tokens_saved = max(0, generated - estimate_tokens(result.model_dump_json()))
    progress(runtime, "report", f"{status}: {len(state.files)} files, {len(state.cycles)} fix cycle(s)")
    return {"result": result}
