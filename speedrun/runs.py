"""Durable runs, each a LangGraph thread in a checkpointer (SQLite or PostgreSQL): start, watch and resume them."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from speedrun.config import RunContext, Settings
from speedrun.errors import InputError, RunNotFoundError, SpeedRunError, echo
from speedrun.procs import run_owner
from speedrun.runs_db import LEASE_REFRESH_SECONDS, Liveness, RunStore, SqliteStore, driven_elsewhere, migrate, now
from speedrun.state.records import CleanResult, NextAction, RunRow, RunStatus, one_line
from speedrun.state.runs import META_OUTPUT_DIR, META_WORKFLOW, ResumeAnswer, RunMeta

RunState = Literal["running", "passed", "failed", "stopped", "done", "needs_input", "interrupted", "cancelled", "error"]
FINISHED: tuple[RunState, ...] = ("passed", "failed", "stopped", "done")
PROGRESS_KEEP = 30  # lines kept in memory per live run
PROGRESS_SHOWN = 5  # lines a caller sees while it runs
PROGRESS_LINE = 160
ERROR_SHOWN = 600
#: The workflows whose runs fan out to parallel runners (showdown, any-percent): their status shows each runner.
PARALLEL = ("showdown", "any_percent")
RUNNER_STEP = 90  # characters of a runner's latest step in the status
SHOWN_RESULT_WARNINGS, RESULT_WARNING = 1, 100  # a parallel result's warnings in the compact form
SHOWN_SIMILAR = 3  # near-duplicate pairs in the compact form
WHY_SHOWN = 120  # characters of the judge's reason in the compact form
#: A parallel run's compact status stays within turbo's budget: 1 KB plus 120 bytes a runner (a file, for turbo).
RESULT_BYTES_BASE, RESULT_BYTES_PER_RUNNER = 1024, 120

__all__ = ["FINISHED", "NextAction", "RunManager", "RunStatus", "new_run_id"]


@dataclass
class _Runners:
    """Each parallel runner's latest step, from the stream: run_runner's events name their runner; events of a
    runner's turbo subgraph are told apart by their namespace, the run_runner task that the tasks stream names."""

    steps: dict[str, str] = field(default_factory=dict)
    by_task: dict[str, str] = field(default_factory=dict)  # run_runner task id -> runner name

    def see(self, ns: tuple[str, ...], mode: str, chunk: Any) -> str | None:
        """Note what the event says of a runner; the progress line to publish for it (None: nothing to show)."""
        if mode == "tasks":
            if not ns and isinstance(chunk, dict) and chunk.get("name") == "run_runner" and "input" in chunk:
                name = _runner_name(chunk["input"])
                if name:
                    self.by_task[str(chunk.get("id"))] = name
            return None
        if mode != "custom" or not isinstance(chunk, dict) or not chunk.get("message"):
            return None
        message, step = str(chunk["message"]), str(chunk.get("step", ""))
        runner = chunk.get("runner")
        if isinstance(runner, str) and runner:
            phase = str(chunk.get("phase") or step)
            self.steps[runner] = one_line(f"{phase}: {message.removeprefix(f'{runner}: ')}", RUNNER_STEP)
            return f"{step}: {message}".strip(": ")
        task = ns[0].split(":", 1)[1] if ns and ":" in ns[0] else None
        runner = self.by_task.get(task or "")
        if runner is None:
            return _progress_line(mode, chunk)
        self.steps[runner] = one_line(f"{step}: {message}", RUNNER_STEP)  # a step of the runner's turbo loop
        return f"{runner}: {step}: {message}"


def _runner_name(task_input: Any) -> str | None:
    """The runner a run_runner task is for, from its input (a RunnerTask, or its dict form)."""
    worktree = task_input.get("worktree") if isinstance(task_input, dict) else getattr(task_input, "worktree", None)
    name = worktree.get("name") if isinstance(worktree, dict) else getattr(worktree, "name", None)
    return name if isinstance(name, str) else None


@dataclass
class _Live:
    task: asyncio.Task[None]
    meta: RunMeta  # known here before the run's first checkpoint records it
    progress: list[str] = field(default_factory=list)
    listeners: list[Callable[[str], Any]] = field(default_factory=list)
    runners: _Runners = field(default_factory=_Runners)


