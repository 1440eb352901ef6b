"""Graph-building helpers: async nodes that also run under the sync `graph.invoke`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from langgraph._internal._runnable import RunnableCallable

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    # One long-lived loop for sync callers, so the gateway's per-loop HTTP client and budgets are reused.
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="speedrun-sync-bridge", daemon=True).start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine from sync code on the bridge loop, keeping the caller's context (LangGraph's config)."""
    loop = _background_loop()
    ctx = contextvars.copy_context()
    outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def settle(task: asyncio.Task) -> None:
        if task.cancelled():
            outcome.cancel()
        elif task.exception() is not None:
            outcome.set_exception(task.exception())
        else:
            outcome.set_result(task.result())

    loop.call_soon_threadsafe(lambda: loop.create_task(coro, context=ctx).add_done_callback(settle))
    return outcome.result()


def node(afunc: Callable[..., Coroutine[Any, Any, dict]]) -> RunnableCallable:
    """Wrap an async node so the graph works with both `ainvoke` and `invoke`."""

    @functools.wraps(afunc)
    def sync(*args: Any, **kwargs: Any) -> dict:
        return run_sync(afunc(*args, **kwargs))

    return RunnableCallable(sync, afunc, name=afunc.__name__)
