"""Small helpers every node shares: the run's settings and progress events."""

from __future__ import annotations

from typing import Any

from speedrun.config import RunContext, Settings, load_settings, with_roles


def run_settings(runtime: Any, roles: dict[str, str] | None = None) -> Settings:
    """Settings from the run context (edges pass them), else the environment; then per-run role overrides."""
    context = getattr(runtime, "context", None)
    base = context.settings if isinstance(context, RunContext) and context.settings else load_settings()
    return with_roles(base, roles)


def progress(runtime: Any, step: str, message: str, **data: Any) -> None:
    """Emit a custom stream event; a no-op when nobody streams."""
    writer = getattr(runtime, "stream_writer", None)
    if writer is not None:
        writer({"step": step, "message": message, **data})


def sandbox_options(runtime: Any) -> dict[str, Any]:
    """Sandbox mode, network, the places to mask and where test groups are recorded, from the run's settings."""
    from speedrun.sandbox import group_records_dir

    settings = run_settings(runtime)
    return {
        "mode": settings.sandbox,
        "network": settings.sandbox_network,
        "mask": (settings.home,),
        "record_dir": group_records_dir(settings.home),
    }