def _graph_builders() -> dict[str, Any]:
    from speedrun.graphs import any_percent, judge, showdown, turbo

    return {
        "turbo": turbo.builder,
        "judge": judge.builder,
        "showdown": showdown.builder,
        "any_percent": any_percent.builder,
    }


def new_run_id(workflow: str) -> str:
    """Readable, sortable, unique: turbo-20261123-223000-3f9a."""
    return f"{workflow}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class RunManager:
    """Owns the checkpointer and the in-process tasks of runs. Use `async with RunManager.open(settings)`."""

    def __init__(self, settings: Settings, saver: Any, store: RunStore | None = None):
        self.settings = settings
        self.saver = saver
        self.store: RunStore = store if store is not None else SqliteStore(saver.conn)
        self.graphs = {name: b.compile(checkpointer=saver, name=name) for name, b in _graph_builders().items()}
        self.live: dict[str, _Live] = {}

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[RunManager]:
        """Open (creating if needed) the run database: PostgreSQL at SPEEDRUN_DATABASE_URL when it is set, else
        SQLite under SPEEDRUN_HOME."""
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

        from speedrun.config import ensure_home
        from speedrun.state import checkpoint_types

        try:  # the home holds worktree journals and test-group records with either database
            await asyncio.to_thread(ensure_home, settings.home)  # 0700: checkpoints hold code and test output
        except OSError as exc:
            raise InputError(
                f"cannot create the state directory {settings.home} ({exc}); set SPEEDRUN_HOME to a writable directory."
            ) from None
        serde = JsonPlusSerializer(allowed_msgpack_modules=checkpoint_types())
        backend: AbstractAsyncContextManager[tuple[Any, RunStore]]
        if settings.database_url is not None:
            from speedrun.runs_pg import open_postgres

            backend = open_postgres(settings, serde)
        else:
            backend = _open_sqlite(settings, serde)
        async with backend as (saver, store):
            # Test process groups that a killed speed-run left behind die before any run is started or resumed.
            manager = cls(settings, saver, store)
            await manager.sweep()
            leases = asyncio.create_task(manager._renew_leases(), name="speedrun:leases")
            try:
                yield manager
            finally:
                leases.cancel()
                for live in manager.live.values():
                    live.task.cancel()
                await asyncio.gather(leases, *(live.task for live in manager.live.values()), return_exceptions=True)

    async def _renew_leases(self) -> None:
        """Renew the rows of the runs this process drives, so other hosts sharing the database see them driven."""
        while True:
            await asyncio.sleep(LEASE_REFRESH_SECONDS)
            run_ids, owner = self.live_run_ids(), run_owner()
            if run_ids and owner:
                try:
                    await self.store.renew(run_ids, owner)
                except Exception:  # a database blip must not end the runs; the next renewal retries
                    continue

    # --- index -------------------------------------------------------------------------------------
    async def _meta(self, run_id: str) -> RunMeta:
        """What the run is: from this process while it starts, else from its checkpoints' metadata."""
        live = self.live.get(run_id)
        if live is not None:
            return live.meta
        config = {"configurable": {"thread_id": run_id, "checkpoint_ns": ""}}
        # Its input checkpoint (step -1) is the smallest to load; every checkpoint carries the same metadata.
        for query in ({"step": -1}, None):
            async with aclosing(self.saver.alist(config, filter=query, limit=1)) as found:
                async for tup in found:
                    meta = RunMeta.from_metadata(tup.metadata)
                    if meta is not None:
                        return meta
        raise RunNotFoundError(f"no run {echo(run_id)}; list runs with `speedrun runs` or the list_runs tool.")

    async def _liveness(self, run_id: str) -> Liveness:
        return await self.store.get(run_id) or Liveness(state="interrupted")

    async def _mark(self, run_id: str, state: str, error: str | None = None) -> None:
        owner = run_owner() if state == "running" else None
        await self.store.set(run_id, Liveness(state=state, owner=owner, error=error))

    async def _driven_elsewhere(self, run_id: str) -> bool:
        """True when another live process (a CLI, another MCP server, on any host) is driving this run right now."""
        return driven_elsewhere(await self.store.get(run_id))

    async def _started(self, limit: int | None, **meta: str) -> list[tuple[str, RunMeta]]:
        """(run id, what it is) of the newest runs whose metadata matches `meta`, newest first."""
        found: list[tuple[str, RunMeta]] = []
        # One input checkpoint (step -1) per run; checkpoint ids are time-ordered, so newest come first.
        # The saver holds its lock while a listing is open: close it as soon as enough are found.
        async with aclosing(self.saver.alist(None, filter={"step": -1, **meta})) as listing:
            async for tup in listing:
                run = RunMeta.from_metadata(tup.metadata)
                if run is not None and tup.config["configurable"].get("checkpoint_ns", "") == "":
                    found.append((tup.config["configurable"]["thread_id"], run))
                if limit is not None and len(found) >= limit:
                    break
        return found

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self, workflow: str, inputs: dict[str, Any], *, run_id: str | None = None) -> str:
        """Start a run in the background and return its id at once."""
        if workflow not in self.graphs:
            raise InputError(f"unknown workflow {workflow!r}; expected one of {', '.join(self.graphs)}.")
        run_id = run_id or new_run_id(workflow)
        # A parallel run's directory is its repo: list_runs shows where each run works.
        where = inputs.get("output_dir") or (inputs.get("repo") if workflow in PARALLEL else None)
        meta = RunMeta(workflow=workflow, created_at=now(), output_dir=where)
        await self._mark(run_id, "running")
        self._launch(run_id, meta, inputs)
        return run_id

    async def sweep(self) -> int:
        """Kill test process groups recorded by speed-run processes that have died (see sandbox.sweep_test_groups)."""
        from speedrun.sandbox import group_records_dir, sweep_test_groups

        return await asyncio.to_thread(sweep_test_groups, group_records_dir(self.settings.home))

    async def resume(self, run_id: str, answer: ResumeAnswer | None = None) -> None:
        """Continue a run: after a crash or a cancel (answer=None) or when it waits for the caller's answer."""
        from langgraph.types import Command

        meta = await self._meta(run_id)
        if run_id in self.live and not self.live[run_id].task.done():
            raise InputError(f"run {run_id} is still running; wait for it or cancel it first.")
        status = await self.status(run_id)
        if status.status == "running":  # driven by another process: two drivers would repeat its LLM calls
            raise InputError(
                f"run {run_id} is running in another speedrun process; wait for it, or stop that "
                "process first (Ctrl-C) and resume then."
            )
        if status.status in ("passed", "failed", "stopped", "done"):
            raise InputError(f"run {run_id} already finished ({status.status}); start a new run instead.")
        if status.status == "needs_input" and answer is None:
            raise InputError(
                f"run {run_id} is waiting for the caller: resume it with an action ('retest', 'stop' or edits)."
            )
        if status.status != "needs_input" and answer is not None:
            raise InputError(
                f"run {run_id} is not waiting for input (it is {status.status}); resume it without an action."
            )
        if answer is not None:
            # Reject a bad answer now, while the caller waits; in the graph it would fail the run after we returned.
            answer = ResumeAnswer.read(answer)
        await self.sweep()  # a test group left by a process that died must not run beside the resumed tests
        await self._mark(run_id, "running")
        self._launch(run_id, meta, Command(resume=answer) if answer is not None else None)

    async def cancel(self, run_id: str) -> RunStatus:
        """Stop a running run; its checkpoints stay, so it can still be resumed later.

        A run that already ended keeps its record: cancelling it is refused with its status (and error).
        """
        await self._meta(run_id)
        live = self.live.get(run_id)
        if live is not None and not live.task.done():
            live.task.cancel()
            await asyncio.gather(live.task, return_exceptions=True)
            await self._mark(run_id, "cancelled")
            return await self.status(run_id)
        if await self._driven_elsewhere(run_id):
            raise InputError(
                f"run {run_id} is running in another speedrun process; stop it there (Ctrl-C keeps it resumable)."
            )
        status = await self.status(run_id)
        if status.status in FINISHED:
            raise InputError(f"run {run_id} already finished ({status.status}); there is nothing to cancel.")
        if status.status == "error":
            raise InputError(f"run {run_id} already ended with an error, kept as it was: {status.error}")
        if status.status == "needs_input":
            raise InputError(
                f"run {run_id} is not running: it waits for your fix. To end it, resume it with action 'stop'."
            )
        if status.status == "interrupted":
            await self._mark(run_id, "cancelled")
            return await self.status(run_id)
        return status  # already cancelled

    def _launch(self, run_id: str, meta: RunMeta, payload: Any) -> None:
        live = self.live.get(run_id) or _Live(task=None, meta=meta)  # type: ignore[arg-type]
        self.live[run_id] = live
        live.task = asyncio.create_task(self._drive(run_id, payload, live), name=f"speedrun:{run_id}")

    async def _drive(self, run_id: str, payload: Any, live: _Live) -> None:
        from speedrun.llm import report_waits

        # The saver records the config's metadata on every checkpoint: that is where the run's facts live.
        config = {"configurable": {"thread_id": run_id}, "metadata": live.meta.as_metadata(), "recursion_limit": 200}
        # The tasks stream names each run_runner task's runner, so its turbo subgraph's steps can be shown per runner.
        modes = ["updates", "custom", "tasks"] if live.meta.workflow in PARALLEL else ["updates", "custom"]

        async def publish(line: str) -> None:
            live.progress = (live.progress + [line])[-PROGRESS_KEEP:]
            for listener in list(live.listeners):
                try:
                    await _maybe_await(listener(line))
                except Exception:  # a watcher that went away (closed client) must not end the run
                    if listener in live.listeners:
                        live.listeners.remove(listener)

        try:
            # Rate-budget waits of this run's model calls show up as progress ("waiting 12 s for ... tokens/min").
            with report_waits(lambda message: publish(f"waiting: {message}")):
                async for ns, mode, chunk in self.graphs[live.meta.workflow].astream(
                    payload,
                    config,
                    context=RunContext(self.settings),
                    stream_mode=modes,
                    subgraphs=True,
                    durability="sync",
                ):
                    line = live.runners.see(tuple(ns), mode, chunk)
                    if line:
                        await publish(line)
            await self._mark(run_id, "done")
        except asyncio.CancelledError:
            raise
        except SpeedRunError as exc:
            await self._mark(run_id, "error", self.settings.redact(str(exc)))
        except Exception as exc:  # keep the server alive; the message is shown to the caller
            await self._mark(run_id, "error", self.settings.redact(f"{type(exc).__name__}: {exc}"))

    # --- observation ---------------------------------------------------------------------------------
    async def wait(
        self, run_id: str, wait_seconds: float, on_progress: Callable[[str], Any] | None = None
    ) -> RunStatus:
        """Wait up to `wait_seconds` for the run to finish (or need input), then report its status."""
        live = self.live.get(run_id)
        if live and not live.task.done():
            if on_progress:
                live.listeners.append(on_progress)
            try:
                await asyncio.wait({live.task}, timeout=max(0.0, wait_seconds))
            finally:
                if on_progress in live.listeners:
                    live.listeners.remove(on_progress)
        return await self.status(run_id)

    async def status(self, run_id: str) -> RunStatus:
        """The run's status from the live task or, for past processes, from its checkpoints. Compact: the full
        result is in `report_path` (turbo) or the worksheet files (judge), and in `full_result()`."""
        meta = await self._meta(run_id)
        liveness = await self._liveness(run_id)
        live = self.live.get(run_id)
        progress = [one_line(p, PROGRESS_LINE) for p in (live.progress if live else [])]
        status = RunStatus(
            run_id=run_id,
            workflow=meta.workflow,
            created_at=meta.created_at,
            output_dir=meta.output_dir,
            status="running",
            progress=progress[-PROGRESS_SHOWN:],
        )
        if live and not live.task.done():
            status.runners = dict(live.runners.steps)
            status.next = "wait for it (poll its status), or cancel it."
            status.next_actions = [
                _act("run_status", run_id, "poll until it ends"),
                _act("cancel_run", run_id, "stop it; it stays resumable"),
            ]
            return status
        status.progress = []  # over: the result says how it ended
        await self._ended(status, liveness)
        return status

    async def _ended(self, status: RunStatus, liveness: Liveness) -> None:
        """Fill in how a run that is not running in this process stands: its result, its question, or why not."""
        run_id, workflow, state, error = status.run_id, status.workflow, liveness.state, liveness.error
        snapshot = await self.graphs[workflow].aget_state({"configurable": {"thread_id": run_id}})
        result = _result_of(workflow, snapshot.values)
        if result is not None and workflow in PARALLEL:
            fill_parallel(status, result, snapshot.values)
        elif result is not None:
            summary = result.summary() if hasattr(result, "summary") else result
            verdict = getattr(summary, "status", "done")  # the judge has a verdict, not pass/fail
            status.status = next((f for f in FINISHED if f == verdict), "done")
            # Said once, at the top: its status, the full report's path; the directory is in the report and list_runs.
            status.report_path = getattr(result, "report_path", None) or getattr(result, "scorecard_path", None)
            status.result = summary.model_dump(
                mode="json", exclude={"status", "output_dir", "report_path", "scorecard_path"}
            )
            status.output_dir = None
        elif snapshot.interrupts:
            status.status = "needs_input"
            status.needs = [i.value for i in snapshot.interrupts]
            status.error = _clip(error) if state == "error" else None  # e.g. why the last answer was rejected
            status.next = "fix the files, then resume with action 'retest'; or send 'edits', or 'stop'."
            status.next_actions = [
                _act("resume_run", run_id, "after you fixed the files", action="retest"),
                _act("resume_run", run_id, "end the run", action="stop"),
            ]
        elif state == "cancelled":
            status.status = "cancelled"
            status.next = "continue it to pick it up where it stopped."
            status.next_actions = [_act("resume_run", run_id, "pick it up where it stopped", action="continue")]
        elif state == "error":
            status.status, status.error = "error", _clip(error)
            status.next = "fix the cause, then continue it: it retries from the failed step."
            status.next_actions = [_act("resume_run", run_id, "retry from the failed step", action="continue")]
        elif await self._driven_elsewhere(run_id):
            status.next = "another speedrun process is running it; poll its status or watch that process."
            status.next_actions = [_act("run_status", run_id, "poll until it ends")]
        else:
            status.status = "interrupted"
            status.next = "the process running it stopped; continue it to pick it up."
            status.next_actions = [_act("resume_run", run_id, "pick it up where it stopped", action="continue")]

    def runner_steps(self, run_id: str) -> dict[str, str]:
        """Each runner's latest step while a parallel run is live in this process (empty otherwise)."""
        live = self.live.get(run_id)
        return dict(live.runners.steps) if live else {}

    def live_run_ids(self) -> list[str]:
        """The runs this process is driving right now."""
        return [run_id for run_id, live in self.live.items() if not live.task.done()]

    async def clean(self) -> CleanResult:
        """Remove the worktrees and branches of parallel runs nobody drives, per journal: runs live here, and runs
        another live process drives (its journal may still name the dead process it resumed), are left alone."""
        from speedrun.worktrees import clean_report, journal_run_ids

        busy = set(self.live_run_ids())
        for run_id in await asyncio.to_thread(journal_run_ids, self.settings.home):
            if run_id not in busy and await self._driven_elsewhere(run_id):
                busy.add(run_id)
        return await clean_report(self.settings.home, live_run_ids=busy)

    async def full_result(self, run_id: str) -> Any:
        """The run's full result record (TurboResult, JudgeResult), or None while it has none."""
        workflow = (await self._meta(run_id)).workflow
        snapshot = await self.graphs[workflow].aget_state({"configurable": {"thread_id": run_id}})
        return _result_of(workflow, snapshot.values)

    async def list(self, limit: int = 50) -> list[RunRow]:
        """Recent runs, newest first."""
        # Runs this process started that have no checkpoint yet are the newest of all.
        fresh = [(run_id, live.meta) for run_id, live in reversed(self.live.items())]
        found = [row for row in fresh if not await self._checkpointed(row[0])][:limit]
        found += await self._started(limit - len(found)) if len(found) < limit else []
        return [
            RunRow(
                run_id=run_id,
                workflow=meta.workflow,
                created_at=meta.created_at,
                output_dir=meta.output_dir,
                status=(await self.status(run_id)).status,
            )
            for run_id, meta in found
        ]

    async def _checkpointed(self, run_id: str) -> bool:
        config = {"configurable": {"thread_id": run_id, "checkpoint_ns": ""}}
        async with aclosing(self.saver.alist(config, filter={"step": -1}, limit=1)) as found:
            return [tup async for tup in found] != []

    async def with_metrics(self, inputs: Any) -> dict[str, Any]:
        """Judge inputs as a dict, each implementation without metrics given those of the turbo run that wrote it."""
        data: dict[str, Any] = inputs.model_dump()
        for impl in data["implementations"]:
            if impl.get("metrics") is None:
                impl["metrics"] = await self.metrics_for(impl["path"])
        return data

    async def metrics_for(self, output_dir: str) -> dict[str, int] | None:
        """Speed-run metrics of the newest finished turbo run that wrote `output_dir`, for the judge."""
        started = await self._started(None, **{META_WORKFLOW: "turbo", META_OUTPUT_DIR: output_dir})
        ids = [run_id for run_id, _ in started]
        for run_id in ids:
            result = await self.full_result(run_id)
            if result is not None:
                ledger = result.ledger.values()
                return {
                    "llm_calls": sum(u.calls for u in ledger),
                    "fix_cycles": len(result.cycles),
                    "generation_ms": sum(u.duration_ms for u in ledger),
                }
        return None


