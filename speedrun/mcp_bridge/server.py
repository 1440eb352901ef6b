"""The MCP server: thin tools over the gateway and graphs. Heavy libraries are imported inside tools."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import unquote, urlparse

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from speedrun.config import SETUP_HINT, Settings, load_settings
from speedrun.errors import ConfigError, InputError, SpeedRunError, parse_input
from speedrun.state import GenerateResult, StatusResult, Usage, WriteFilesResult

log = logging.getLogger("speedrun.mcp")
R = TypeVar("R")

INSTRUCTIONS = (
    "speed-run hands first-pass code generation to a fast hosted model and returns only metadata, never code. "
    "Write a contract (DATA CONTRACT, API CONTRACT, ALGORITHM, RULES) and call turbo: it generates, tests and "
    "repairs failures with small edits. Poll long runs with run_status. To compare implementations, run several "
    "turbo calls at once and call judge. generate_and_write_files is the one-shot form; check_status diagnoses setup."
)


class _Redactor(logging.Filter):
    """Scrubs secret values from every log record the server emits."""

    def __init__(self, settings: Settings):
        super().__init__()
        self.settings = settings

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.settings.redact(record.getMessage()), ()
        if record.exc_info:
            record.exc_text = self.settings.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def _uri_to_path(uri: str) -> Path | None:
    parsed = urlparse(str(uri))
    return Path(unquote(parsed.path)).resolve() if parsed.scheme == "file" else None


async def allowed_roots(ctx: Context | None, settings: Settings) -> list[Path]:
    """The client's MCP roots if it offers them, else SPEEDRUN_ROOTS, else the server's working directory."""
    if ctx is not None:
        caps = ctx.session.client_capabilities
        if caps is not None and caps.roots is not None:
            try:
                listed = await ctx.session.list_roots()
                roots = [p for p in (_uri_to_path(r.uri) for r in listed.roots) if p is not None]
                if roots:
                    return roots
            except Exception as exc:  # a client may declare roots and still fail to answer
                log.warning("client declared roots but roots/list failed: %s", exc)
    return settings.allowed_roots() or [Path.cwd().resolve()]


def resolve_output_dir(output_dir: str, roots: list[Path]) -> Path:
    """A relative output_dir resolves against the first root; the result must lie inside some root."""
    if not output_dir or not output_dir.strip():
        raise InputError("output_dir is empty; pass a directory (relative to the project root, or absolute).")
    if "\x00" in output_dir:
        raise InputError("output_dir contains a NUL byte.")
    path = Path(output_dir).expanduser()
    path = (path if path.is_absolute() else roots[0] / path).resolve()
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise InputError(
            f"output_dir {output_dir!r} resolves to {path}, outside the allowed roots "
            f"({', '.join(map(str, roots))}). Pass a directory inside them, or allow it: add it to SPEEDRUN_ROOTS "
            "(os.pathsep-separated) in the MCP server's env, or open the client in that directory.")
    return path


def create_server(settings: Settings | None = None) -> MCPServer:
    """Build the speed-run MCP server. Settings are read once here (or passed in by a test)."""
    config_error: str | None = None
    if settings is None:
        try:
            settings = load_settings()
        except ConfigError as exc:
            config_error, settings = str(exc), Settings.model_construct()
    redactor = _Redactor(settings)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    redact = settings.redact

    async def guarded(call: Callable[[], Awaitable[R]]) -> R:
        """Translate our errors into tool errors; nothing crashes the server, no secret leaves it."""
        if config_error:
            raise ToolError(config_error)
        try:
            return await call()
        except SpeedRunError as exc:
            raise ToolError(redact(str(exc))) from None
        except ToolError:
            raise
        except Exception as exc:
            log.exception("unexpected error in a tool")
            raise ToolError(redact(f"internal error ({type(exc).__name__}): {exc}")) from None

    server = MCPServer("speed-run", instructions=INSTRUCTIONS, version=_version())

    @server.tool()
    async def generate(
        prompt: Annotated[str, Field(description="What to generate; a contract prompt works best.")],
        system_prompt: Annotated[str | None, Field(description="Optional system prompt.")] = None,
        max_tokens: Annotated[int | None, Field(description="Output token limit; sized to the prompt if omitted.",
                                                gt=0)] = None,
    ) -> GenerateResult:
        """Send a prompt to the fast generator model and return its raw text answer."""
        from speedrun.llm import complete

        async def run() -> GenerateResult:
            if not prompt.strip():
                raise InputError("prompt is empty.")
            messages = ([("system", system_prompt)] if system_prompt else []) + [("user", prompt)]
            reply = await complete(settings, "generator", messages, max_tokens=max_tokens)
            e = reply.entry
            return GenerateResult(response=reply.text, model=f"{e.provider}:{e.model}", total_duration_ms=e.duration_ms,
                                  finish_reason=e.finish_reason, usage=reply.usage)

        return await guarded(run)

    @server.tool()
    async def generate_and_write_files(
        prompt: Annotated[str, Field(description="Contract prompt describing the files to write.")],
        output_dir: Annotated[str, Field(description="Directory to write into, relative to the project root or "
                                                     "absolute inside an allowed root.")],
        ctx: Context,
        system_prompt: Annotated[str | None, Field(description="Optional extra system instructions.")] = None,
        context_files: Annotated[list[str] | None, Field(description="Existing files to show the model "
                                                                     "(paths relative to output_dir).")] = None,
        max_tokens: Annotated[int | None, Field(description="Output token limit; sized to the prompt if omitted.",
                                                gt=0)] = None,
    ) -> WriteFilesResult:
        """Generate files with the fast model and write them to disk; returns metadata only, never the code."""
        from speedrun.codegen import generate_and_write, read_context_files

        async def run() -> WriteFilesResult:
            settings.require("generator")  # fail fast with the setup hint before touching the disk
            roots = await allowed_roots(ctx, settings)
            out = resolve_output_dir(output_dir, roots)
            context = read_context_files(context_files or [], out, roots)
            count = 0

            async def progress(outcome: Any) -> None:
                nonlocal count
                count += 1
                await ctx.report_progress(count, None, f"{getattr(outcome, 'action', 'refused')}: {outcome.path}")

            result = await generate_and_write(settings, prompt, out, system_prompt=system_prompt, context=context,
                                              max_tokens=max_tokens, on_file=progress)
            files = result.report.files_written
            model = result.entries[-1] if result.entries else None
            return WriteFilesResult(
                status=result.status, output_dir=str(out),
                model=f"{model.provider}:{model.model}" if model else "", generation_time_ms=result.generation_time_ms,
                files_written=files, total_files=len(files), total_lines=sum(f.lines for f in files),
                errors=result.report.errors, usage=Usage.of(result.entries))

        return await guarded(run)

    @server.tool()
    async def check_status() -> StatusResult:
        """Check that an API key is set and the generator endpoint answers. Never reveals the key."""
        from speedrun.llm import list_models

        if config_error:
            return StatusResult(status="error", error=config_error, setup_hint=SETUP_HINT)
        try:
            spec = settings.role("generator").primary
        except ConfigError as exc:
            error = ("no model provider: CEREBRAS_API_KEY is not set and no local provider is configured"
                     if str(exc) == SETUP_HINT else redact(str(exc)))
            return StatusResult(status="error", url=settings.cerebras_url, model=settings.cerebras_model,
                                error=error, setup_hint=SETUP_HINT)
        try:
            models = await list_models(spec, settings)
        except SpeedRunError as exc:
            return StatusResult(status="error", url=spec.base_url, model=spec.model, error=redact(str(exc)),
                                setup_hint="Check the URL, the key and the network; the endpoint must answer GET /models.")
        warning = None if not models or spec.model in models else (
            f"model {spec.model!r} is not in the endpoint's model list; set CEREBRAS_MODEL (or SPEEDRUN_GENERATOR) "
            "to one of available_models.")
        return StatusResult(status="error" if warning else "ok", url=spec.base_url, model=spec.model,
                            available_models=models, error=warning)

    register_run_tools(server, settings, guarded)  # after the seed's three, so clients list those first
    return server


def register_run_tools(server: MCPServer, settings: Settings,
                       guarded: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]) -> None:
    """Tools that start and steer durable graph runs (turbo, status, resume, cancel, list)."""
    from contextlib import AsyncExitStack

    holder: dict[str, Any] = {}

    async def manager() -> Any:
        # Opened on first use so start-up stays light; lives as long as the server.
        if "manager" not in holder:
            from speedrun.runs import RunManager

            stack = AsyncExitStack()
            holder["manager"] = await stack.enter_async_context(RunManager.open(settings))
            holder["stack"] = stack
        return holder["manager"]

    async def wait_and_report(run_id: str, wait_seconds: float, ctx: Context | None) -> dict[str, Any]:
        runs = await manager()
        count = 0

        async def forward(line: str) -> None:
            nonlocal count
            count += 1
            if ctx is not None:
                await ctx.report_progress(count, None, line)

        status = await runs.wait(run_id, wait_seconds, on_progress=forward)
        return status.model_dump(mode="json", exclude_none=True)

    @server.tool()
    async def turbo(
        output_dir: Annotated[str, Field(description="Workspace to write into and run tests in (inside the "
                                                     "allowed roots).")],
        ctx: Context,
        task: Annotated[str | None, Field(description="The job in plain words; the planner writes a contract.")] = None,
        contract: Annotated[str | None, Field(description="DATA CONTRACT / API CONTRACT / ALGORITHM / RULES text "
                                                          "(preferred over task).")] = None,
        test_command: Annotated[str, Field(description="Shell command that runs the tests in output_dir.")] = "pytest -q",
        max_fix_cycles: Annotated[int, Field(description="Surgical fix rounds before giving up.", ge=0, le=20)] = 3,
        context_files: Annotated[list[str] | None, Field(description="Existing files (relative to output_dir) "
                                                                     "to show the generator.")] = None,
        roles: Annotated[dict[str, str] | None, Field(description="Per-run role overrides, e.g. "
                                                                  "{'fixer': 'client'} to fix failures yourself.")] = None,
        wait_seconds: Annotated[float, Field(description="How long to wait for the result before returning "
                                                         "a run_id to poll.", ge=0, le=600)] = 45,
    ) -> dict[str, Any]:
        """Run the turbo workflow: contract → generate → test → surgical fixes. Returns metadata, never code."""
        from speedrun.config import with_roles
        from speedrun.state.turbo import TurboInput

        async def run() -> dict[str, Any]:
            inputs = parse_input(TurboInput, {
                "task": task, "contract": contract, "output_dir": output_dir, "test_command": test_command,
                "max_fix_cycles": max_fix_cycles, "context_files": context_files or [], "roles": roles or {}})
            with_roles(settings, roles).require("generator", "fixer", *(() if contract else ("planner",)))
            out = resolve_output_dir(output_dir, await allowed_roots(ctx, settings))
            inputs.output_dir = str(out)
            runs = await manager()
            run_id = await runs.start("turbo", inputs.model_dump())
            return await wait_and_report(run_id, wait_seconds, ctx)

        return await guarded(run)

    @server.tool()
    async def judge(
        implementations: Annotated[list[dict[str, Any]], Field(
            description="2–5 (or 1) implementations: [{name, path, test_command?, metrics?: {llm_calls, "
                        "fix_cycles, generation_ms}}]; paths inside the allowed roots.")],
        design: Annotated[str, Field(description="The design or plan the implementations follow.")],
        ctx: Context,
        mode: Annotated[Literal["showdown", "any_percent"], Field(
            description="showdown: same design; any_percent: different approaches.")] = "showdown",
        wait_seconds: Annotated[float, Field(ge=0, le=600, description="How long to wait for the verdict.")] = 45,
    ) -> dict[str, Any]:
        """Score implementations on 5 criteria from measured evidence and typed checklists; pick a winner."""
        from speedrun.state.judging import JudgeInput

        async def run() -> dict[str, Any]:
            settings.require("reviewer", "judge")
            roots = await allowed_roots(ctx, settings)
            impls = []
            for i, impl in enumerate(implementations):
                if not isinstance(impl, dict) or not impl.get("path"):
                    raise InputError(f"implementations[{i}] needs at least a 'path' (and a 'name').")
                path = resolve_output_dir(str(impl["path"]), roots)
                metrics = impl.get("metrics") or await (await manager()).metrics_for(str(path))
                impls.append({**impl, "name": impl.get("name") or path.name, "path": str(path), "metrics": metrics})
            inputs = parse_input(JudgeInput, {"implementations": impls, "design": design, "mode": mode})
            runs = await manager()
            run_id = await runs.start("judge", inputs.model_dump())
            return await wait_and_report(run_id, wait_seconds, ctx)

        return await guarded(run)

    @server.tool()
    async def run_status(
        run_id: Annotated[str, Field(description="The run_id a workflow tool returned.")],
        ctx: Context,
        wait_seconds: Annotated[float, Field(description="Wait up to this long for the run to finish.",
                                             ge=0, le=600)] = 0,
    ) -> dict[str, Any]:
        """Status of a run: running (with progress), needs_input, or its final compact result."""
        return await guarded(lambda: wait_and_report(run_id, wait_seconds, ctx))

    @server.tool()
    async def resume_run(
        run_id: Annotated[str, Field(description="The run to continue.")],
        action: Annotated[Literal["retest", "stop", "edits", "continue"], Field(
            description="retest: you fixed the files, run the tests again; stop: end the run; edits: apply "
                        "`edits` then retest; continue: pick up a run whose process died or was cancelled.")],
        ctx: Context,
        edits: Annotated[list[dict[str, str]] | None, Field(
            description="For action 'edits': [{path, search, replace}], search copied exactly from the file.")] = None,
        wait_seconds: Annotated[float, Field(ge=0, le=600, description="How long to wait for the result.")] = 45,
    ) -> dict[str, Any]:
        """Continue a run that needs input or was interrupted."""

        async def run() -> dict[str, Any]:
            runs = await manager()
            answer = None if action == "continue" else {"action": action, "edits": edits or []}
            await runs.resume(run_id, answer)
            return await wait_and_report(run_id, wait_seconds, ctx)

        return await guarded(run)

    @server.tool()
    async def cancel_run(run_id: Annotated[str, Field(description="The run to stop.")]) -> dict[str, Any]:
        """Stop a running run. Its progress is kept; resume_run with 'continue' picks it up later."""

        async def run() -> dict[str, Any]:
            return (await (await manager()).cancel(run_id)).model_dump(mode="json", exclude_none=True)

        return await guarded(run)

    @server.tool()
    async def list_runs(limit: Annotated[int, Field(ge=1, le=200, description="How many, newest first.")] = 20
                        ) -> dict[str, Any]:
        """Recent runs with their status (no results; use run_status for one run's details)."""

        async def run() -> dict[str, Any]:
            runs = await (await manager()).list(limit)
            return {"runs": [{"run_id": r.run_id, "workflow": r.workflow, "status": r.status,
                              "created_at": r.created_at, "output_dir": r.output_dir} for r in runs]}

        return await guarded(run)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("speed-run")
    except Exception:
        return "0"


def main() -> None:
    """Run the server on stdio; logs go to stderr because stdout carries the protocol."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="speed-run %(levelname)s %(message)s")
    for noisy in ("httpx", "httpx2", "openai"):  # one INFO line per model request drowns the useful ones
        logging.getLogger(noisy).setLevel(logging.WARNING)
    create_server().run()
