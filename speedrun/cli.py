"""The `speedrun` command: parses arguments, calls the gateway or a graph, prints results. No workflow logic."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speedrun.config import Settings, load_settings
from speedrun.errors import InputError, SpeedRunError, echo
from speedrun.words import plural

if TYPE_CHECKING:
    import argparse

    from speedrun.cli_live import TokenMeter
    from speedrun.runs import RunManager
    from speedrun.state.judge import JudgeResult
    from speedrun.state.parallel import ParallelResult
    from speedrun.state.records import NextAction, RunStatus
    from speedrun.state.turbo import TurboResult

# Exit codes, one meaning each; the --help epilog and the README list them.
EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_NEEDS_INPUT, EXIT_RUNNING, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_CODES = f"""exit codes:
  {EXIT_PASSED}    passed (tests pass, a winner was picked, the command did what it says)
  {EXIT_FAILED}    failed (tests still fail, no winner, the run ended in an error)
  {EXIT_BAD_INPUT}    bad input or setup (a flag, a missing file, no API key, an unknown run id); nothing was run
  {EXIT_NEEDS_INPUT}    waiting for your fix (--client-fix): fix the files, then speedrun resume RUN_ID --action retest
  {EXIT_RUNNING}    still running (speedrun status only): poll again later
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C, or its process died or it was cancelled); the run stays resumable:
       speedrun resume RUN_ID"""

# The subcommands that run a workflow show the exit codes under their --help too (build_parser adds the formatter
# that keeps their line breaks: argparse is imported only there, so `speedrun mcp` starts without it).
RUN_KW: dict[str, Any] = {"epilog": EXIT_CODES}
#: The workflows `speedrun graph` draws.
GRAPHS = ("turbo", "judge", "showdown", "any_percent")

# TurboInput fields as the CLI user types them, for error messages.
TURBO_FLAGS = {
    "task": "--task",
    "contract": "--contract",
    "output_dir": "--out",
    "test_command": "--test-cmd",
    "max_fix_cycles": "--max-fix-cycles",
    "context_files": "--context",
    "allow_paths": "--allow-path",
    "test_timeout_s": "--test-timeout",
}
# Showdown / any-percent input fields as the CLI user types them, for error messages.
PARALLEL_FLAGS = {
    "design": "--design",
    "repo": "--repo",
    "feature": "--feature",
    "runners": "--runners",
    "approaches": "--approach",
    "test_command": "--test-cmd",
    "scenario_command": "--scenario-cmd",
    "setup_command": "--setup-cmd",
    "max_fix_cycles": "--max-fix-cycles",
    "promote": "--promote",
    "roles": "--role",
    "test_timeout_s": "--test-timeout",
}


def _print_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _table(rows: list[list[str]], header: list[str]) -> str:
    """Rows under a header, columns padded to their widest cell."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _read_prompt(args: argparse.Namespace) -> str:
    if args.prompt_file:
        path = Path(args.prompt_file)
        if not path.is_file():
            raise InputError(f"--prompt-file {echo(args.prompt_file)} does not exist.")
        return path.read_text(encoding="utf-8")
    if args.prompt == "-":
        return sys.stdin.read()
    if not args.prompt:
        raise InputError("give a PROMPT argument, '-' to read it from stdin, or --prompt-file FILE.")
    return str(args.prompt)


async def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    """Report whether every role of the default workflow is configured and its endpoint answers."""
    from speedrun.preflight import NO_PROVIDER, check_setup

    status = await check_setup(settings)
    if status.error and not status.roles:  # nothing is configured: one message, the how-to when there is one
        raise _SetupError(status.setup_hint if status.error == NO_PROVIDER else status.error)
    print(f"endpoint  {status.url}\nmodel     {status.model}")
    for role, model in status.roles.items():
        print(f"{role:9} {model}")
    print(f"models    {', '.join(status.available_models) if status.available_models else '(none listed)'}")
    if status.isolation:
        print(f"tests     {status.isolation}")
    if status.timeout_note:
        print(f"timeout   {status.timeout_note}")
    store_errors = [error for error in (await _check_runs(settings), await _check_budget(settings)) if error]
    if status.status != "ok":
        _print_err(
            f"error: {status.error}"
            + (f"\n{status.setup_hint}" if status.setup_hint and status.setup_hint not in (status.error or "") else "")
        )
    for error in store_errors:
        _print_err(f"error: {error}")
    if store_errors:  # a run store or budget that cannot be opened is bad setup: no run would start
        print("status    error")
        return EXIT_BAD_INPUT
    if status.status != "ok":
        return 1
    print("status    ok")
    return 0