@asynccontextmanager
async def _open_sqlite(settings: Settings, serde: Any) -> AsyncIterator[tuple[Any, RunStore]]:
    """The SQLite checkpointer and liveness store in SPEEDRUN_HOME/runs.sqlite, set up and migrated."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with aiosqlite.connect(str(settings.home / "runs.sqlite")) as conn:
        saver = AsyncSqliteSaver(conn, serde=serde)
        await saver.setup()
        await migrate(saver.conn, str(settings.home / "runs.sqlite"))
        yield saver, SqliteStore(saver.conn)


def _act(tool: str, run_id: str, why: str, **args: str) -> NextAction:
    return NextAction(tool=tool, args={"run_id": run_id, **args}, why=why)  # type: ignore[arg-type]


def _clip(text: str | None) -> str | None:
    return text if text is None or len(text) <= ERROR_SHOWN else text[: ERROR_SHOWN - 1] + "…"


def _result_of(workflow: str, values: Any) -> Any:
    values = values or {}
    result = values.get("result") if isinstance(values, dict) else getattr(values, "result", None)
    if isinstance(result, dict):  # a checkpoint from before the record was on the allow-list
        from pydantic import BaseModel

        from speedrun.state.judge import JudgeResult
        from speedrun.state.parallel import ParallelResult
        from speedrun.state.turbo import TurboResult

        records: dict[str, type[BaseModel]] = {"turbo": TurboResult, "showdown": ParallelResult}
        result = records.get(workflow, ParallelResult if workflow in PARALLEL else JudgeResult).model_validate(result)
    return result


#: The compact runners table's columns; `scenario` only when a scenario command ran.
RUNNER_COLUMNS = ("name", "status", "tests", "scenario", "fix_cycles", "llm_calls", "lines", "wall_s")


def fill_parallel(status: RunStatus, result: Any, values: Any) -> None:
    """A finished showdown or any-percent: done, result.md as report_path, and the compact result in what is left
    of turbo's budget (1 KB plus 120 bytes a runner) once the status around it is counted."""
    status.status, status.output_dir, status.report_path = "done", None, result.result_path or None
    around = len(json.dumps(status.model_dump(mode="json")).encode()) + len(', "result": ')
    status.result = parallel_summary(
        result, values, RESULT_BYTES_BASE + RESULT_BYTES_PER_RUNNER * len(result.runners) - around
    )


