"""The small error hierarchy that edges (MCP, CLI) translate into user-facing messages."""

from __future__ import annotations


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