async def _check_runs(settings: Settings) -> str | None:
    """Open the run store as every run does and print its line; the error text when it cannot be opened."""
    import sqlite3

    from speedrun.runs import RunManager

    if settings.database_url is not None:
        from speedrun.runs_pg import shown

        where = f"PostgreSQL at {shown(settings, settings.database_url.get_secret_value())}"
    else:
        where = f"SQLite at {settings.home / 'runs.sqlite'}"  # where runs._open_sqlite keeps it
    try:
        async with RunManager.open(settings):
            pass
    except SpeedRunError as exc:
        error: str | None = str(exc)
    except (sqlite3.Error, OSError) as exc:  # e.g. a runs.sqlite that is not a database
        error = f"cannot open the run database {where} ({type(exc).__name__}: {exc}); move that file away."
    else:
        error = None
    print(f"runs      {where}: {'error' if error else 'ok'}")
    return error


async def _check_budget(settings: Settings) -> str | None:
    """Reach the shared rate budget in Redis (when SPEEDRUN_REDIS_URL is set) and print its line; the error text
    when it cannot be used."""
    if settings.redis_url is None:
        print("budget    per process (set SPEEDRUN_REDIS_URL to share one across processes)")
        return None
    from speedrun.budget_redis import SharedBudget

    budget = SharedBudget(settings.redis_url.get_secret_value(), "speedrun check", "check", settings.redact)
    try:
        await budget.ping()
    except SpeedRunError as exc:
        error: str | None = str(exc)
    else:
        error = None
    print(f"budget    Redis at {budget.where[:200]}: {'error' if error else 'ok'}")
    return error


class _SetupError(SpeedRunError):
    """No role can be resolved at all (e.g. no key): one message, exit 2."""

    exit_code = 2


def _wait_lines() -> Any:
    """The gateway's rate-budget waits (> 2 s) as stderr lines."""
    from speedrun.llm import report_waits

    return report_waits(lambda message: _print_err(f"  waiting: {message}"))


def _root_for(out: Path) -> Path:
    """The root protected places are judged against: the working directory when --out lies inside it."""
    cwd = Path.cwd().resolve()
    return cwd if out == cwd or out.is_relative_to(cwd) else out


async def cmd_generate(settings: Settings, args: argparse.Namespace) -> int:
    """Generate files from a prompt into --out, printing each file as it lands."""
    from speedrun.loop.codegen import generate_and_write, read_context_files
    from speedrun.preflight import check_generate

    prompt = _read_prompt(args)
    out = Path(args.out).expanduser().resolve()
    await check_generate(
        settings,
        out,
        _root_for(out),
        max_tokens=args.max_tokens,
        allow_paths=args.allow_path,
        max_tokens_name="--max-tokens",
        prompt=prompt,
        system_prompt=args.system,
    )
    context = await asyncio.to_thread(read_context_files, args.context or [], Path.cwd(), [Path.cwd().resolve(), out])

    async def progress(outcome: Any) -> None:
        action = getattr(outcome, "action", None)
        if action:  # a refusal is said once, with its reason, in the summary below
            _print_err(f"  {action:9} {outcome.path}")

    _print_err(f"generating into {out} ...")
    with _wait_lines():
        result = await generate_and_write(
            settings,
            prompt,
            out,
            system_prompt=args.system,
            context=context,
            max_tokens=args.max_tokens,
            on_file=progress,
            allow_paths=args.allow_path or (),
            confine_to=_root_for(out),
        )
    _print_generated(result, out, as_json=args.json)
    return 0 if result.status == "ok" else 1


def _print_generated(result: Any, out: Path, *, as_json: bool) -> None:
    """What a generate pass wrote: JSON, or a table of files plus errors, warnings and a summary line."""
    from speedrun.state import Usage

    files = result.report.files_written
    usage = Usage.of(result.entries)
    warnings = result.warnings
    model = result.entries[-1] if result.entries else None
    if as_json:
        print(
            json.dumps(
                {
                    "status": result.status,
                    "output_dir": str(out),
                    "model": model.model if model else "",
                    "provider": model.provider if model else "",
                    "files_written": [f.model_dump() for f in files],
                    "errors": [e.model_dump() for e in result.report.errors],
                    "warnings": warnings,
                    "generation_time_ms": result.generation_time_ms,
                    "usage": usage.model_dump(),
                },
                indent=2,
            )
        )
    else:
        if files:
            print(
                _table(
                    [[f.path, str(f.lines), f.action, f.backup or ""] for f in files],
                    ["file", "lines", "action", "backup"],
                )
            )
        for err in result.report.errors:
            print(f"refused: {err.path}: {err.error}")
        for warning in warnings:
            print(f"warning: {warning}")
        print(
            f"\n{result.status}: {plural(len(files), 'file')}, {plural(sum(f.lines for f in files), 'line')} in "
            f"{result.generation_time_ms} ms; {usage.prompt_tokens} prompt + "
            f"{plural(usage.completion_tokens, 'completion token')}"
        )


