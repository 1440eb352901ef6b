"""run_tests: run the test command in the workspace, sandboxed (no secrets, timeout, capped output)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from speedrun.config import RunContext
from speedrun.nodes.common import progress, run_settings, sandbox_options
from speedrun.sandbox import run_tests as run_in_sandbox
from speedrun.state import TestReport
from speedrun.state.turbo import TurboState


async def run_test_command(command: str, cwd: Path, runtime: Any, **options: Any) -> TestReport:
    """Run a test command in the run's sandbox and return its report redacted like a log line.

    Test code can print anything it reaches, a key included; this is the one place a report is made for a run,
    so nothing it printed reaches a result, a checkpoint, a fixer prompt or a report unredacted."""
    report = await run_in_sandbox(command, cwd, **options, **sandbox_options(runtime))
    return report.redacted(run_settings(runtime).redact_output)  # output was capped: keys may be cut


async def run_tests(state: TurboState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Run `test_command` and record the report. (Named run_tests, never test_*, so pytest won't collect it.)"""
    progress(runtime, "run_tests", f"running {state.test_command}")
    report = await run_test_command(
        state.test_command,
        Path(state.output_dir),
        runtime,
        timeout_s=state.test_timeout_s,
        extra_env=state.test_env,
    )
    if report.problem:
        progress(runtime, "run_tests", report.problem)
        return {"tests": report, "warnings": [report.problem]}
    verdict = "passed" if report.ok else f"{report.failed} failed, {report.errors} errors"
    progress(
        runtime,
        "run_tests",
        f"{report.passed} passed; {verdict}",
        passed=report.passed,
        failed=report.failed,
        errors=report.errors,
    )
    return {"tests": report}
