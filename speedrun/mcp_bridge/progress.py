"""Progress notifications while an MCP tool waits: the run's own lines, and a heartbeat whenever it is quiet."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger("speedrun.mcp")
T = TypeVar("T")

#: Seconds of silence before a heartbeat goes out. Clients reset their idle timers on each notification; Claude
#: Code's is the tightest we know of, so this stays well under the 10 s the spec of issue 11 asks for.
HEARTBEAT_S = 5.0

Send = Callable[[float, str], Awaitable[None]]
Describe = Callable[[str], Awaitable[str]]


def elapsed_words(seconds: float) -> str:
    """'42 s' or '3 min 05 s': how long something has been going."""
    seconds = max(0, int(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


class Progress:
    """One tool call's progress notifications: a rising count, the latest step, and a heartbeat when quiet.

    `send(count, message)` delivers one notification; `describe(latest)` words a heartbeat from the latest line
    this call forwarded ('' when none yet). The interval is injectable so a test need not wait 5 s per beat.
    """

    def __init__(self, send: Send, describe: Describe, *, interval: float = HEARTBEAT_S) -> None:
        """Nothing is sent until a line arrives or the first interval passes in silence."""
        self.send, self.describe, self.interval = send, describe, interval
        self.count = 0
        self.latest = ""
        self._last_sent = time.monotonic()

    async def line(self, text: str) -> None:
        """Forward one progress line of the run; it restarts the heartbeat clock."""
        self.latest = text
        await self._emit(text)

    async def _emit(self, text: str) -> None:
        self.count += 1  # progress values must rise with every notification
        self._last_sent = time.monotonic()
        try:
            await self.send(self.count, text)
        except Exception:  # a client that went away must not fail the call
            log.debug("progress notification failed", exc_info=True)

    async def beat_while(self, work: Awaitable[T]) -> T:
        """Await `work`, sending a heartbeat whenever `interval` seconds pass without a notification."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                quiet = time.monotonic() - self._last_sent
                done, _ = await asyncio.wait({task}, timeout=max(0.0, self.interval - quiet))
                if done:
                    return task.result()
                if time.monotonic() - self._last_sent >= self.interval:
                    try:
                        text = await self.describe(self.latest)
                    except Exception:  # a heartbeat is still a heartbeat without its details
                        log.debug("describing a heartbeat failed", exc_info=True)
                        text = f"still working: {self.latest}".strip(": ")
                    await self._emit(text)
        finally:
            if not task.done():  # the call itself was cancelled: stop waiting for the work too
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
