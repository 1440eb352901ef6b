"""Graph-building helpers: async nodes that also run under the sync `graph.invoke`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from langchain_core.runnables import RunnableLambda
from langgraph.runtime import Runtime, get_runtime

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()

AsyncNode = Callable[[Any, Runtime[Any]], Coroutine[Any, Any, dict[str, Any]]]


def _background_loop() -> asyncio.AbstractEventLoop:
    # One long-lived loop for sync callers, so the gateway's per-loop HTTP client and budgets are reused.
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="speedrun-sync-bridge", daemon=True).start()
        return _loop


def run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine from sync code on the bridge loop; an interrupt of the caller (Ctrl-C) cancels it.

    `run_coroutine_threadsafe` starts the task in a copy of the caller's context (LangGraph's config).
    """
    future = asyncio.run_coroutine_threadsafe(coro, _background_loop())
    try:
        return future.result()
    except BaseException:
        # KeyboardInterrupt (or any other exit of the caller) must not leave the task running on in the bridge.
        future.cancel()
        raise


def node(afunc: AsyncNode) -> RunnableLambda[Any, dict[str, Any]]:
    """Wrap an async `node(state, runtime)` so the graph works with both `ainvoke` and `invoke`.

    A RunnableLambda gets no `runtime` argument injected, so the wrappers read it with `get_runtime()`.
    """

    def sync(state: Any) -> dict[str, Any]:
        return run_sync(afunc(state, get_runtime()))  # type: ignore[no-any-return]

    async def run_async(state: Any) -> dict[str, Any]:
        return await afunc(state, get_runtime())

    return RunnableLambda(sync, afunc=run_async, name=afunc.__name__)
