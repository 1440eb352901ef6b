"""Checks both edges (CLI, MCP) run on a request before any model call or run is created: one copy of each rule."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speedrun.config import ModelSpec, Role, Settings, check_apart_from_home, with_roles
from speedrun.errors import InputError, echo, parse_input

if TYPE_CHECKING:
    from speedrun.state import StatusResult
    from speedrun.state.judge import JudgeInput
    from speedrun.state.parallel import AnyPercentInput, ShowdownInput
    from speedrun.state.runs import ResumeAnswer
    from speedrun.state.turbo import TurboInput

#: How an edge turns a path its caller typed into an absolute one: (value, the input's name) -> path. The MCP
#: server resolves against the client's roots and refuses paths outside them; the CLI against its directory.
PathResolver = Callable[[str, str], Path]

#: The most characters one text input (prompt, system prompt, task, contract, design) may hold: about 125,000
#: tokens, already more than the fast models' context windows. A larger input is refused before anything is made,
#: rather than sent (a 10 MB prompt would be charged to the rate budget and fail at the provider). Existing code is
#: better passed as context_files, which are cut to size.
MAX_INPUT_CHARS = 500_000
#: The longest one test run may be given, in seconds: an hour; a longer hang is a bug, not a slow suite.
MAX_TEST_TIMEOUT_S = 3600


def check_text(value: str | None, name: str, *, required: bool = False) -> None:
    """A text input is at most MAX_INPUT_CHARS characters and, when `required`, not empty or only whitespace."""
    if value is None or not value.strip():
        if required:
            raise InputError(f"{name} is empty; pass its text.")
        return
    if len(value) > MAX_INPUT_CHARS:
        raise InputError(
            f"{name} is {len(value):,} characters, over the {MAX_INPUT_CHARS:,}-character limit for one input "
            "(more than a fast model's context window); shorten it, and pass existing code as context_files "
            "instead of pasting it."
        )


def check_test_timeout(value: float | None, name: str = "test_timeout_s") -> None:
    """A test run's time limit, when given, is over 0 and at most MAX_TEST_TIMEOUT_S seconds."""
    if value is not None and not 0 < value <= MAX_TEST_TIMEOUT_S:
        shown = echo(f"{value:g}", 40)  # as typed: 3601, not 3601.0
        raise InputError(f"{name} {shown} must be over 0 and at most {MAX_TEST_TIMEOUT_S} seconds, e.g. 120.")


def turbo_input(
    *,
    output_dir: Path,
    task: str | None,
    contract: str | None,
    test_command: str,
    max_fix_cycles: int,
    context_files: list[str] | None = None,
    roles: dict[str, str] | None = None,
    allow_paths: list[str] | None = None,
    test_timeout_s: float | None = None,
    names: dict[str, str] | None = None,
) -> TurboInput:
    """A turbo request as TurboInput, for an output dir the edge has already resolved; `names` maps fields to
    what the caller typed (e.g. --test-cmd) for the error message. `test_timeout_s`: the limit of one test run
    (the record's default when None)."""
    from speedrun.state.turbo import TurboInput

    for field_name, value in (("task", task), ("contract", contract)):
        check_text(value, (names or {}).get(field_name, field_name))
    data: dict[str, Any] = {
        "task": task,
        "contract": contract,
        "output_dir": str(output_dir),
        "test_command": test_command,
        "max_fix_cycles": max_fix_cycles,
        "context_files": context_files or [],
        "roles": roles or {},
        "allow_paths": allow_paths or [],
    }
    if test_timeout_s is not None:
        check_test_timeout(test_timeout_s, (names or {}).get("test_timeout_s", "test_timeout_s"))
        data["test_timeout_s"] = test_timeout_s
    return parse_input(TurboInput, data, names)


def judge_input(
    implementations: Sequence[Any],
    design: str,
    mode: str,
    *,
    resolve: PathResolver,
    worksheet_dir: str | None = None,
) -> JudgeInput:
    """A judge request as JudgeInput: each implementation's path resolved by the edge, the rest left to the
    model, which owns the rules (a missing name is the path's last folder, names distinct ignoring case, paths
    are directories, 1–5 of them)."""
    from speedrun.state.judge import JudgeInput

    check_text(design, "design")
    impls = []
    for i, impl in enumerate(implementations):
        if not isinstance(impl, dict) or not str(impl.get("path") or "").strip():
            raise InputError(f"implementations[{i}] needs at least a 'path' (and a 'name').")
        impls.append({**impl, "path": str(resolve(str(impl["path"]), f"implementations[{i}].path"))})
    data = {"implementations": impls, "design": design, "mode": mode, "worksheet_dir": worksheet_dir}
    return parse_input(JudgeInput, data)


