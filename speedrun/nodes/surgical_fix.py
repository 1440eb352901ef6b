"""surgical_fix: failures → small search/replace edits, applied exactly; or the caller fixes (fixer = client)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from speedrun import prompts
from speedrun.config import RunContext, Settings
from speedrun.errors import SpeedRunError
from speedrun.excerpts import within_budget
from speedrun.llm import structured
from speedrun.loop.edits import apply_edits, numbered
from speedrun.nodes.common import progress, run_settings
from speedrun.state.edits import EditOutcome, FixPlan
from speedrun.state.records import TestReport, one_line
from speedrun.state.runs import ResumeAnswer
from speedrun.state.turbo import AppliedEdit, ClientFixRequest, FixCycle, TurboState
from speedrun.words import plural

WHOLE_FILE_LINES = 200  # files up to this size are shown whole; larger ones as windows around cited lines
WINDOW = 25
EXCERPT_BUDGET = 60_000  # characters of code shown to the fixer
CLIENT_FAILURES = 3  # failing tests listed when the caller is the fixer
MAX_PROBLEMS = 10  # edits explained in one retry prompt; each outcome's message and excerpt are capped by apply_edits
_CITE = re.compile(r"([\w./-]+\.\w+):(\d+)")


async def surgical_fix(state: TurboState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """One fix cycle: ask the fixer (model or caller) for edits and apply them; never regenerate a file."""
    settings = run_settings(runtime, state.roles)
    cycle = len(state.cycles) + 1
    report = state.tests
    failures_before = (report.failed + report.errors) if report else 0
    if settings.fixer_is_client:
        return await _client_fix(state, settings, cycle, failures_before)
    progress(runtime, "surgical_fix", f"cycle {cycle}: fixer is reading {plural(failures_before, 'failure')}")
    root = Path(state.output_dir)
    # File reads and writes run in a worker thread: the event loop serves other runs and tools meanwhile,
    # and `langgraph dev` refuses blocking calls inside nodes.
    excerpts = await asyncio.to_thread(_excerpts, root, state)
    messages = [
        ("system", prompts.FIX_SYSTEM),
        (
            "user",
            prompts.FIX_USER.format(
                test_command=state.test_command,
                summary=_tests(state).summary(),
                failures=_failures_text(state),
                contract=state.spec.render() if state.spec else "(none)",
                excerpts=excerpts,
            ),
        ),
    ]
    plan, ledger = await structured(settings, "fixer", FixPlan, messages)
    outcomes = await asyncio.to_thread(apply_edits, root, plan.edits, **_edit_limits(settings, state))
    retry = [o for o in outcomes if o.status in ("not_found", "ambiguous")]
    if retry:  # one retry, showing the closest match with line numbers
        progress(
            runtime, "surgical_fix", f"cycle {cycle}: {plural(len(retry), 'edit')} did not match; asking once more"
        )
        messages += [
            ("assistant", plan.model_dump_json()),
            ("user", prompts.FIX_RETRY.format(problems=_problems(retry))),
        ]
        second, more = await structured(settings, "fixer", FixPlan, messages)
        ledger += more
        outcomes = [o for o in outcomes if o not in retry] + await asyncio.to_thread(
            apply_edits, root, second.edits, **_edit_limits(settings, state)
        )
    applied = sum(o.status == "applied" for o in outcomes)
    progress(runtime, "surgical_fix", f"cycle {cycle}: applied {applied} of {plural(len(outcomes), 'edit')}")
    fix = FixCycle(
        cycle=cycle,
        source="model",
        diagnosis=plan.diagnosis,
        failures_before=failures_before,
        edits=[_applied(o) for o in outcomes],
    )
    return {"cycles": [fix], "ledger": ledger}


async def _client_fix(state: TurboState, settings: Settings, cycle: int, failures_before: int) -> dict[str, Any]:
    failures = state.tests.failures if state.tests else []
    previous = state.cycles[-1].edits if state.cycles and state.cycles[-1].source == "client" else []
    # Compact like every result a caller sees; a refused edit must reach the caller now, not only in the report.
    request = ClientFixRequest(
        cycle=cycle,
        output_dir=state.output_dir,
        files=[f.path for f in state.files],
        failures=[{"name": one_line(f.name), "message": one_line(f.message)} for f in failures[:CLIENT_FAILURES]],
        more_failures=max(0, len(failures) - CLIENT_FAILURES),
        edits_not_applied=[
            {"path": e.path, "status": e.status, "message": one_line(e.message, 300)}
            for e in previous
            if e.status != "applied"
        ],
    )
    # The graph pauses here until resume_run / `speedrun resume`; a checkpoint may hold the answer as a dict.
    answer = ResumeAnswer.read(interrupt(request.model_dump()))
    action, edits = answer.action, answer.edits
    fix = FixCycle(
        cycle=cycle,
        source="client",
        failures_before=failures_before,
        diagnosis={"retest": "caller fixed the files", "stop": "caller stopped the run", "edits": "caller sent edits"}[
            action
        ],
    )
    if action == "stop":
        return {"cycles": [fix], "stopped": True}
    if action == "edits":
        outcomes = await asyncio.to_thread(apply_edits, Path(state.output_dir), edits, **_edit_limits(settings, state))
        fix.edits = [_applied(o) for o in outcomes]
    return {"cycles": [fix]}


def _edit_limits(settings: Settings, state: TurboState) -> dict[str, Any]:
    """The same file-size cap and allowed protected places as the generator's writes, for every edit."""
    return {"max_file_bytes": settings.max_file_bytes, "allow_paths": [*settings.allowed_paths(), *state.allow_paths]}


