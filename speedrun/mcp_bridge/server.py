"""The MCP server: thin tools over the gateway and graphs. Heavy libraries are imported inside tools."""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, ParamSpec, TypeVar, cast
from urllib.parse import unquote, urlparse

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPDeprecationWarning
from pydantic import Field

from speedrun.config import Settings, load_settings, resolve_output_dir
from speedrun.errors import ECHO_LIMIT, ConfigError, InputError, SpeedRunError, describe_validation, echo
from speedrun.mcp_bridge.progress import HEARTBEAT_S, Progress, elapsed_words
from speedrun.preflight import MAX_TEST_TIMEOUT_S
from speedrun.state import GenerateResult, StatusResult, Usage, WriteFilesResult
from speedrun.state.records import CleanResult, RunList, RunStatus

if TYPE_CHECKING:  # imported inside Runs.get: langgraph and sqlite stay out of start-up
    from mcp.types import CallToolResult, InputRequiredResult

    from speedrun.runs import RunManager

log = logging.getLogger("speedrun.mcp")
R = TypeVar("R")

INSTRUCTIONS = (
    "speed-run hands first-pass code generation to a fast hosted model and returns only metadata, never code. "
    "Write a contract (DATA CONTRACT, API CONTRACT, ALGORITHM, RULES) and call turbo: it generates, tests and "
    "repairs failures with small edits. Poll long runs with run_status. showdown builds one design 2-5 times in git "
    "worktrees and promotes the judged winner; any_percent builds 2-5 approaches; clean removes what dead parallel "
    "runs left. judge scores existing implementations. generate_and_write_files is the one-shot form; check_status "
    "diagnoses setup."
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
    """The client's MCP roots if it offers them (stdio only), else SPEEDRUN_ROOTS, else the server's working
    directory. Over HTTP the client may be another machine: its roots name its paths, not ours, and trusting them
    would let any client widen where the server writes."""
    if ctx is not None and app_of(ctx).client_roots:
        caps = ctx.session.client_capabilities
        if caps is not None and caps.roots is not None:
            try:
                with warnings.catch_warnings():  # roots are deprecated in the spec, but clients still send them
                    warnings.simplefilter("ignore", MCPDeprecationWarning)
                    pending = ctx.session.list_roots()
                listed = await pending
                roots = [p for p in (_uri_to_path(r.uri) for r in listed.roots) if p is not None]
                if roots:
                    return roots
            except Exception as exc:  # a client may declare roots and still fail to answer
                log.warning("client declared roots but roots/list failed: %s", exc)
    return settings.write_roots()


class Runs:
    """The server's RunManager, opened on first use (under a lock: concurrent first calls share one database
    connection) and closed by the server's lifespan on shutdown."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = asyncio.Lock()
        self._stack = AsyncExitStack()
        self._manager: RunManager | None = None

    async def get(self) -> RunManager:
        """The RunManager; heavy imports (langgraph, sqlite) happen here, not at start-up."""
        async with self._lock:
            if self._manager is None:
                import importlib

                # Importing langgraph takes seconds: in a thread, so other calls are answered meanwhile.
                runs = await asyncio.to_thread(importlib.import_module, "speedrun.runs")
                manager: RunManager = await self._stack.enter_async_context(runs.RunManager.open(self.settings))
                self._manager = manager
        return self._manager

    async def aclose(self) -> None:
        """Stop live runs (they stay resumable) and close the database."""
        async with self._lock:
            await self._stack.aclose()
            self._manager = None


WARM_MODULES = ("speedrun.llm", "openai", "langchain_openai")


WARM_DELAY_S = 0.3  # let the client's tools/list, which follows `initialized` at once, be answered first


def _warm_imports() -> None:
    """Import what the first model call needs, so its generation time is not spent importing."""
    import importlib
    import time

    time.sleep(WARM_DELAY_S)
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # a warm-up never breaks the server; the real call reports real problems
            log.debug("warm-up import of %s failed", name, exc_info=True)


async def _warm_after_initialized(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """Middleware: once the client confirms initialization, warm the gateway's imports in a background thread."""
    result = await call_next(ctx)
    if getattr(ctx, "method", None) == "notifications/initialized":
        threading.Thread(target=_warm_imports, name="speedrun-warm", daemon=True).start()
    return result


@dataclass
class App:
    """What every tool shares, owned by the server's lifespan: settings read once, why they could not be read
    (the server still starts, so check_status can explain), and the durable runs."""

    settings: Settings
    config_error: str | None
    runs: Runs
    heartbeat_s: float = HEARTBEAT_S
    client_roots: bool = True  # False over HTTP: only SPEEDRUN_ROOTS (or the working directory) count
    asked: set[str] = field(default_factory=set)  # runs whose winner this server already asked the user to pick


@asynccontextmanager
async def app_lifespan(
    server: MCPServer[App], *, settings: Settings, config_error: str | None = None, **options: Any
) -> AsyncIterator[App]:
    """Open the app state for the server's lifetime; on shutdown stop live runs (they stay resumable) and close
    the run database. `options` are App's knobs (heartbeat_s, client_roots)."""
    app = App(settings=settings, config_error=config_error, runs=Runs(settings), **options)
    try:
        yield app
    finally:
        await app.runs.aclose()


def app_of(ctx: Context) -> App:
    """The lifespan's App behind a tool call."""
    return cast(App, ctx.request_context.lifespan_context)


P = ParamSpec("P")


def tool_errors(*, needs_settings: bool = True) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """The one error translation of every tool: our errors become tool errors (redacted), anything else is logged
    and reported as a redacted internal error, and a tool that needs settings refuses while they are broken.

    The tool must take the Context as a keyword argument named `ctx` (the SDK passes it by that name).
    """

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def translated(*args: P.args, **kwargs: P.kwargs) -> R:
            app = app_of(cast(Context, kwargs["ctx"]))
            if needs_settings and app.config_error:
                raise ToolError(app.config_error)
            try:
                return await fn(*args, **kwargs)
            except ToolError:
                raise
            except SpeedRunError as exc:
                raise ToolError(app.settings.redact(str(exc))) from None
            except Exception as exc:  # nothing crashes the server, no secret leaves it
                log.exception("unexpected error in tool %s", fn.__name__)
                raise ToolError(
                    app.settings.redact(f"internal error ({type(exc).__name__}): {str(exc)[:500]}")
                ) from None

        return translated

    return decorate


def _progress_waits(progress: Progress) -> Any:
    """Report the gateway's rate-budget waits (> 2 s) as MCP progress notifications."""
    from speedrun.llm import report_waits

    return report_waits(progress.line)


def _generating(ctx: Context) -> Progress:
    """Progress for a one-shot generation: its own lines, and a heartbeat saying how long it has been generating."""
    import time

    started = time.monotonic()

    async def describe(latest: str) -> str:
        return f"generating ({elapsed_words(time.monotonic() - started)})" + (f"; last: {latest}" if latest else "")

    return _tracker(ctx, describe)


def _tracker(ctx: Context, describe: Callable[[str], Awaitable[str]]) -> Progress:
    """This call's progress notifications, with the server's heartbeat interval."""

    async def send(count: float, message: str) -> None:
        await ctx.report_progress(count, None, message)

    return Progress(send, describe, interval=app_of(ctx).heartbeat_s)


async def _wait_and_report(ctx: Context, run_id: str, wait_seconds: float) -> RunStatus:
    """Wait for a run (up to wait_seconds), forwarding its progress lines as MCP progress and a heartbeat (its
    latest step, how long it has run) whenever it is quiet; then its status, after asking the user to pick the
    winner when a promote=ask run awaits that choice and the client can ask."""
    from speedrun.mcp_bridge.choose import maybe_choose

    runs = await app_of(ctx).runs.get()

    async def describe(latest: str) -> str:
        status = await runs.status(run_id)
        step = latest or (status.progress[-1] if status.progress else "starting")
        return f"still running ({_since(status.created_at)}): {step}"

    progress = _tracker(ctx, describe)
    status = await progress.beat_while(runs.wait(run_id, wait_seconds, on_progress=progress.line))
    return await maybe_choose(ctx, runs, status)


def _since(created_at: str) -> str:
    """How long ago an ISO timestamp was, in words ('?' when it cannot be read)."""
    from datetime import UTC, datetime

    try:
        started = datetime.fromisoformat(created_at)
    except ValueError:
        return "?"
    started = started if started.tzinfo else started.replace(tzinfo=UTC)
    return elapsed_words((datetime.now(UTC) - started).total_seconds())


MaxTokens = Annotated[
    int | None,
    Field(
        description="Output token limit (a positive number); sized to the prompt if omitted.",
        json_schema_extra={"minimum": 1},
    ),
]
WaitSeconds = Annotated[float, Field(ge=0, le=600, description="How long to wait for the result before returning.")]


@tool_errors()
async def generate(
    prompt: Annotated[
        str, Field(description="What to generate; a contract prompt works best. At most 500,000 characters.")
    ],
    ctx: Context,
    system_prompt: Annotated[str | None, Field(description="Optional system prompt.")] = None,
    max_tokens: MaxTokens = None,
) -> GenerateResult:
    """Send a prompt to the fast generator model and return its raw text answer."""
    from speedrun.llm import complete
    from speedrun.preflight import check_max_tokens, check_prompt

    settings = app_of(ctx).settings
    check_prompt(prompt, system_prompt)
    check_max_tokens(max_tokens)  # here, in words, rather than as a schema error with a pydantic link
    messages = ([("system", system_prompt)] if system_prompt else []) + [("user", prompt)]
    progress = _generating(ctx)
    with _progress_waits(progress):
        reply = await progress.beat_while(complete(settings, "generator", messages, max_tokens=max_tokens))
    e = reply.entry
    return GenerateResult(
        response=reply.text,
        model=e.model,
        provider=e.provider,
        total_duration_ms=e.duration_ms,
        finish_reason=e.finish_reason,
        usage=reply.usage,
    )


@tool_errors()
async def generate_and_write_files(
    prompt: Annotated[
        str, Field(description="Contract prompt describing the files to write (at most 500,000 characters).")
    ],
    output_dir: Annotated[
        str,
        Field(description="Directory to write into, relative to the project root or absolute inside an allowed root."),
    ],
    ctx: Context,
    system_prompt: Annotated[str | None, Field(description="Optional extra system instructions.")] = None,
    context_files: Annotated[
        list[str] | None, Field(description="Existing files to show the model (paths relative to output_dir).")
    ] = None,
    max_tokens: MaxTokens = None,
    allow_paths: Annotated[
        list[str] | None,
        Field(
            description="Protected paths the reply may write anyway (e.g. .github/workflows/ci.yml), relative to "
            "output_dir."
        ),
    ] = None,
) -> WriteFilesResult:
    """Generate files with the fast model and write them to disk; returns metadata only, never the code."""
    from speedrun.loop.codegen import generate_and_write, read_context_files
    from speedrun.preflight import check_generate

    settings = app_of(ctx).settings
    roots = await allowed_roots(ctx, settings)
    out, root = resolve_output_dir(output_dir, roots)
    await check_generate(
        settings, out, root, max_tokens=max_tokens, allow_paths=allow_paths, prompt=prompt, system_prompt=system_prompt
    )
    context = await asyncio.to_thread(read_context_files, context_files or [], out, roots)
    progress = _generating(ctx)

    async def on_file(outcome: Any) -> None:
        await progress.line(f"{getattr(outcome, 'action', 'refused')}: {outcome.path}")

    with _progress_waits(progress):
        result = await progress.beat_while(
            generate_and_write(
                settings,
                prompt,
                out,
                system_prompt=system_prompt,
                context=context,
                max_tokens=max_tokens,
                on_file=on_file,
                allow_paths=allow_paths or (),
                confine_to=root,
            )
        )
    return _written(result, out)


def _written(result: Any, out: Path) -> WriteFilesResult:
    """A codegen result (loop.codegen's) as the tool's compact record: metadata, never the code."""
    files = result.report.files_written
    model = result.entries[-1] if result.entries else None
    return WriteFilesResult(
        status=result.status,
        output_dir=str(out),
        model=model.model if model else "",
        provider=model.provider if model else "",
        generation_time_ms=result.generation_time_ms,
        files_written=files,
        total_files=len(files),
        total_lines=sum(f.lines for f in files),
        errors=result.report.errors,
        warnings=result.warnings,
        usage=Usage.of(result.entries),
    )


@tool_errors(needs_settings=False)  # it reports broken settings instead of refusing
async def check_status(ctx: Context) -> StatusResult:
    """Check every role the default workflow needs (generator, planner, fixer): key set, endpoint answers,
    model listed. Also says how GENERATION_TIMEOUT was read and how tests are isolated. Never reveals a key."""
    from speedrun.preflight import check_setup

    app = app_of(ctx)
    return await check_setup(app.settings, app.config_error)


@tool_errors()
async def turbo(
    output_dir: Annotated[
        str, Field(description="Workspace to write into and run tests in (inside the allowed roots).")
    ],
    ctx: Context,
    task: Annotated[str | None, Field(description="The job in plain words; the planner writes a contract.")] = None,
    contract: Annotated[
        str | None,
        Field(description="DATA CONTRACT / API CONTRACT / ALGORITHM / RULES text (preferred over task)."),
    ] = None,
    test_command: Annotated[str, Field(description="Shell command that runs the tests in output_dir.")] = "pytest -q",
    max_fix_cycles: Annotated[int, Field(description="Surgical fix rounds before giving up.", ge=0, le=20)] = 3,
    context_files: Annotated[
        list[str] | None, Field(description="Existing files (relative to output_dir) to show the generator.")
    ] = None,
    roles: Annotated[
        dict[str, str] | None,
        Field(description="Per-run role overrides, e.g. {'fixer': 'client'} to fix failures yourself."),
    ] = None,
    wait_seconds: Annotated[
        float, Field(description="How long to wait for the result before returning a run_id to poll.", ge=0, le=600)
    ] = 45,
    allow_paths: Annotated[
        list[str] | None,
        Field(
            description="Protected paths the generator may write anyway (e.g. .github/workflows/ci.yml), relative "
            "to output_dir."
        ),
    ] = None,
    test_timeout_s: Annotated[
        float | None,
        Field(
            description="Wall-clock limit of one test run in seconds (default 300); on expiry the test process "
            "group is killed and the run reports the timeout.",
            gt=0,
            le=MAX_TEST_TIMEOUT_S,
        ),
    ] = None,
) -> RunStatus:
    """Run the turbo workflow: contract → generate → test → surgical fixes. Returns compact metadata (never
    code) and report_path, a JSON file with the full report."""
    from speedrun.preflight import check_turbo, turbo_input

    app = app_of(ctx)
    out, root = resolve_output_dir(output_dir, await allowed_roots(ctx, app.settings))
    inputs = turbo_input(
        task=task,
        contract=contract,
        output_dir=out,
        test_command=test_command,
        max_fix_cycles=max_fix_cycles,
        context_files=context_files,
        roles=roles,
        allow_paths=allow_paths,
        test_timeout_s=test_timeout_s,
    )
    await check_turbo(app.settings, inputs, root)
    run_id = await (await app.runs.get()).start("turbo", inputs.model_dump())
    return await _wait_and_report(ctx, run_id, wait_seconds)


@tool_errors()
async def judge(
    implementations: Annotated[
        list[dict[str, Any]],
        Field(
            description="2–5 (or 1) implementations: [{name, path, test_command?, metrics?: {llm_calls, "
            "fix_cycles, generation_ms}}]; paths inside the allowed roots; names distinct (ignoring case), "
            "default: the path's last folder."
        ),
    ],
    design: Annotated[str, Field(description="The design or plan the implementations follow.")],
    ctx: Context,
    mode: Annotated[
        Literal["showdown", "any_percent"],
        Field(description="showdown: same design; any_percent: different approaches."),
    ] = "showdown",
    wait_seconds: Annotated[float, Field(ge=0, le=600, description="How long to wait for the verdict.")] = 45,
) -> RunStatus:
    """Score implementations on 5 criteria from measured evidence and typed checklists; pick a winner."""
    from speedrun.preflight import check_judge, judge_input

    app = app_of(ctx)
    roots = await allowed_roots(ctx, app.settings)
    inputs = judge_input(
        implementations, design, mode, resolve=lambda value, name: resolve_output_dir(value, roots, name)[0]
    )
    await check_judge(app.settings, inputs)
    runs = await app.runs.get()
    run_id = await runs.start("judge", await runs.with_metrics(inputs))
    return await _wait_and_report(ctx, run_id, wait_seconds)


Design = Annotated[
    str, Field(description="The design: its text, or the path of a file holding it (relative to the repo).")
]
Feature = Annotated[str, Field(description="A slug naming the feature: branches <feature>/speed-run/..., docs/plans.")]
Repo = Annotated[
    str | None,
    Field(description="The git repository to work in (inside the allowed roots); default: the first allowed root."),
]
TestCommand = Annotated[str, Field(description="Shell command that runs the tests in each worktree.")]
ScenarioCommand = Annotated[
    str | None, Field(description="Optional second gate every survivor must pass, e.g. scenario tests.")
]
SetupCommand = Annotated[str | None, Field(description="Optional command run once per worktree first, e.g. 'uv sync'.")]
FixCycles = Annotated[int, Field(description="Surgical fix rounds per runner before giving up.", ge=0, le=20)]
Promote = Annotated[
    Literal["branch", "merge", "ask"],
    Field(
        description="branch: keep the winner's branch; merge: merge it into your current branch; ask: keep every "
        "survivor's branch and let you pick one to merge."
    ),
]
Roles = Annotated[
    dict[str, str] | None,
    Field(description="Per-role overrides, e.g. {'generator': 'groq'}; the fixer cannot be 'client' here."),
]
IncludeUncommitted = Annotated[
    bool, Field(description="Start the worktrees from a snapshot of your uncommitted changes instead of refusing.")
]
ParallelWait = Annotated[
    float,
    Field(description="How long to wait before returning a run_id to poll with run_status (0: at once).", ge=0, le=600),
]


async def _start_parallel(
    ctx: Context, workflow: str, repo: str | None, wait_seconds: float, **fields: Any
) -> RunStatus:
    """Resolve the repo inside the allowed roots, build and check the input (preflight), start the run, wait."""
    from speedrun.preflight import check_parallel, parallel_input

    app = app_of(ctx)
    path, _ = resolve_output_dir(repo or ".", await allowed_roots(ctx, app.settings), "repo")
    inputs = parallel_input(workflow, repo=path, **fields)
    await check_parallel(app.settings, inputs)
    run_id = await (await app.runs.get()).start(workflow, inputs.model_dump(mode="json"))
    return await _wait_and_report(ctx, run_id, wait_seconds)


@tool_errors()
async def showdown(
    design: Design,
    feature: Feature,
    ctx: Context,
    repo: Repo = None,
    runners: Annotated[
        int | Literal["auto"],
        Field(description="How many runners build the design (2-5), or 'auto': the planner rates its complexity."),
    ] = "auto",
    test_command: TestCommand = "pytest -q",
    scenario_command: ScenarioCommand = None,
    setup_command: SetupCommand = None,
    max_fix_cycles: FixCycles = 3,
    promote: Promote = "branch",
    roles: Roles = None,
    include_uncommitted: IncludeUncommitted = False,
    wait_seconds: ParallelWait = 0,
) -> RunStatus:
    """Build one design with 2-5 runners, each from its own plan in its own git worktree; gate on tests, judge the
    survivors, promote the winner and remove the rest. Long: poll run_status. Returns the runners table and winner."""
    return await _start_parallel(
        ctx,
        "showdown",
        repo,
        wait_seconds,
        design=design,
        feature=feature,
        runners=runners,
        test_command=test_command,
        scenario_command=scenario_command,
        setup_command=setup_command,
        max_fix_cycles=max_fix_cycles,
        promote=promote,
        roles=roles,
        include_uncommitted=include_uncommitted,
    )


@tool_errors()
async def any_percent(
    design: Design,
    feature: Feature,
    ctx: Context,
    repo: Repo = None,
    approaches: Annotated[
        list[dict[str, Any] | str] | None,
        Field(
            description="2-5 approaches: {slug, summary, pros?, cons?} or 'slug: summary'; omit to let the planner "
            "propose them along the design's main architectural axis."
        ),
    ] = None,
    test_command: TestCommand = "pytest -q",
    scenario_command: Annotated[
        str | None, Field(description="Scenario tests run against every variant alike (recommended).")
    ] = None,
    setup_command: SetupCommand = None,
    max_fix_cycles: FixCycles = 3,
    promote: Promote = "branch",
    roles: Roles = None,
    include_uncommitted: IncludeUncommitted = False,
    wait_seconds: ParallelWait = 0,
) -> RunStatus:
    """Build 2-5 different approaches to one problem in their own git worktrees, run the same scenario tests on
    each, judge the trade-offs and promote the winner. Long: poll run_status. Returns the runners table and winner."""
    return await _start_parallel(
        ctx,
        "any_percent",
        repo,
        wait_seconds,
        design=design,
        feature=feature,
        approaches=approaches,
        test_command=test_command,
        scenario_command=scenario_command,
        setup_command=setup_command,
        max_fix_cycles=max_fix_cycles,
        promote=promote,
        roles=roles,
        include_uncommitted=include_uncommitted,
    )


@tool_errors()  # broken settings may not name the right SPEEDRUN_HOME: refuse rather than clean elsewhere
async def clean(ctx: Context) -> CleanResult:
    """Remove the worktrees and branches that showdown / any_percent runs left behind when their process died or
    they were cancelled (from each run's journal). Runs live in this server are left alone; cleaned runs can no
    longer be resumed. Promoted branches are yours and are never touched."""
    result: CleanResult = await (await app_of(ctx).runs.get()).clean()
    return result


@tool_errors()
async def run_status(
    run_id: Annotated[str, Field(description="The run_id a workflow tool returned.")],
    ctx: Context,
    wait_seconds: Annotated[float, Field(description="Wait up to this long for the run to finish.", ge=0, le=600)] = 0,
) -> RunStatus:
    """Status of a run: running (with progress), needs_input, or its final compact result and report_path."""
    return await _wait_and_report(ctx, run_id, wait_seconds)


@tool_errors()
async def resume_run(
    run_id: Annotated[str, Field(description="The run to continue.")],
    action: Annotated[
        Literal["retest", "stop", "edits", "continue"],
        Field(
            description="retest: you fixed the files, run the tests again; stop: end the run; edits: apply "
            "`edits` then retest; continue: pick up a run whose process died or was cancelled."
        ),
    ],
    ctx: Context,
    edits: Annotated[
        list[dict[str, str]] | None,
        Field(description="For action 'edits': [{path, search, replace}], search copied exactly from the file."),
    ] = None,
    wait_seconds: Annotated[float, Field(ge=0, le=600, description="How long to wait for the result.")] = 45,
) -> RunStatus:
    """Continue a run that needs input or was interrupted."""
    from speedrun.preflight import resume_answer

    runs = await app_of(ctx).runs.get()
    await runs.resume(run_id, resume_answer(action, edits))
    return await _wait_and_report(ctx, run_id, wait_seconds)


@tool_errors()
async def cancel_run(run_id: Annotated[str, Field(description="The run to stop.")], ctx: Context) -> RunStatus:
    """Stop a running run. Its progress is kept; resume_run with 'continue' picks it up later. A run that
    already ended is left as it is, and the answer says so."""
    status: RunStatus = await (await app_of(ctx).runs.get()).cancel(run_id)
    return status


@tool_errors()
async def list_runs(
    ctx: Context,
    limit: Annotated[int, Field(ge=1, le=200, description="How many, newest first.")] = 10,
) -> RunList:
    """Recent runs with their status (no results; use run_status for one run's details)."""
    return RunList(runs=await (await app_of(ctx).runs.get()).list(limit))


#: Every tool, in the order clients list them: the seed's three first.
TOOLS: tuple[Callable[..., Awaitable[Any]], ...] = (
    generate,
    generate_and_write_files,
    check_status,
    turbo,
    showdown,
    any_percent,
    judge,
    run_status,
    resume_run,
    cancel_run,
    list_runs,
    clean,
)


class SpeedRunServer(MCPServer[App]):
    """The SDK's server, with arguments that do not match a tool's schema refused in the caller's words."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[App, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """Call a tool; a schema mismatch (a string for a number, a list for a string, null) becomes one short
        error naming each bad argument and its expected type, without pydantic's class names, links or input."""
        from pydantic import ValidationError

        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if not isinstance(exc.__cause__, ValidationError):
                raise
            problems = describe_validation(exc.__cause__, where=_argument, reword=_expected)
            raise ToolError(
                f"Error executing tool {name}: invalid arguments: {problems}. Fix the argument's type as the "
                "tool's input schema gives it (tools/list), or leave an optional one out."
            ) from None


def _argument(loc: tuple[str | int, ...]) -> str:
    """Where a bad argument is, as the caller wrote it: name[0].key, without pydantic's union branch tags."""
    shown = ""
    for part in loc:
        text = str(part)[:ECHO_LIMIT]
        if isinstance(part, int):
            shown += f"[{part}]"
        elif not (text in _TYPE_TAGS or text.startswith(("literal[", "function-"))):
            shown += f".{text}" if shown else text
    return shown


#: pydantic's tags for the branches of a union, which name a type, not an argument.
_TYPE_TAGS = {"int", "float", "str", "bool", "list", "dict", "none", "list[str]", "dict[str,any]", "dict[str,str]"}


def _expected(err: Mapping[str, Any]) -> str | None:
    """pydantic's wording for a wrong type, said plainly (its own message otherwise)."""
    kind = str(err.get("type", ""))
    plain = {
        "string_type": "must be a string",
        "int_type": "must be a whole number",
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "list_type": "must be a list",
        "dict_type": "must be an object (a JSON mapping)",
        "missing": "is required",
    }
    return plain.get(kind)


def create_server(
    settings: Settings | None = None, *, heartbeat_s: float = HEARTBEAT_S, client_roots: bool = True
) -> MCPServer[App]:
    """Build the speed-run MCP server. Settings are read once here (or passed in by a test); a settings error is
    kept, so the server starts and check_status explains it. `heartbeat_s`: seconds of quiet before a progress
    heartbeat; `client_roots`: whether the client's MCP roots may widen where it writes (not over HTTP)."""
    config_error: str | None = None
    if settings is None:
        try:
            settings = load_settings()
        except ConfigError as exc:
            config_error, settings = str(exc), Settings.model_construct()
    redactor = _Redactor(settings)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    server: MCPServer[App] = SpeedRunServer(
        "speed-run",
        instructions=INSTRUCTIONS,
        version=_version(),
        lifespan=functools.partial(
            app_lifespan,
            settings=settings,
            config_error=config_error,
            heartbeat_s=heartbeat_s,
            client_roots=client_roots,
        ),
        middleware=[_warm_after_initialized],
    )
    for tool in TOOLS:
        server.add_tool(tool)
    return server


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("speed-run")
    except Exception:
        return "0"


HEARTBEAT_ENV = "SPEEDRUN_MCP_HEARTBEAT"  # seconds of quiet before a heartbeat; tests shorten it


def main(http: bool = False, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the server on stdio (logs on stderr, as stdout carries the protocol), or over streamable HTTP.

    Raises InputError for a binding that would expose the tools (off loopback without SPEEDRUN_MCP_TOKEN) or a
    bad heartbeat setting, before anything is served."""
    import os

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="speed-run %(levelname)s %(message)s")
    for noisy in ("httpx", "httpx2", "openai"):  # one INFO line per model request drowns the useful ones
        logging.getLogger(noisy).setLevel(logging.WARNING)
    heartbeat = _heartbeat(os.environ.get(HEARTBEAT_ENV))
    harden()
    if not http:
        create_server(heartbeat_s=heartbeat).run()
        return
    from speedrun.mcp_bridge import http as transport

    token = os.environ.get(transport.TOKEN_ENV) or None
    transport.check_binding(host, port, token)  # before the server (and its settings) exist
    extra = os.environ.get(transport.HOSTS_ENV, "").split(",")
    transport.serve(create_server(heartbeat_s=heartbeat, client_roots=False), host, port, token, extra)


def _heartbeat(value: str | None) -> float:
    """SPEEDRUN_MCP_HEARTBEAT in seconds: above 0 and at most 10 (clients time out on longer silences)."""
    if value is None or not value.strip():
        return HEARTBEAT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 10:
        raise InputError(f"{HEARTBEAT_ENV}={echo(value, 40)} is not a number of seconds in (0, 10]; unset it for 5.")
    return seconds


def harden() -> None:
    """Make this process non-dumpable, so same-user test code cannot read its environment (the keys)."""
    from speedrun.procs import harden_process  # not speedrun.sandbox: its imports would slow the start

    harden_process()
