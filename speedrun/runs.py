"""Durable runs: every run is a LangGraph thread in a SQLite checkpointer; this service starts, watches and resumes them."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from speedrun.config import RunContext, Settings
from speedrun.errors import InputError, RunNotFoundError, SpeedRunError

RunState = Literal["running", "passed", "failed", "stopped", "done", "needs_input", "interrupted", "cancelled",
                   "error"]
PROGRESS_KEEP = 30


class RunStatus(BaseModel):
    """What a caller sees about a run: compact, no file contents."""

    run_id: str
    workflow: str
    status: RunState = Field(description="running, passed, failed, stopped, done (judge), needs_input (the caller "
                                         "must act), "
                                         "interrupted (the process died: resume it), cancelled or error.")
    created_at: str
    output_dir: str | None = None
    progress: list[str] = Field(default_factory=list, description="Latest progress lines, oldest first.")
    result: dict[str, Any] | None = Field(None, description="The final result when the run is done.")
    needs: list[dict[str, Any]] | None = Field(None, description="Open interrupt payloads (needs_input).")
    error: str | None = None
    next: str | None = Field(None, description="What to do next, in words.")


@dataclass
class _Live:
    task: asyncio.Task
    progress: list[str] = field(default_factory=list)
    listeners: list[Callable[[str], Any]] = field(default_factory=list)


def _graph_builders() -> dict[str, Any]:
    from speedrun.graphs import judge, turbo

    return {"turbo": turbo.builder, "judge": judge.builder}


def _answer_checks() -> dict[str, Callable[[Any], Any]]:
    """Validators of the caller's resume answer, by the `kind` of the interrupt payload."""
    from speedrun.nodes.surgical_fix import parse_resume

    return {"fix_needed": parse_resume}