def _tests(state: TurboState) -> TestReport:
    """The test report a fix cycle works from; run_tests always runs before surgical_fix."""
    if state.tests is None:
        raise SpeedRunError("surgical_fix ran before the tests did")
    return state.tests


def _applied(outcome: EditOutcome) -> AppliedEdit:
    e = outcome.edit
    return AppliedEdit(
        path=e.path,
        status=outcome.status,
        message=outcome.message,
        lines_removed=outcome.lines_removed,
        lines_added=outcome.lines_added,
    )


def _failures_text(state: TurboState) -> str:
    r = _tests(state)
    if not r.failures:
        return r.output_tail[-4000:] or "(no output)"
    return "\n\n".join(
        f"- {f.name}" + (f" ({f.file}:{f.line})" if f.file else "") + f"\n{f.message}" for f in r.failures
    )


def _cited(state: TurboState) -> dict[str, set[int]]:
    """Files named by the failures (and the lines they point at), restricted to files we wrote."""
    known = {f.path for f in state.files}
    cited: dict[str, set[int]] = {}
    r = _tests(state)
    texts = [r.output_tail] + [f"{f.name}\n{f.message}" for f in r.failures]
    for f in r.failures:
        if f.file and f.file in known:
            cited.setdefault(f.file, set()).update({f.line} if f.line else set())
        test_file = f.name.split("::")[0]
        if test_file in known:
            cited.setdefault(test_file, set())
    for text in texts:
        for path, line in _CITE.findall(text):
            match = next((k for k in known if k == path or k.endswith("/" + path) or path.endswith("/" + k)), None)
            if match:
                cited.setdefault(match, set()).add(int(line))
    return cited


def _excerpts(root: Path, state: TurboState) -> str:
    cited = _cited(state)
    # Source files the failing tests exercise are often not in the traceback text; show small ones too.
    order = list(cited) + [f.path for f in state.files if f.path not in cited]

    def blocks() -> Iterator[tuple[str, str]]:
        for path in order:
            target = root / path
            if not target.is_file():
                continue
            text = target.read_text(encoding="utf-8", errors="replace")
            lines = text.splitlines()
            if len(lines) <= WHOLE_FILE_LINES:
                yield path, numbered(text)
            elif cited.get(path):
                yield (
                    path,
                    "\n...\n".join(
                        numbered(text, max(1, n - WINDOW), min(len(lines), n + WINDOW)) for n in sorted(cited[path])
                    ),
                )

    return within_budget(blocks(), EXCERPT_BUDGET, "(no readable files)")


def _problems(outcomes: list[EditOutcome]) -> str:
    out = []
    for o in outcomes[:MAX_PROBLEMS]:
        text = prompts.FIX_PROBLEM.format(path=o.edit.path[:120], status=o.status, message=o.message)
        if o.closest:
            text += prompts.FIX_PROBLEM_CLOSEST.format(closest=o.closest)
        out.append(text)
    if len(outcomes) > MAX_PROBLEMS:
        out.append(prompts.FIX_PROBLEMS_MORE.format(count=len(outcomes) - MAX_PROBLEMS))
    return "\n".join(out)