def parallel_summary(result: Any, values: Any, budget: int) -> dict[str, Any]:
    """A showdown or any-percent result in `budget` bytes of JSON: the runners as a table (columns once, a row
    each), the winner and why, near-duplicate pairs, the flip rate.

    Long texts are cut, and with promote=ask it names the kept branches and how to pick one. result.md (the
    status's report_path) has everything, the worksheet's path included.
    """
    data: dict[str, Any] = result.model_dump(
        mode="json",
        include={"status", "winner", "winner_branch", "flip_rate", "caller_tokens_saved"},
        exclude_defaults=True,
    )
    if result.why:
        data["why"] = one_line(result.why, WHY_SHOWN)
    columns = [c for c in RUNNER_COLUMNS if c != "scenario" or any(r.scenario for r in result.runners)]
    data["runners"] = {
        "columns": columns,
        "rows": [[getattr(row, c) for c in columns] for row in result.runners],
    }
    if result.similar:
        data["similar"] = [f"{f.first}~{f.second} {f.ratio:.0%}" for f in result.similar[:SHOWN_SIMILAR]]
    if result.warnings:
        data["warnings"] = [one_line(w, RESULT_WARNING) for w in result.warnings[:SHOWN_RESULT_WARNINGS]]
    branches = _kept_branches(values) if result.status == "awaiting_choice" else []
    if branches:
        data["choose"] = _choice(branches)
    hidden = {"similar": len(result.similar) - SHOWN_SIMILAR, "warnings": len(result.warnings) - SHOWN_RESULT_WARNINGS}
    data = _fit(data, {k: max(0, n) for k, n in hidden.items()}, budget)
    if branches and len(json.dumps(data).encode()) > budget:
        data["choose"] = _choice(branches, short=True)
    return data