def process_tag(pid: int | None = None) -> str | None:
    """'pid:start-time' of a process (None if it is gone or a zombie), so a recycled pid is not its owner."""
    pid = pid or os.getpid()
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (macOS): the pid alone
        return str(pid) if _pid_exists(pid) else None
    fields = stat[stat.rfind(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else f"{pid}:{fields[19]}"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def owner_alive(tag: str | None) -> bool:
    """True while the process that tagged a run still runs; this process never counts (its tasks say)."""
    if not tag:
        return False
    pid = int(tag.split(":")[0])
    return pid != os.getpid() and process_tag(pid) == tag


def new_run_id(workflow: str) -> str:
    """Readable, sortable, unique: turbo-20261123-223000-3f9a."""
    return f"{workflow}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class RunManager:
    """Owns the checkpointer and the in-process tasks of runs. Use `async with RunManager.open(settings)`."""

    def __init__(self, settings: Settings, saver: Any):
        self.settings = settings
        self.saver = saver
        self.graphs = {name: b.compile(checkpointer=saver) for name, b in _graph_builders().items()}
        self.live: dict[str, _Live] = {}

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator["RunManager"]:
        """Open (creating if needed) the run database under SPEEDRUN_HOME."""
        import aiosqlite
        from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        from speedrun.state import checkpoint_types

        try:
            settings.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create the state directory {settings.home} ({exc}); set SPEEDRUN_HOME "
                             "to a writable directory.") from None
        serde = JsonPlusSerializer(allowed_msgpack_modules=checkpoint_types())
        async with aiosqlite.connect(str(settings.home / "runs.sqlite")) as conn:
            saver = AsyncSqliteSaver(conn, serde=serde)
            await saver.setup()
            await saver.conn.execute(
                "CREATE TABLE IF NOT EXISTS speedrun_runs (run_id TEXT PRIMARY KEY, workflow TEXT, created_at TEXT, "
                "output_dir TEXT, state TEXT, error TEXT, owner TEXT)")
            async with saver.conn.execute("PRAGMA table_info(speedrun_runs)") as cur:
                if "owner" not in {row[1] for row in await cur.fetchall()}:  # a database from before `owner`
                    await saver.conn.execute("ALTER TABLE speedrun_runs ADD COLUMN owner TEXT")
            await saver.conn.commit()
            manager = cls(settings, saver)
            try:
                yield manager
            finally:
                for live in manager.live.values():
                    live.task.cancel()
                await asyncio.gather(*(live.task for live in manager.live.values()), return_exceptions=True)

    # --- index -------------------------------------------------------------------------------------
    async def _row(self, run_id: str) -> tuple[str, str, str | None, str, str | None]:
        async with self.saver.conn.execute(
                "SELECT workflow, created_at, output_dir, state, error FROM speedrun_runs WHERE run_id = ?",
                (run_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            raise RunNotFoundError(f"no run {run_id!r}; list runs with `speedrun runs` or the list_runs tool.")
        return row

    async def _mark(self, run_id: str, state: str, error: str | None = None) -> None:
        owner = process_tag() if state == "running" else None
        await self.saver.conn.execute("UPDATE speedrun_runs SET state = ?, error = ?, owner = ? WHERE run_id = ?",
                                      (state, error, owner, run_id))
        await self.saver.conn.commit()

    async def _driven_elsewhere(self, run_id: str) -> bool:
        """True when another live process (a CLI, another MCP server) is driving this run right now."""
        async with self.saver.conn.execute("SELECT state, owner FROM speedrun_runs WHERE run_id = ?",
                                           (run_id,)) as cur:
            row = await cur.fetchone()
        return bool(row) and row[0] == "running" and owner_alive(row[1])

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self, workflow: str, inputs: dict[str, Any], *, run_id: str | None = None) -> str:
        """Start a run in the background and return its id at once."""
        if workflow not in self.graphs:
            raise InputError(f"unknown workflow {workflow!r}; expected one of {', '.join(self.graphs)}.")
        run_id = run_id or new_run_id(workflow)
        await self.saver.conn.execute(
            "INSERT INTO speedrun_runs (run_id, workflow, created_at, output_dir, state, owner) "
            "VALUES (?, ?, ?, ?, 'running', ?)",
            (run_id, workflow, datetime.now(timezone.utc).isoformat(timespec="seconds"), inputs.get("output_dir"),
             process_tag()))
        await self.saver.conn.commit()
        self._launch(run_id, workflow, inputs)
        return run_id

    async def resume(self, run_id: str, resume: Any = None) -> None:
        """Continue a run: after a crash (resume=None) or an interrupt (resume = the caller's answer)."""
        from langgraph.types import Command

        workflow, _, _, _, _ = await self._row(run_id)
        if run_id in self.live and not self.live[run_id].task.done():
            raise InputError(f"run {run_id} is still running; wait for it or cancel it first.")
        status = await self.status(run_id)
        if status.status == "running":  # driven by another process: two drivers would repeat its LLM calls
            raise InputError(f"run {run_id} is running in another speedrun process; wait for it, or stop that "
                             "process first (Ctrl-C) and resume then.")
        if status.status in ("passed", "failed", "stopped", "done"):
            raise InputError(f"run {run_id} already finished ({status.status}); start a new run instead.")
        if status.status == "needs_input" and resume is None:
            raise InputError(f"run {run_id} is waiting for the caller: resume it with an action "
                             "('retest', 'stop' or edits).")
        if status.status != "needs_input" and resume is not None:
            raise InputError(f"run {run_id} is not waiting for input (it is {status.status}); resume it without "
                             "an action.")
        for need in status.needs or []:
            # Reject a bad answer now, while the caller waits; in the graph it would fail the run after we returned.
            check = _answer_checks().get(need.get("kind") if isinstance(need, dict) else None)
            if check is not None:
                check(resume)
        await self._mark(run_id, "running")
        self._launch(run_id, workflow, Command(resume=resume) if resume is not None else None)

    async def cancel(self, run_id: str) -> RunStatus:
        """Stop a running run; its checkpoints stay, so it can still be resumed later."""
        await self._row(run_id)
        live = self.live.get(run_id)
        running_here = live is not None and not live.task.done()
        if not running_here and await self._driven_elsewhere(run_id):
            raise InputError(f"run {run_id} is running in another speedrun process; stop it there (Ctrl-C keeps "
                             "it resumable).")
        if running_here:
            live.task.cancel()
            await asyncio.gather(live.task, return_exceptions=True)
        await self._mark(run_id, "cancelled")
        return await self.status(run_id)

    def _launch(self, run_id: str, workflow: str, payload: Any) -> None:
        live = self.live.get(run_id) or _Live(task=None)  # type: ignore[arg-type]
        self.live[run_id] = live
        live.task = asyncio.create_task(self._drive(run_id, workflow, payload, live), name=f"speedrun:{run_id}")

    async def _drive(self, run_id: str, workflow: str, payload: Any, live: _Live) -> None:
        config = {"configurable": {"thread_id": run_id}, "recursion_limit": 200}
        try:
            async for _ns, mode, chunk in self.graphs[workflow].astream(
                    payload, config, context=RunContext(self.settings), stream_mode=["updates", "custom"],
                    subgraphs=True, durability="sync"):
                line = _progress_line(mode, chunk)
                if line:
                    live.progress = (live.progress + [line])[-PROGRESS_KEEP:]
                    for listener in list(live.listeners):
                        try:
                            await _maybe_await(listener(line))
                        except Exception:  # a watcher that went away (closed client) must not end the run
                            live.listeners.remove(listener)
            await self._mark(run_id, "done")
        except asyncio.CancelledError:
            raise
        except SpeedRunError as exc:
            await self._mark(run_id, "error", self.settings.redact(str(exc)))
        except Exception as exc:  # keep the server alive; the message is shown to the caller
            await self._mark(run_id, "error", self.settings.redact(f"{type(exc).__name__}: {exc}"))

    # --- observation ---------------------------------------------------------------------------------
    async def wait(self, run_id: str, wait_seconds: float, on_progress: Callable[[str], Any] | None = None) -> RunStatus:
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
        """The run's status from the live task or, for past processes, from its checkpoints."""
        workflow, created, output_dir, state, error = await self._row(run_id)
        live = self.live.get(run_id)
        status = RunStatus(run_id=run_id, workflow=workflow, created_at=created, output_dir=output_dir,
                           status="running", progress=list(live.progress) if live else [])
        if live and not live.task.done():
            status.next = f"poll run_status('{run_id}') or wait; cancel_run to stop it."
            return status
        snapshot = await self.graphs[workflow].aget_state({"configurable": {"thread_id": run_id}})
        values = snapshot.values or {}
        result = values.get("result") if isinstance(values, dict) else getattr(values, "result", None)
        if result is not None:
            status.result = result.model_dump(mode="json") if hasattr(result, "model_dump") else dict(result)
            status.result["run_id"] = run_id
            status.status = status.result.get("status", "done")  # the judge has a verdict, not pass/fail
        elif snapshot.interrupts:
            status.status = "needs_input"
            status.needs = [i.value for i in snapshot.interrupts]
            status.error = error if state == "error" else None  # e.g. why the last answer was rejected
            status.next = (f"fix the files, then resume_run('{run_id}', 'retest'); or resume_run with "
                           "action 'edits' and edits, or 'stop'.")
        elif state == "cancelled":
            status.status = "cancelled"
            status.next = f"resume_run('{run_id}', 'continue') picks it up where it stopped."
        elif state == "error":
            status.status, status.error = "error", error
            status.next = f"fix the cause, then resume_run('{run_id}', 'continue') retries from the failed step."
        elif await self._driven_elsewhere(run_id):
            status.next = "another speedrun process is running it; poll run_status or watch that process."
        else:
            status.status = "interrupted"
            status.next = f"the process running it stopped; resume_run('{run_id}', 'continue') picks it up."
        return status

    async def list(self, limit: int = 50) -> list[RunStatus]:
        """Recent runs, newest first."""
        async with self.saver.conn.execute(
                "SELECT run_id FROM speedrun_runs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)) as cur:
            ids = [r[0] for r in await cur.fetchall()]
        return [await self.status(i) for i in ids]

    async def metrics_for(self, output_dir: str) -> dict[str, int] | None:
        """Speed-run metrics of the newest finished turbo run that wrote `output_dir`, for the judge."""
        async with self.saver.conn.execute(
                "SELECT run_id FROM speedrun_runs WHERE workflow = 'turbo' AND output_dir = ? "
                "ORDER BY created_at DESC, rowid DESC", (output_dir,)) as cur:
            ids = [r[0] for r in await cur.fetchall()]
        for run_id in ids:
            result = (await self.status(run_id)).result
            if result:
                ledger = result.get("ledger", {}).values()
                return {"llm_calls": sum(u["calls"] for u in ledger), "fix_cycles": len(result.get("cycles", [])),
                        "generation_ms": sum(u["duration_ms"] for u in ledger)}
        return None


def _progress_line(mode: str, chunk: Any) -> str | None:
    if mode == "custom" and isinstance(chunk, dict) and chunk.get("message"):
        return f"{chunk.get('step', '')}: {chunk['message']}".strip(": ")
    return None


async def _maybe_await(value: Any) -> None:
    if asyncio.iscoroutine(value):
        await value