async def _follow(
    runs: RunManager,
    run_id: str,
    meter: TokenMeter,
    before_summary: Callable[[RunStatus, Any], None] | None = None,
) -> int:
    """Show the run live until it ends (a runners table for showdown / any-percent), then the summary its
    workflow prints, ending with where it wrote and its run id; Ctrl-C cancels but keeps the run resumable."""
    from speedrun.cli_live import LiveView
    from speedrun.runs import PARALLEL

    first = await runs.status(run_id)
    parallel = first.workflow in PARALLEL
    # Parallel runs print their progress lines on stdout, turbo and judge on stderr, as before the live view.
    view = LiveView(runs, run_id, meter, parallel=parallel, plain=sys.stdout if parallel else sys.stderr)
    try:
        status = await view.watch()
    except asyncio.CancelledError:
        await runs.cancel(run_id)
        clean = " (or remove its worktrees: speedrun clean)" if parallel else ""
        _print_err(f"cancelled; continue later with: speedrun resume {run_id}{clean}")
        return EXIT_INTERRUPTED
    return _summary(status, await runs.full_result(run_id), first.output_dir, before_summary)


def _metered() -> AbstractContextManager[TokenMeter]:
    """Count the tokens of the runs started inside, for the live view (LangChain imported only now)."""
    from speedrun.cli_live import metered

    return metered()


def outcome_code(status: RunStatus, full: Any) -> int:
    """The exit code for how a run stands: its full result once it has one, else its state (see EXIT_CODES)."""
    from speedrun.runs import PARALLEL

    if status.status == "needs_input":
        return EXIT_NEEDS_INPUT
    if full is None:
        waiting = {"running": EXIT_RUNNING, "interrupted": EXIT_INTERRUPTED, "cancelled": EXIT_INTERRUPTED}
        return waiting.get(status.status, EXIT_FAILED)
    if status.workflow == "judge":
        return EXIT_PASSED if full.winner else EXIT_FAILED
    if status.workflow in PARALLEL:
        return EXIT_PASSED if full.status in ("promoted", "awaiting_choice") else EXIT_FAILED
    return EXIT_PASSED if full.status == "passed" else EXIT_FAILED


def _summary(
    status: RunStatus,
    full: Any,
    where: str | None = None,
    before_summary: Callable[[RunStatus, Any], None] | None = None,
) -> int:
    """The summary a run's workflow prints (ending with where it wrote and its run id), or, while it has no result
    (`full`, RunManager.full_result), how it stands and what to do next; the exit code. `where`: a parallel run's
    repo."""
    from speedrun.runs import PARALLEL

    if before_summary is not None:
        before_summary(status, full)
    if full is None:
        _print_status(status)
        return outcome_code(status, full)
    if status.workflow == "judge":
        _print_verdict(full)
        where = str(Path(full.worksheet_path).parent)
    elif status.workflow in PARALLEL:
        _print_parallel(full, status.result or {})
    else:
        _print_status(status, full)
        where = full.output_dir
    print(f"output: {where or ''}  (run {status.run_id})")
    return outcome_code(status, full)


def command_for(action: NextAction) -> str:
    """A RunStatus next action as what a CLI user does: the command and its arguments (the CLI's own form)."""
    run_id = action.args.get("run_id", "")
    if action.tool == "resume_run":
        step = action.args.get("action", "continue")
        return f"speedrun resume {run_id}" + ("" if step == "continue" else f" --action {step}")
    if action.tool == "cancel_run":
        return f"Ctrl-C in the terminal that runs {run_id}"
    return f"speedrun status {run_id}"


def _print_next(status: RunStatus) -> None:
    """What to do next, one line per action: when, then the command."""
    for action in status.next_actions:
        _print_err(f"{action.why}: {command_for(action)}")


def _print_needs(status: RunStatus) -> None:
    """A run waiting for the caller's fix: what failed, then the commands that answer it."""
    from speedrun.state.turbo import ClientFixRequest

    for need in status.needs or []:
        request = ClientFixRequest.model_validate(need)
        _print_err(f"tests failed in {request.output_dir} (cycle {request.cycle}):")
        for failure in request.failures:
            first = (str(failure.get("message") or "").splitlines() or [""])[0]
            _print_err(f"  - {failure.get('name')}: {first}")
        if request.more_failures:
            _print_err(f"  ... and {request.more_failures} more")
    _print_next(status)