def _fit(data: dict[str, Any], hidden: dict[str, int], budget: int) -> dict[str, Any]:
    """Leave out the least needed parts (warnings, then near-duplicate pairs, then most of `why`) until the
    summary fits `budget` bytes of JSON; `omitted` counts what is left out (result.md has it all)."""

    def size() -> int:
        return len(json.dumps(data).encode())  # as a client shows it (tests/test_compact.py measures the same)

    for key in ("warnings", "similar"):
        if size() > budget and data.get(key):
            hidden[key] += len(data.pop(key))
    words = {"warnings": "warnings", "similar": "near-duplicate pairs"}
    left_out = [f"{n} {words[key]}" for key, n in hidden.items() if n > 0]
    if left_out:
        data["omitted"] = f"{', '.join(left_out)} (see result.md)"
    if size() > budget and data.get("why"):
        data["why"] = one_line(data["why"], WHY_SHOWN // 3)
    return data


def _choice(branches: list[str], *, short: bool = False) -> str:
    """How to pick among the branches promote=ask kept: each named whole so it can be copied, or (`short`) their
    shared prefix once, as prefix/{a, b}."""
    kept = ", ".join(branches)
    prefix = os.path.commonprefix(branches).rpartition("/")[0] if short and len(branches) > 1 else ""
    if prefix:
        kept = f"{prefix}/{{{', '.join(b[len(prefix) + 1 :] for b in branches)}}}"
    return f"merge the one you pick (`git merge <branch>`), `git branch -D` the rest; kept: {kept}"


def _kept_branches(values: Any) -> list[str]:
    """The survivors' branches, which promote=ask keeps for the caller to choose from."""
    fields = values if isinstance(values, dict) else vars(values)
    survivors = set(fields.get("survivors") or [])
    worktrees = fields.get("worktrees") or []
    names = [(w.get("name"), w.get("branch")) if isinstance(w, dict) else (w.name, w.branch) for w in worktrees]
    return [str(branch) for name, branch in names if name in survivors]


def _progress_line(mode: str, chunk: Any) -> str | None:
    if mode == "custom" and isinstance(chunk, dict) and chunk.get("message"):
        return f"{chunk.get('step', '')}: {chunk['message']}".strip(": ")
    return None


async def _maybe_await(value: Any) -> None:
    if asyncio.iscoroutine(value):
        await value
