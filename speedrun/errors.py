"""The small error hierarchy that edges (MCP, CLI) translate into user-facing messages."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class SpeedRunError(Exception):
    """Base for every error speed-run raises on purpose; its text is safe to show a user."""

    #: CLI exit code for this kind of error.
    exit_code = 1


class InputError(SpeedRunError, ValueError):
    """The caller gave bad input; the message names it and says how to fix it.

    Also a ValueError: LangGraph's server shows a ValueError's message to the Studio user, and hides others'."""

    exit_code = 2


class ConfigError(SpeedRunError, ValueError):
    """Settings are missing or inconsistent (no key, unknown provider, bad limit). A ValueError, as InputError."""

    exit_code = 2


class ProviderError(SpeedRunError):
    """The model provider failed after retries and fallbacks (rate limit, 5xx, timeout, bad reply)."""


class FileProtocolError(SpeedRunError):
    """A generated file could not be parsed or safely written."""


class RunNotFoundError(InputError):
    """A run id that no checkpoint knows about."""


ECHO_LIMIT = 120  # characters of a caller's bad input repeated back in an error


def echo(value: object, limit: int = ECHO_LIMIT) -> str:
    """A bad input quoted for an error message, cut to `limit` characters so a huge value is never echoed whole."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"


MAX_PROBLEMS = 5  # problems listed from one validation error; the rest are counted
PROBLEM_LIMIT = 300  # characters of one listed problem


def describe_validation(
    exc: ValidationError,
    names: dict[str, str] | None = None,
    *,
    where: Callable[[tuple[str | int, ...]], str] | None = None,
    reword: Callable[[Mapping[str, Any]], str | None] | None = None,
) -> str:
    """A pydantic error in the caller's words: each bad field and why, no class names, links or input dumps.

    The one formatter for validation errors (edge input, settings, a model's JSON answer). `names` maps a field
    path (a.b) to what the caller typed; `where` names a location instead (e.g. as an environment variable);
    `reword` may replace pydantic's message for an error. At most MAX_PROBLEMS problems, each bounded.
    """
    names = names or {}
    problems = []
    errors = exc.errors(include_url=False, include_input=False)
    for err in errors[:MAX_PROBLEMS]:
        loc = where(err["loc"]) if where else ".".join(str(p)[:ECHO_LIMIT] for p in err["loc"])
        loc = names.get(loc, loc)
        msg = (reword(err) if reword else None) or str(err["msg"]).removeprefix("Value error, ")
        problems.append((f"{loc}: {msg}" if loc else msg)[:PROBLEM_LIMIT])
    if len(errors) > MAX_PROBLEMS:
        problems.append(f"and {len(errors) - MAX_PROBLEMS} more")
    return "; ".join(problems) or "invalid value"


def parse_input(model: type[M], data: dict[str, Any], names: dict[str, str] | None = None) -> M:
    """Validate input arriving at an edge (CLI, MCP) into a record; a bad field becomes an InputError naming it.

    `names` maps field names to what the caller typed (e.g. {"max_fix_cycles": "--max-fix-cycles"}).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"invalid input: {describe_validation(exc, names)}.") from None
