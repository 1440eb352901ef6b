"""run_tests: run the test command in the workspace, sandboxed (no secrets, timeout, capped output)."""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from speedrun.config import RunContext
from speedrun.nodes.common import progress, sandbox_options
from speedrun.sandbox import run_tests as run_in_sandbox
from speedrun.state.turbo import TurboState


async def run_tests(state: TurboState, runtime: Runtime[RunContext]) -> dict:
    """Run `test_command` and record the report. (Named run_tests, never test_*, so pytest won't collect it.)"""
    progress(runtime, "run_tests", f"running {state.test_command}")
    report = await run_in_sandbox(state.test_command, Path(state.output_dir), timeout_s=state.test_timeout_s,
                                  **sandbox_options(runtime))
    if report.problem:
        progress(runtime, "run_tests", report.problem)
        return {"tests": report, "warnings": [report.problem]}
    verdict = "passed" if report.ok else f"{report.failed} failed, {report.errors} errors"
    progress(runtime, "run_tests", f"{report.passed} passed; {verdict}", passed=report.passed,
             failed=report.failed, errors=report.errors)
    return {"tests": report}