def resume_answer(action: str | None, edits: list[Any] | None) -> ResumeAnswer | None:
    """The answer RunManager.resume takes for an edge's action: None picks up a dead or cancelled run; otherwise
    the caller's fix (retest, stop, or edits), checked here in plain words (InputError)."""
    from speedrun.state.runs import ResumeAnswer

    if action in (None, "continue"):
        return None
    return ResumeAnswer.read({"action": action, "edits": edits or []})


def parallel_input(
    workflow: str,
    *,
    design: str,
    repo: Path,
    feature: str,
    test_command: str,
    runners: int | str = "auto",
    approaches: Sequence[Any] | None = None,
    scenario_command: str | None = None,
    setup_command: str | None = None,
    max_fix_cycles: int = 3,
    promote: str = "branch",
    roles: dict[str, str] | None = None,
    include_uncommitted: bool = False,
    test_timeout_s: float | None = None,
    names: dict[str, str] | None = None,
) -> ShowdownInput | AnyPercentInput:
    """A showdown or any-percent request as its input record, for a repo the edge has already resolved.

    `runners` is 2-5 or 'auto' (a digit string counts); an approach is {slug, summary, pros?, cons?} or the
    text 'slug: summary'. `names` maps fields to what the caller typed (e.g. --test-cmd) for the error message.
    `test_timeout_s`: the limit of one test run (the record's default when None).
    """
    from speedrun.state.parallel import AnyPercentInput, ShowdownInput

    check_text(design, (names or {}).get("design", "design"))
    data: dict[str, Any] = {
        "design": design,
        "repo": str(repo),
        "feature": feature,
        "test_command": test_command,
        "scenario_command": scenario_command or None,
        "setup_command": setup_command or None,
        "max_fix_cycles": max_fix_cycles,
        "promote": promote,
        "roles": roles or {},
        "include_uncommitted": include_uncommitted,
    }
    if test_timeout_s is not None:
        check_test_timeout(test_timeout_s, (names or {}).get("test_timeout_s", "test_timeout_s"))
        data["test_timeout_s"] = test_timeout_s
    if workflow == "showdown":
        count = runners.strip().lower() if isinstance(runners, str) else runners
        if isinstance(count, str) and count != "auto" and not count.isdigit():
            flag = (names or {}).get("runners", "runners")
            raise InputError(f"{flag} {echo(str(runners), 40)} must be a number from 2 to 5, or 'auto'.")
        data["runners"] = int(count) if isinstance(count, str) and count.isdigit() else count
        return parse_input(ShowdownInput, data, names)
    flag = (names or {}).get("approaches", "approaches")
    data["approaches"] = [_approach(a, f"{flag}[{i}]") for i, a in enumerate(approaches or [])]
    return parse_input(AnyPercentInput, data, names)


def _approach(value: Any, name: str) -> Any:
    """'slug: summary' as {slug, summary}; a dict passes through for the record to check."""
    if not isinstance(value, str):
        return value
    slug, sep, summary = value.partition(":")
    if not sep or not slug.strip() or not summary.strip():
        raise InputError(
            f"{name} {echo(value, 80)} needs a slug and a summary, as 'slug: what it does' "
            "(e.g. 'sqlite: keep the counters in a SQLite table')."
        )
    return {"slug": slug.strip(), "summary": summary.strip()}


#: The roles a showdown or any-percent run needs: plans, code, fixes, fresh-eyes reviews and the verdict.
PARALLEL_ROLES: tuple[Role, ...] = ("planner", "generator", "fixer", "reviewer", "judge")


