"""measure: deterministic facts about one implementation — LOC, readability violations, tests, run metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from speedrun.config import RunContext
from speedrun.errors import InputError
from speedrun.judge.measure import measure_tree
from speedrun.nodes.common import progress, run_settings
from speedrun.nodes.run_tests import run_test_command
from speedrun.state.judge import Measurement, MeasureTask


def _measure(root: Path, name: str) -> Measurement:
    """Blocking part: check the directory and walk it (bounded; see speedrun.judge.measure)."""
    if not root.is_dir():
        raise InputError(
            f"implementation {name[:80]!r}: path {str(root)[:200]!r} is not a directory; pass the "
            "directory that holds the implementation."
        )
    return measure_tree(root, name=name)


async def measure(task: MeasureTask, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Measure one implementation (a Send branch); runs its tests when no report was given."""
    impl = task.impl
    root = Path(impl.path)
    progress(runtime, "measure", f"{impl.name}: measuring")
    # Off the event loop: a walk of a big tree must never stop the MCP server from answering.
    m = await asyncio.to_thread(_measure, root, impl.name)
    report = impl.test_report
    if report is None and impl.test_command:
        progress(runtime, "measure", f"{impl.name}: running {impl.test_command}")
        report = await run_test_command(impl.test_command, root, runtime)
    elif report is not None:  # a caller's report may carry what its tests printed, too
        report = report.redacted(run_settings(runtime).redact_output)
    metrics = impl.metrics
    m = m.model_copy(update={"tests": report, **(metrics.model_dump() if metrics else {})})
    progress(runtime, "measure", f"{impl.name}: {m.loc} LOC, {len(m.violations)} readability violations")
    return {"measurements": [m]}