def _print_status(status: RunStatus, full: TurboResult | None = None) -> None:
    """Print a finished turbo run (its full result) or what to do next (outcome_code gives the exit code)."""
    from speedrun.state.records import tests_line

    if status.status == "needs_input":
        _print_needs(status)
        return
    if full is None:
        state = status.status.replace("_", " ")
        _print_err(f"run {status.run_id} is {state}" + (f": {status.error}" if status.error else ""))
        _print_next(status)
        return
    r = full
    if r.files:
        print(_table([[f.path, str(f.lines), f.action] for f in r.files], ["file", "lines", "action"]))
    for err in r.file_errors:
        print(f"refused: {err.path}: {err.error}")
    print()
    rows = [
        [role, str(u.calls), str(u.prompt_tokens), str(u.completion_tokens), str(u.duration_ms)]
        for role, u in r.ledger.items()
    ]
    if rows:
        print(_table(rows, ["role", "calls", "prompt tok", "completion tok", "ms"]))
    for w in r.warnings:
        print(f"warning: {w}")
    tests = r.tests
    for f in tests.failures if tests else []:
        print(f"FAILED {f.name}: {f.message.splitlines()[0] if f.message else ''}")
    counts = tests.summary() if tests else tests_line(0, 0, 0)
    print(f"\n{r.status.upper()}: {counts} after {plural(len(r.cycles), 'fix cycle')}; run {status.run_id}")
    if r.report_path:
        print(f"report: {r.report_path}")


async def cmd_turbo(settings: Settings, args: argparse.Namespace) -> int:
    """Run the turbo workflow in the foreground with live progress."""
    from speedrun.preflight import check_turbo, turbo_input
    from speedrun.runs import RunManager

    contract = None
    if args.contract:
        path = Path(args.contract)
        if not path.is_file():
            raise InputError(
                f"--contract {echo(args.contract)} does not exist; pass a text file with DATA "
                "CONTRACT, API CONTRACT, ALGORITHM and RULES sections."
            )
        contract = path.read_text(encoding="utf-8")
    out = Path(args.out).expanduser().resolve()
    inputs = turbo_input(
        output_dir=out,
        task=args.task,
        contract=contract,
        test_command=args.test_cmd,
        max_fix_cycles=args.max_fix_cycles,
        context_files=args.context,
        roles={"fixer": "client"} if args.client_fix else None,
        allow_paths=args.allow_path,
        test_timeout_s=args.test_timeout,
        names=TURBO_FLAGS,
    )
    await check_turbo(settings, inputs, _root_for(out))
    async with RunManager.open(settings) as runs:
        with _metered() as meter:
            return await _follow(runs, await runs.start("turbo", inputs.model_dump()), meter)


async def cmd_resume(settings: Settings, args: argparse.Namespace) -> int:
    """Continue a run: after a crash, a cancel, or when it waits for the caller's fix."""
    from speedrun.preflight import resume_answer
    from speedrun.runs import RunManager

    edits: list[Any] | None = None
    if args.action not in (None, "continue"):
        try:
            edits = json.loads(Path(args.edits).read_text(encoding="utf-8")) if args.edits else []
        except (OSError, ValueError) as exc:
            raise InputError(
                f"--edits {echo(args.edits)} is not a readable JSON file ({exc}); it must hold "
                '[{"path": ..., "search": ..., "replace": ...}].'
            ) from None
    answer = resume_answer(args.action, edits)
    async with RunManager.open(settings) as runs:
        report: Callable[[RunStatus, Any], None] | None = None
        if args.action == "edits":
            needs = (await runs.status(args.run_id)).needs or [{}]
            cycle, sent = needs[0].get("cycle"), len(edits or [])
            report = lambda status, full: _print_edits(status, full, cycle, sent)  # noqa: E731
        with _metered() as meter:
            await runs.resume(args.run_id, answer)
            return await _follow(runs, args.run_id, meter, report)


