"""Small helpers every node shares: the run's settings, progress events, and the path check of runs no edge started."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from speedrun.config import RunContext, Settings, load_settings, resolve_output_dir, with_roles

Node = Callable[[Any, Any], Coroutine[Any, Any, dict[str, Any]]]


def run_settings(runtime: Any, roles: dict[str, str] | None = None) -> Settings:
    """The run's settings: the edge's (else the environment), the context's model choices on top, then `roles`.

    `roles` (the run's own input) wins over the context: it is the more specific of the two.
    """
    context = getattr(runtime, "context", None)
    if isinstance(context, RunContext):
        base = context.apply(context.settings or load_settings())
    else:
        base = load_settings()
    return with_roles(base, roles)


def confined(func: Node, field: str, *, home_too: bool = False) -> Node:
    """`func` as a node whose state's `field` path is checked first when no edge started the run.

    An edge (CLI, MCP) checks paths against its roots and passes its Settings in the context. A run without them
    (Studio, Python) gets MCP's rule here: a relative path resolves against SPEEDRUN_ROOTS (else the working
    directory), a path outside them is an InputError, and the resolved path goes into the state, so the result
    shows it. With `home_too`, SPEEDRUN_HOME counts as a root as well: the judge's worksheet goes there by default,
    and a showdown's judge step names a folder there.
    """

    async def wrapped(state: Any, runtime: Any) -> dict[str, Any]:
        context = getattr(runtime, "context", None)
        if isinstance(context, RunContext) and context.from_edge:
            return await func(state, runtime)
        given = getattr(state, field)
        if given is None:  # an optional place left to its default (e.g. the judge's worksheet under SPEEDRUN_HOME)
            return await func(state, runtime)
        settings = run_settings(runtime)

        def resolve() -> str:  # resolve() reads the disk: off the event loop
            roots = settings.write_roots() + ([settings.home.expanduser().resolve()] if home_too else [])
            return str(resolve_output_dir(given, roots, field)[0])

        resolved = await asyncio.to_thread(resolve)
        if resolved == given:
            return await func(state, runtime)
        out = await func(state.model_copy(update={field: resolved}), runtime)
        return {field: resolved, **out}

    wrapped.__name__ = wrapped.__qualname__ = func.__name__
    wrapped.__doc__ = func.__doc__
    return wrapped


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