async def check_parallel(settings: Settings, inputs: ShowdownInput | AnyPercentInput) -> None:
    """Everything a parallel run needs before it is created: its roles (the caller cannot be the fixer), a test
    command that runs, a design, and a git repository with a commit whose tracked files are clean (unless
    include_uncommitted). Nothing is made here: no worktree, branch, run or model call."""
    from speedrun.nodes.assess import read_design
    from speedrun.sandbox import check_test_command
    from speedrun.state.parallel import CLIENT_FIXER_REFUSED
    from speedrun.worktrees import base_commit, inspect_repo

    run_settings = with_roles(settings, inputs.roles)
    if run_settings.fixer_is_client:
        raise InputError(CLIENT_FIXER_REFUSED + ".")
    run_settings.require(*PARALLEL_ROLES)
    repo = await inspect_repo(inputs.repo)
    if not inputs.include_uncommitted:
        await base_commit(repo, include_uncommitted=False)  # refuses a dirty tree, naming the files and the fixes
    await asyncio.to_thread(check_apart_from_home, settings.home, Path(repo.root), "repo")
    await asyncio.to_thread(check_test_command, inputs.test_command, Path(repo.root))
    design = await asyncio.to_thread(read_design, inputs.design, repo.root)
    if not design.strip():
        raise InputError("design is empty; pass the design's text or the path of a file holding it (in the repo).")
    check_text(design, "design")  # a path's file may hold more than the text passed


#: The roles the default workflow (turbo with a task) needs: what `check` and check_status verify.
DEFAULT_WORKFLOW_ROLES: tuple[Role, ...] = ("generator", "planner", "fixer")


def turbo_roles(inputs: TurboInput) -> tuple[Role, ...]:
    """The roles a turbo run needs: the planner only when it has no contract to start from."""
    has_contract = bool(inputs.contract and inputs.contract.strip())
    return ("generator", "fixer") if has_contract else ("generator", "fixer", "planner")


def check_max_tokens(max_tokens: int | None, name: str = "max_tokens") -> None:
    """A token limit is a positive number, or absent (then it is sized to the prompt)."""
    if max_tokens is not None and max_tokens <= 0:
        raise InputError(
            f"{name} must be a positive number of tokens (got {max_tokens}); leave it out to have it "
            "sized to the prompt."
        )


def check_prompt(prompt: str, system_prompt: str | None = None, *, name: str = "prompt") -> None:
    """A one-shot generation's prompt is given and within MAX_INPUT_CHARS, as is its optional system prompt."""
    if not prompt.strip():
        raise InputError(f"{name} is empty; describe what to generate (ideally as a contract).")
    check_text(prompt, name)
    check_text(system_prompt, "system_prompt")


async def check_output_dir(path: Path, root: Path, allow_paths: list[str] | None = None) -> None:
    """The output dir exists or can be created (it is created), and is not in a protected place."""
    from speedrun.files import check_output_dir as check

    await asyncio.to_thread(check, path, root, tuple(allow_paths or ()))


async def check_generate(
    settings: Settings,
    out: Path,
    root: Path,
    *,
    max_tokens: int | None,
    allow_paths: list[str] | None = None,
    max_tokens_name: str = "max_tokens",
    prompt: str | None = None,
    system_prompt: str | None = None,
    prompt_name: str = "prompt",
) -> None:
    """Everything a one-shot generate-and-write needs before its model call; the output dir is made last, so a
    refused request leaves nothing behind. `prompt` (and system_prompt) are checked when given."""
    settings.require("generator")
    check_max_tokens(max_tokens, max_tokens_name)
    if prompt is not None:
        check_prompt(prompt, system_prompt, name=prompt_name)
    await asyncio.to_thread(check_apart_from_home, settings.home, out)
    await check_output_dir(out, root, allow_paths)


async def check_turbo(settings: Settings, inputs: TurboInput, root: Path) -> None:
    """Everything a turbo run needs before it is created: its roles, a usable workspace, a test command that runs."""
    from speedrun.sandbox import check_test_command

    with_roles(settings, inputs.roles).require(*turbo_roles(inputs))
    out = Path(inputs.output_dir)
    await asyncio.to_thread(check_test_command, inputs.test_command, out)
    await asyncio.to_thread(check_apart_from_home, settings.home, out)
    await check_output_dir(out, root, inputs.allow_paths)  # last: it creates the directory


#: The roles a judge run needs.
JUDGE_ROLES: tuple[Role, ...] = ("reviewer", "judge")


async def check_judge(settings: Settings, inputs: JudgeInput) -> None:
    """What a judge run needs besides valid input: its roles. (JudgeInput itself refuses an empty design,
    missing directories and duplicate names, so both edges get those from judge_input.)"""
    settings.require(*JUDGE_ROLES)