def _print_edits(status: RunStatus, full: TurboResult | None, cycle: int | None, sent: int) -> None:
    """What happened to the edits the caller sent: applied N of M, then each other one and why it was not."""
    from speedrun.state.turbo import ClientFixRequest

    if full is not None:  # the run ended: its report has the cycle the edits made
        mine = next((c for c in full.cycles if c.cycle == cycle and c.source == "client"), None)
        if mine is None:
            return
        missed = [(e.path, e.status, e.message) for e in mine.edits if e.status != "applied"]
        total = len(mine.edits)
    elif status.status == "needs_input" and status.needs:  # it waits again: its question lists the misses
        request = ClientFixRequest.model_validate(status.needs[0])
        missed = [
            (str(e.get("path")), str(e.get("status")), str(e.get("message") or "")) for e in request.edits_not_applied
        ]
        total = sent
    else:
        return
    print(f"edits: applied {total - len(missed)} of {plural(total, 'edit')}")
    for path, outcome, message in missed:
        reason = (message.splitlines() or [""])[0]
        print(f"  not applied: {path}: {outcome.replace('_', ' ')}" + (f": {reason}" if reason else ""))


async def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    """Print one run's status without taking it over: what it is, where it stands (its step, each runner's), then
    the summary its workflow prints when it ended, or what to do next; --json prints the RunStatus as run_status."""
    from speedrun.runs import RunManager

    async with RunManager.open(settings) as runs:  # reads only: no run is marked, resumed or started here
        status = await runs.status(args.run_id)
        full = await runs.full_result(args.run_id)
        if args.json:
            print(json.dumps(status.model_dump(mode="json"), indent=2))
            return outcome_code(status, full)
        values, step = await _checkpoint(runs, status)
        where = status.output_dir or str(values.get("repo") or "")  # a finished parallel run: its repo
        rows = [["run", status.run_id], ["workflow", status.workflow], ["status", status.status.replace("_", " ")]]
        if full is None:
            rows += [["step", step]] if step else []
            rows += [[f"  {name}", runner_step] for name, runner_step in sorted(status.runners.items())]
            rows += [["output", where]] if where else []
        print("\n".join(f"{label:9} {value}" for label, value in rows), end="\n\n")
        return _summary(status, full, where)


async def _checkpoint(runs: RunManager, status: RunStatus) -> tuple[dict[str, Any], str]:
    """The run's latest checkpointed values and its current step: the latest progress line's step while this
    process drives it, else the step its checkpoint runs next (where another process is, or where it stopped)."""
    snapshot = await runs.graphs[status.workflow].aget_state({"configurable": {"thread_id": status.run_id}})
    values = snapshot.values if isinstance(snapshot.values, dict) else {}
    if status.progress:
        return values, status.progress[-1].split(":", 1)[0].strip()
    # Parallel branches of one step (each runner's run_runner) are named once, with how many run at once.
    counts = {name: snapshot.next.count(name) for name in snapshot.next}
    return values, ", ".join(name if n == 1 else f"{name} ×{n}" for name, n in counts.items())


async def cmd_runs(settings: Settings, args: argparse.Namespace) -> int:
    """List recent runs."""
    from speedrun.runs import RunManager

    async with RunManager.open(settings) as runs:
        rows = [[r.run_id, r.status, r.created_at, r.output_dir or ""] for r in await runs.list(args.limit)]
    print(_table(rows, ["run", "status", "created", "output"]) if rows else "no runs yet")
    return 0


def _local_path(value: str, name: str) -> Path:
    """A path typed at the terminal, made absolute against the working directory (the CLI has no roots)."""
    return Path(value).expanduser().resolve()


async def cmd_judge(settings: Settings, args: argparse.Namespace) -> int:
    """Judge implementation directories against a design; print the scorecard and write the worksheet."""
    from speedrun.preflight import check_judge, judge_input
    from speedrun.runs import RunManager

    design = Path(args.design)
    if not design.is_file():
        raise InputError(f"--design {echo(args.design)} does not exist; pass the design or plan as a text file.")
    inputs = judge_input(
        [{"path": d, "test_command": args.test_cmd} for d in args.dirs],
        design.read_text(encoding="utf-8"),
        args.mode,
        resolve=_local_path,
        worksheet_dir=str(_local_path(args.out, "--out")),
    )
    await check_judge(settings, inputs)
    async with RunManager.open(settings) as runs:
        # Directories written by earlier turbo runs bring their calls, fix cycles and generation time along.
        with _metered() as meter:
            return await _follow(runs, await runs.start("judge", await runs.with_metrics(inputs)), meter)


