"""measure: deterministic facts about one implementation — LOC, readability violations, tests, run metrics."""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from speedrun.config import RunContext
from speedrun.errors import InputError
from speedrun.measure import measure_tree
from speedrun.nodes.common import progress
from speedrun.sandbox import run_tests
from speedrun.state.judging import MeasureTask


async def measure(task: MeasureTask, runtime: Runtime[RunContext]) -> dict:
    """Measure one implementation (a Send branch); runs its tests when no report was given."""
    impl = task.impl
    root = Path(impl.path)
    if not root.is_dir():
        raise InputError(f"implementation {impl.name!r}: path {impl.path!r} is not a directory.")
    m = measure_tree(root, name=impl.name)
    report = impl.test_report
    if report is None and impl.test_command:
        progress(runtime, "measure", f"{impl.name}: running {impl.test_command}")
        report = await run_tests(impl.test_command, root)
    metrics = impl.metrics
    m = m.model_copy(update={"tests": report, **(metrics.model_dump() if metrics else {})})
    progress(runtime, "measure", f"{impl.name}: {m.loc} LOC, {len(m.violations)} readability violations")
    return {"measurements": [m]}
