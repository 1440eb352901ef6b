"""run_tests: run the test command in the workspace, sandboxed (no secrets, timeout, capped output)."""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from speedrun.config import RunContext
from speedrun.nodes.common import progress, run_settings
from speedrun.sandbox import run_tests as run_in_sandbox
from speedrun.state.turbo import TurboState


def sandbox_options(runtime: Runtime[RunContext] | None) -> dict:
    """Sandbox mode, network and the places to mask, from the run's settings (defaults: auto, off)."""
    settings = run_settings(runtime)
    home = getattr(settings, "home", None)
    return {
        "mode": getattr(settings, "sandbox", "auto"),
        "network": bool(getattr(settings, "sandbox_network", False)),
        "mask": (Path(home),) if home else (),
    }


async def run_tests(state: TurboState, runtime: Runtime[RunContext]) -> dict:
    """Run `test_command` and record the report. (Named run_tests, never test_*, so pytest won't collect it.)"""
    progress(runtime, "run_tests", f"running {state.test_command}")
    report = await run_in_sandbox(state.test_command, Path(state.output_dir), timeout_s=state.test_timeout_s,
                                  **sandbox_options(runtime))
    problem = getattr(report, "problem", None)
    if problem:
        progress(runtime, "run_tests", problem)
        return {"tests": report, "warnings": [problem]}
    verdict = "passed" if report.ok else f"{report.failed} failed, {report.errors} errors"
    progress(runtime, "run_tests", f"{report.passed} passed; {verdict}", passed=report.passed,
             failed=report.failed, errors=report.errors)
    return {"tests": report}