def _print_verdict(result: JudgeResult) -> None:
    """The judge's scorecard table, winner and where the worksheet is."""
    rows = [
        [c.name, *map(str, c.scores.as_dict().values()), str(c.total), "eliminated" if c.eliminated else ""]
        for c in result.scorecards
    ]
    header = ["implementation", "fitness", "complexity", "readability", "robustness", "maintain.", "total", "gate"]
    print(_table(rows, header))
    decision = result.decision
    print(f"\nwinner: {result.winner or 'none'}  ({decision.gate_applied or 'clear lead'})")
    print(decision.rationale)
    if result.flip_rate is not None:
        print(f"flip rate: {result.flip_rate:.0%} of checklist answers changed when the order was swapped")
    print(f"worksheet: {result.worksheet_path}\nscorecard: {result.scorecard_path}")


def _design_text(value: str) -> str:
    """--design FILE|TEXT: an existing file's text (the CLI user may keep it anywhere), else the value itself,
    which the run reads as the design or as a file inside the repo."""
    path = Path(value).expanduser()
    if "\n" not in value and len(value) < 1024 and path.is_file():
        return path.read_text(encoding="utf-8", errors="replace")
    return value


def _roles(pairs: list[str] | None) -> dict[str, str]:
    """--role ROLE=MODEL pairs as a roles dict."""
    roles: dict[str, str] = {}
    for pair in pairs or []:
        role, sep, model = pair.partition("=")
        if not sep or not role.strip() or not model.strip():
            raise InputError(f"--role {echo(pair, 80)} must be ROLE=MODEL, e.g. --role generator=groq.")
        roles[role.strip()] = model.strip()
    return roles


async def cmd_parallel(settings: Settings, args: argparse.Namespace) -> int:
    """Run a showdown or any-percent in the foreground: a live runners table, then the final table and winner."""
    from speedrun.preflight import check_parallel, parallel_input
    from speedrun.runs import RunManager

    workflow = "showdown" if args.command == "showdown" else "any_percent"
    inputs = parallel_input(
        workflow,
        design=_design_text(args.design),
        repo=Path(args.repo).expanduser().resolve(),
        feature=args.feature,
        runners=getattr(args, "runners", "auto"),
        approaches=getattr(args, "approach", None),
        test_command=args.test_cmd,
        scenario_command=args.scenario_cmd,
        setup_command=args.setup_cmd,
        max_fix_cycles=args.max_fix_cycles,
        promote=args.promote,
        roles=_roles(args.role),
        include_uncommitted=args.include_uncommitted,
        test_timeout_s=args.test_timeout,
        names=PARALLEL_FLAGS,
    )
    await check_parallel(settings, inputs)
    async with RunManager.open(settings) as runs:
        with _metered() as meter:
            return await _follow(runs, await runs.start(workflow, inputs.model_dump(mode="json")), meter)


def _print_parallel(result: ParallelResult, compact: dict[str, Any]) -> None:
    """The runners table, winner, flags and where result.md is."""
    rows = [
        [r.name, r.status, r.tests or "-", r.scenario or "-", str(r.fix_cycles), str(r.llm_calls), str(r.lines)]
        + [f"{r.wall_s:.1f}"]
        for r in result.runners
    ]
    header = ["runner", "status", "tests", "scenario", "fix cycles", "llm calls", "lines", "wall s"]
    print(_table(rows, header) if rows else "no runner ran")
    print()
    if result.winner:
        print(f"winner: {result.winner} (branch {result.winner_branch})")
        if result.why:
            print(f"why: {result.why}")
    else:
        print(f"no winner: {result.status.replace('_', ' ')}")
    if compact.get("choose"):
        print(f"your choice: {compact['choose']}")
    for flag in result.similar:
        print(f"near-duplicates: {flag.first} and {flag.second} are {flag.ratio:.0%} alike")
    if result.flip_rate is not None:
        print(f"flip rate: {result.flip_rate:.0%} of the judge's answers changed when the order was swapped")
    for warning in result.warnings:
        print(f"warning: {warning}")
    if result.result_path:
        print(f"result: {result.result_path}")


async def cmd_clean(settings: Settings, args: argparse.Namespace) -> int:
    """Remove the worktrees and branches parallel runs left behind when their process died or was cancelled."""
    from speedrun.runs import RunManager

    async with RunManager.open(settings) as runs:
        result = await runs.clean()
    for line in result.lines():
        print(line)
    print(result.note)
    return 1 if result.problems else 0


def cmd_mcp(args: argparse.Namespace) -> int:
    """Run the MCP server on stdio, or with --http over streamable HTTP; a refused binding exits 2."""
    return serve_mcp(http=args.http, host=args.host, port=args.port)


