"""run_runner: one parallel runner — its own plan, setup, turbo's loop in its worktree, scenario tests, commit."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from langgraph.errors import GraphBubbleUp
from langgraph.runtime import Runtime

from speedrun import prompts, worktrees
from speedrun.config import RunContext, Settings
from speedrun.errors import SpeedRunError
from speedrun.files import SafeWriter
from speedrun.llm import complete
from speedrun.nodes.common import progress, run_settings
from speedrun.nodes.gate import gate_status
from speedrun.nodes.run_tests import run_test_command
from speedrun.state.parallel import RunnerResult, RunnerTask
from speedrun.state.records import FileError, GeneratedFile, LedgerEntry, TestReport, one_line
from speedrun.state.turbo import Contract, TurboInput, TurboResult
from speedrun.words import plural

#: Each runner's tests get ports PORT_BASE + PORT_SPAN * runner .. + PORT_SPAN - 1 (SPEEDRUN_PORT_BASE).
PORT_BASE, PORT_SPAN = 20000, 100
ERROR_CHARS = 200  # a failed runner's one-line error
SUMMARY_LINES, SUMMARY_CHARS = 3, 240
MAX_COUNTED_BYTES = 2_000_000  # files beyond this are not read to count lines (generated data, not code)


def runner_env(index: int) -> dict[str, str]:
    """The variables a runner's tests see: its number and the start of its own port range."""
    return {"SPEEDRUN_RUNNER": str(index), "SPEEDRUN_PORT_BASE": str(PORT_BASE + PORT_SPAN * index)}


def plan_messages(task: RunnerTask) -> list[tuple[str, str]]:
    """The planner's prompt: system text and design first (identical for every runner), then this runner's tail."""
    s = task.settings
    if task.approach is not None:
        a = task.approach
        tail = prompts.PLAN_TAIL_VARIANT.format(
            slug=a.slug,
            summary=a.summary,
            pros="; ".join(a.pros) or "-",
            cons="; ".join(a.cons) or "-",
            test_command=s.test_command,
        )
    else:
        tail = prompts.PLAN_TAIL_SHOWDOWN.format(index=task.index, framing=task.framing, test_command=s.test_command)
    return [("system", prompts.PLAN_SYSTEM), ("user", prompts.PLAN_SHARED.format(design=task.design) + tail)]


