"""The small error hierarchy that edges (MCP, CLI) translate into user-facing messages."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class SpeedRunError(Exception):
    """Base for every error speed-run raises on purpose; its text is safe to show a user."""

    #: CLI exit code for this kind of error.
    exit_code = 1


class InputError(SpeedRunError):
    """The caller gave bad input; the message names it and says how to fix it."""

    exit_code = 2


class ConfigError(SpeedRunError):
    """Settings are missing or inconsistent (no key, unknown provider, bad limit)."""

    exit_code = 2


class ProviderError(SpeedRunError):
    """The model provider failed after retries and fallbacks (rate limit, 5xx, timeout, bad reply)."""


class FileProtocolError(SpeedRunError):
    """A generated file could not be parsed or safely written."""


class RunNotFoundError(InputError):
    """A run id that no checkpoint knows about."""


def parse_input(model: type[M], data: dict[str, Any]) -> M:
    """Validate input arriving at an edge (CLI, MCP) into a record; a bad field becomes an InputError naming it."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors())
        raise InputError(f"invalid {model.__name__}: {problems}.") from None