def serve_mcp(http: bool = False, host: str = "127.0.0.1", port: int = 8000) -> int:
    """Serve MCP until the client leaves; the exit code of `speedrun mcp`."""
    from speedrun.mcp_bridge.server import main as serve

    try:
        serve(http=http, host=host, port=port)
    except SpeedRunError as exc:
        _print_err(f"speedrun mcp: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


def mermaid(name: str) -> str:
    """The compiled graph of workflow `name` (one of GRAPHS) as a Mermaid diagram, as LangGraph draws it."""
    import importlib

    return str(importlib.import_module(f"speedrun.graphs.{name}").graph.get_graph().draw_mermaid())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    import argparse

    RUN_KW.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
    parser = argparse.ArgumentParser(
        prog="speedrun",
        description="Fast-model codegen with tests and surgical fixes.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "check", help="check the key, that the generator endpoint answers, and the run store and rate budget"
    )
    gen = sub.add_parser("generate", help="generate files from a prompt and write them to --out")
    gen.add_argument("prompt", nargs="?", help="the prompt text, or '-' to read stdin")
    gen.add_argument("--prompt-file", help="read the prompt from this file")
    gen.add_argument("--out", required=True, help="directory to write the files into")
    gen.add_argument("--system", help="extra system prompt")
    gen.add_argument("--context", action="append", help="existing file to show the model (repeatable)")
    gen.add_argument("--max-tokens", type=int, help="output token limit (default: sized to the prompt)")
    gen.add_argument(
        "--allow-path",
        action="append",
        help="protected path the reply may write anyway, e.g. .github/workflows/ci.yml (repeatable)",
    )
    gen.add_argument("--json", action="store_true", help="print the result as JSON")
    mcp = sub.add_parser("mcp", help="run the MCP server on stdio (for Claude Code and other MCP clients)")
    mcp.add_argument(
        "--http", action="store_true", help="serve over streamable HTTP at http://HOST:PORT/mcp instead of stdio"
    )
    mcp.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind with --http (default 127.0.0.1); any non-loopback one needs SPEEDRUN_MCP_TOKEN",
    )
    mcp.add_argument("--port", type=int, default=8000, help="TCP port with --http (default 8000)")
    tur = sub.add_parser("turbo", help="contract → generate → test → surgical fixes, in the foreground", **RUN_KW)
    what = tur.add_mutually_exclusive_group(required=True)
    what.add_argument("--task", help="the job in plain words (the planner writes the contract)")
    what.add_argument("--contract", help="file with DATA CONTRACT / API CONTRACT / ALGORITHM / RULES")
    tur.add_argument("--out", required=True, help="workspace directory to write into and test in")
    tur.add_argument("--test-cmd", default="pytest -q", help="test command run in --out (default: pytest -q)")
    tur.add_argument("--max-fix-cycles", type=int, default=3, help="surgical fix rounds (default 3)")
    _test_timeout_flag(tur)
    tur.add_argument("--context", action="append", help="existing file in --out to show the generator")
    tur.add_argument("--client-fix", action="store_true", help="pause on failures so you fix them yourself")
    tur.add_argument(
        "--allow-path",
        action="append",
        help="protected path the generator may write anyway, e.g. .github/workflows/ci.yml (repeatable)",
    )
    _run_parsers(sub)
    return parser


def _run_parsers(sub: Any) -> None:
    """The subcommands that pick up, judge, list, clean and draw runs."""
    res = sub.add_parser("resume", help="continue a run (after a crash, cancel, or your own fix)", **RUN_KW)
    res.add_argument("run_id", help="the run to continue, as `speedrun runs` lists it")
    res.add_argument(
        "--action",
        choices=["continue", "retest", "stop", "edits"],
        help="retest/stop/edits answer a run waiting for your fix; continue picks up a dead run",
    )
    res.add_argument("--edits", help="JSON file with [{path, search, replace}] for --action edits")
    jud = sub.add_parser("judge", help="score implementation directories and pick a winner", **RUN_KW)
    jud.add_argument("dirs", nargs="+", help="implementation directories (their names label the scorecard)")
    jud.add_argument("--design", required=True, help="the design or plan they implement (text file)")
    jud.add_argument(
        "--mode",
        choices=["showdown", "any_percent"],
        default="showdown",
        help="showdown: one design built several times; any_percent: different approaches (default showdown)",
    )
    jud.add_argument("--test-cmd", default="pytest -q", help="test command run in each directory")
    jud.add_argument("--out", default=".", help="directory for judge-worksheet.md and scorecard.json")
    _parallel_parser(sub, "showdown", "2-5 runners build one design in git worktrees; the judged winner is promoted")
    _parallel_parser(
        sub, "any-percent", "2-5 approaches to one problem in git worktrees; the judged winner is promoted"
    )
    sub.add_parser("clean", help="remove worktrees and branches that dead or cancelled parallel runs left behind")
    sta = sub.add_parser(
        "status",
        help="show one run's status (from any machine sharing its database) without taking it over",
        epilog=f"{EXIT_CODES}\n\nIt exits as the run's own command would have; {EXIT_RUNNING} while the run "
        f"still runs, {EXIT_INTERRUPTED} once its process died or it was cancelled (resume it).",
        formatter_class=RUN_KW["formatter_class"],
    )
    sta.add_argument("run_id", help="the run to show, as `speedrun runs` lists it")
    sta.add_argument("--json", action="store_true", help="print the status as JSON (what MCP's run_status returns)")
    runs = sub.add_parser("runs", help="list recent runs")
    runs.add_argument("--limit", type=_positive, default=20, help="how many runs to list (default 20)")
    graph = sub.add_parser("graph", help="print a workflow's graph as a Mermaid diagram")
    graph.add_argument(
        "name", type=lambda v: v.replace("-", "_"), choices=GRAPHS, help=f"the workflow: {', '.join(GRAPHS)}"
    )