async def run_runner(task: RunnerTask, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Run one runner (a Send branch). Any failure becomes a RunnerResult with status 'error': the others go on."""
    started = time.monotonic()
    settings = run_settings(runtime, task.settings.roles)
    spent: list[LedgerEntry] = []
    warnings: list[str] = []
    name = task.worktree.name
    try:
        result = await _run(task, runtime, settings, spent, warnings)
    except GraphBubbleUp:  # LangGraph's own control flow (interrupts) is not a runner failure
        raise
    except Exception as exc:  # noqa: BLE001 - one runner's failure of any kind must not stop the others
        text = str(exc) if isinstance(exc, SpeedRunError) else f"{type(exc).__name__}: {exc}"
        error = one_line(settings.redact(text), ERROR_CHARS) or type(exc).__name__
        progress(runtime, "run_runner", f"{name}: failed: {error}", runner=name, phase="error")
        result = _base_result(task, status="error", error=error)
    result.ledger = spent
    result.wall_ms = int((time.monotonic() - started) * 1000)
    return {"results": [result], "ledger": spent, "warnings": [f"{name}: {w}" for w in warnings]}


def _base_result(task: RunnerTask, **fields: Any) -> RunnerResult:
    wt = task.worktree
    approach = task.approach.slug if task.approach else task.framing.split(":", 1)[0]
    return RunnerResult(
        name=wt.name,
        index=task.index,
        branch=wt.branch,
        worktree=wt.path,
        approach=approach,
        plan_path=task.plan_path,
        **fields,
    )


async def _run(
    task: RunnerTask, runtime: Any, settings: Settings, spent: list[LedgerEntry], warnings: list[str]
) -> RunnerResult:
    """The runner's five steps; raises on a failure the caller turns into an error result."""
    name, s, cwd = task.worktree.name, task.settings, Path(task.worktree.path)
    env = runner_env(task.index)

    def step(what: str, message: str) -> None:
        progress(runtime, "run_runner", f"{name}: {message}", runner=name, phase=what)

    step("plan", "writing its plan")
    plan = await _plan(task, runtime, settings, spent, warnings)
    if s.setup_command:
        step("setup", f"running {s.setup_command}")
        setup = await run_test_command(s.setup_command, cwd, runtime, timeout_s=s.test_timeout_s, extra_env=env)
        if not setup.ok:
            raise SpeedRunError(f"setup_command failed: {setup.problem or setup.summary()}")
    step("turbo", "generate, test, fix")
    context = getattr(runtime, "context", None)
    turbo, ledger = await _turbo(task, plan, env, context if isinstance(context, RunContext) else None)
    spent.extend(ledger)
    warnings.extend(turbo.warnings)
    scenario: TestReport | None = None
    if s.scenario_command:
        step("scenario", f"running {s.scenario_command}")
        scenario = await run_test_command(s.scenario_command, cwd, runtime, timeout_s=s.test_timeout_s, extra_env=env)
    step("commit", "committing on its branch")
    commit = await _commit(task, f"speed-run: {name}\n\nPlan: {task.plan_path}")
    files = await worktrees.changed_files(task.worktree, task.base)
    lines = await asyncio.to_thread(_count_lines, cwd, files)
    status = gate_status(turbo.tests, scenario, bool(s.scenario_command))
    step(
        "done",
        f"{status}; {plural(len(files), 'file')}, {plural(lines, 'line')}, {plural(len(turbo.cycles), 'fix cycle')}",
    )
    return _base_result(
        task,
        status=status,
        plan_summary=_summary(plan),
        tests=turbo.tests,
        scenario=scenario,
        fix_cycles=len(turbo.cycles),
        files_changed=files,
        lines=lines,
        commit=commit,
        report_path=turbo.report_path,
    )


async def _plan(
    task: RunnerTask, runtime: Any, settings: Settings, spent: list[LedgerEntry], warnings: list[str]
) -> str:
    """The runner's plan: the one already on disk (a resumed runner), else the planner's, written to plan_path."""
    path = Path(task.worktree.path) / task.plan_path
    existing = await asyncio.to_thread(_read_if_file, path)
    if existing:
        return existing  # a resume repeats no finished model call
    reply = await complete(settings, "planner", plan_messages(task), temperature=task.temperature)
    spent.append(reply.entry)
    if reply.finish_reason == "length":
        warnings.append("the plan was cut off by the token limit; the generator works from what arrived")
    _, missing = Contract.parse(reply.text)
    if missing:
        warnings.append(f"the plan has no {', '.join(missing)} section; the generator will have to guess it")
    await asyncio.to_thread(_write_plan, Path(task.worktree.path), task.plan_path, reply.text, settings.home)
    return reply.text


async def _turbo(
    task: RunnerTask, plan: str, env: dict[str, str], context: RunContext | None
) -> tuple[TurboResult, list[LedgerEntry]]:
    """Turbo's loop as a subgraph in the worktree: config, checkpointer and stream propagate from this node.

    The run's context is passed on explicitly too: a runner called outside a graph (no parent runtime) would
    otherwise leave turbo's nodes on the process-wide cached settings, whatever this run was given."""
    from speedrun.graphs.turbo import graph as turbo_graph  # the graphs import their nodes, not the other way

    s = task.settings
    turbo_input = TurboInput(
        contract=plan,
        output_dir=task.worktree.path,
        test_command=s.test_command,
        max_fix_cycles=s.max_fix_cycles,
        roles=s.roles,
        test_timeout_s=s.test_timeout_s,
        test_env=env,
        runner=task.worktree.name,
    )
    final = await turbo_graph.ainvoke(turbo_input, output_keys=["result", "ledger"], context=context)
    result = final.get("result")
    if not isinstance(result, TurboResult):
        raise SpeedRunError("turbo's loop ended without a result")
    return result, list(final.get("ledger") or [])


async def _commit(task: RunnerTask, message: str) -> str | None:
    """Commit the runner's work; nothing new to commit but a branch already ahead of the base means an earlier
    attempt committed it and died before its result was saved (a resume re-runs it): that commit is its work."""
    commit = await worktrees.commit_all(task.worktree, message)
    if commit is None:
        head = (await worktrees.inspect_repo(task.worktree.path)).head
        commit = head if head != task.base else None
    return commit


def _read_if_file(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    return text if text.strip() else None


def _write_plan(root: Path, rel: str, text: str, home: Path) -> None:
    """Write the plan inside the worktree through the safe writer; its backups stay out of the worktree."""
    writer = SafeWriter(root, backup_dir=home / "backups" / "plans")
    written = writer.write(GeneratedFile(path=rel, content=text if text.endswith("\n") else text + "\n"))
    if isinstance(written, FileError):
        raise SpeedRunError(f"could not write the plan {rel}: {written.error}")


def _summary(plan: str) -> str:
    lines = [ln.strip() for ln in plan.splitlines() if ln.strip()][:SUMMARY_LINES]
    text = " / ".join(lines)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def _count_lines(root: Path, files: list[str]) -> int:
    """Lines of the changed files that still exist (deleted and oversized files count nothing)."""
    total = 0
    for rel in files:
        path = root / rel
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_COUNTED_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        total += data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return total