async def check_setup(settings: Settings | None, config_error: str | None = None) -> StatusResult:
    """What `speedrun check` and check_status report: every role the default workflow needs, their endpoints,
    how GENERATION_TIMEOUT was read and which isolation tests get. Never contains a key."""
    from speedrun.config import SETUP_HINT
    from speedrun.state import StatusResult

    if settings is None or config_error:
        error = config_error or "settings could not be read"
        return StatusResult(
            status="error", error=NO_PROVIDER if error == SETUP_HINT else error, setup_hint=_hint_for(error)
        )
    specs, roles, problems = _resolve_roles(settings)
    gen = specs.get("generator")
    result = StatusResult(
        status="ok",
        url=settings.redact(gen.base_url if gen else settings.cerebras_url),
        model=gen.model if gen else settings.cerebras_model,
        roles=roles,
        timeout_note=settings.timeout_note(),
        isolation=await _isolation(settings),
    )
    if problems:
        result.status = "error"
        if SETUP_HINT in problems:  # no provider at all: the short form; the hint carries the how-to
            result.error = NO_PROVIDER
            result.setup_hint = SETUP_HINT
        else:
            result.error = "; ".join(f"{', '.join(rs)}: {msg}" for msg, rs in problems.items())
            result.setup_hint = _hint_for(result.error)
        return result
    await _check_models(settings, specs, result)
    return result


def _resolve_roles(settings: Settings) -> tuple[dict[Role, ModelSpec], dict[str, str], dict[str, list[str]]]:
    """Each default-workflow role's primary model, its label, and the (redacted) problems found, each message
    with the roles it concerns (one provider typo breaks them all)."""
    from speedrun.errors import ConfigError

    specs: dict[Role, ModelSpec] = {}
    roles: dict[str, str] = {}
    problems: dict[str, list[str]] = {}
    for role in DEFAULT_WORKFLOW_ROLES:
        if role == "fixer" and settings.fixer_is_client:
            roles[role] = "client"
            continue
        try:
            specs[role] = settings.role(role).primary
            roles[role] = specs[role].describe()
        except ConfigError as exc:
            problems.setdefault(settings.redact(str(exc)), []).append(role)
    return specs, roles, problems


async def _check_models(settings: Settings, specs: dict[Role, ModelSpec], result: StatusResult) -> None:
    """Ask each endpoint for its models (once per endpoint and key) and check every role's model is listed;
    the first problem goes into `result`."""
    from speedrun.errors import SpeedRunError
    from speedrun.llm import list_models

    redact = settings.redact
    listed: dict[str, list[str]] = {}
    for role, spec in specs.items():
        if spec.budget_key not in listed:
            try:
                listed[spec.budget_key] = await list_models(spec, settings)
            except SpeedRunError as exc:
                result.status, result.error = "error", f"{role} endpoint {redact(spec.base_url)}: {redact(str(exc))}"
                result.setup_hint = "Check the URL, the key and the network; the endpoint must answer GET /models."
                return
        models = listed[spec.budget_key]
        if role == "generator":
            result.available_models = models
        if models and spec.model not in models:
            result.status = "error"
            result.error = (
                f"{role}: model {spec.model!r} is not in the endpoint's model list "
                f"({', '.join(models[:8])}{', …' if len(models) > 8 else ''}); "
                f"set {settings.model_variable(role)} to one of them."
            )
            return


NO_PROVIDER = "no model provider: CEREBRAS_API_KEY is not set and no local provider is configured"


def _hint_for(error: str) -> str | None:
    """The setup hint that matches an error: the key how-to only when no provider is configured at all."""
    from speedrun.config import SETUP_HINT

    if not error:
        return None
    if error in (SETUP_HINT, NO_PROVIDER):
        return SETUP_HINT
    return "Fix the setting the error names, then restart the client (or rerun the command)."


async def _isolation(settings: Settings) -> str | None:
    """The sandbox's one-line summary (it may probe bubblewrap once: off the event loop)."""
    from speedrun import sandbox

    try:
        return await asyncio.to_thread(sandbox.isolation_summary, settings.sandbox, settings.sandbox_network)
    except Exception as exc:  # an unknown SPEEDRUN_SANDBOX mode is reported, not raised
        return str(exc)