def _test_timeout_flag(cmd: Any) -> None:
    """--test-timeout SECONDS: the limit of one test run (the input record checks its range)."""
    cmd.add_argument(
        "--test-timeout",
        type=float,
        metavar="SECONDS",
        help="wall-clock limit of one test run, over 0 and at most 3600 (default 300); when it expires the "
        "test process group is killed and the run reports 'Timed out after N s'",
    )


def _positive(value: str) -> int:
    """An argparse type: a whole number of 1 or more; argparse refuses anything else naming the flag (exit 2)."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        import argparse

        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, got {echo(value, 40)}")
    return number


def _parallel_parser(sub: Any, name: str, help_text: str) -> None:
    """The flags of `speedrun showdown` / `speedrun any-percent`, mirroring the MCP tools."""
    cmd = sub.add_parser(name, help=help_text, **RUN_KW)
    cmd.add_argument("--design", required=True, help="the design: a text file, or the text itself")
    cmd.add_argument("--feature", required=True, help="a slug naming the feature (branches <feature>/speed-run/...)")
    cmd.add_argument("--repo", default=".", help="the git repository to work in (default: here)")
    if name == "showdown":
        cmd.add_argument("--runners", default="auto", help="2-5, or auto: the planner rates the design (default)")
    else:
        cmd.add_argument(
            "--approach", action="append", help="'slug: summary' (repeat 2-5 times); omit to let the planner propose"
        )
    cmd.add_argument("--test-cmd", default="pytest -q", help="test command run in each worktree (default: pytest -q)")
    cmd.add_argument("--scenario-cmd", help="a second gate every survivor must pass, e.g. scenario tests")
    cmd.add_argument("--setup-cmd", help="run once in each worktree before its tests, e.g. 'uv sync'")
    cmd.add_argument("--max-fix-cycles", type=int, default=3, help="surgical fix rounds per runner (default 3)")
    _test_timeout_flag(cmd)
    cmd.add_argument(
        "--promote", choices=["branch", "merge", "ask"], default="branch", help="what to do with the winner"
    )
    cmd.add_argument("--role", action="append", help="ROLE=MODEL override, e.g. generator=groq (repeatable)")
    cmd.add_argument(
        "--include-uncommitted", action="store_true", help="start from a snapshot of your uncommitted changes"
    )


COMMANDS = {
    "check": cmd_check,
    "generate": cmd_generate,
    "turbo": cmd_turbo,
    "resume": cmd_resume,
    "runs": cmd_runs,
    "status": cmd_status,
    "judge": cmd_judge,
    "showdown": cmd_parallel,
    "any-percent": cmd_parallel,
    "clean": cmd_clean,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `speedrun` console script."""
    if (sys.argv[1:] if argv is None else argv) == ["mcp"]:
        # How MCP clients start the server, and they wait for it: skip building the parser of every subcommand.
        return serve_mcp()
    args = build_parser().parse_args(argv)
    if args.command == "mcp":
        return cmd_mcp(args)
    if args.command == "graph":  # needs no settings or key
        print(mermaid(args.name), end="")
        return EXIT_PASSED
    from speedrun.procs import harden_process

    harden_process()  # same-user test code cannot read this process's environment (the keys)
    settings: Settings | None = None
    try:
        settings = load_settings()
        return asyncio.run(COMMANDS[args.command](settings, args))
    except SpeedRunError as exc:
        _print_err(f"speedrun: {settings.redact(str(exc)) if settings else exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _print_err("speedrun: interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
