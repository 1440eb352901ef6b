"""The CLI's view of a run while it goes: its step, elapsed time, tokens so far, and a row per parallel runner."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from langchain_core.callbacks import UsageMetadataCallbackHandler

    from speedrun.runs import RunManager
    from speedrun.state.records import RunStatus

REFRESH_PER_SECOND = 4
LATEST_SHOWN = 120  # characters of the latest progress line under the table


class TokenMeter:
    """Tokens the model calls of this process used so far (LangChain's public usage callback counts them)."""

    def __init__(self, handler: UsageMetadataCallbackHandler | None = None) -> None:
        self.handler = handler

    def totals(self) -> tuple[int, int]:
        """(prompt, completion) tokens so far."""
        usage = list(self.handler.usage_metadata.values()) if self.handler else []
        return sum(u.get("input_tokens", 0) for u in usage), sum(u.get("output_tokens", 0) for u in usage)

    def line(self) -> str:
        """The totals in words, e.g. '1,234 tokens (1,000 prompt + 234 completion)'."""
        prompt, completion = self.totals()
        return f"{prompt + completion:,} tokens ({prompt:,} prompt + {completion:,} completion)"


@contextmanager
def metered() -> Iterator[TokenMeter]:
    """Count the tokens of every model call made inside; a run started inside is counted too, because its task
    copies the context it was created in."""
    from langchain_core.callbacks import get_usage_metadata_callback

    with get_usage_metadata_callback() as handler:
        yield TokenMeter(handler)


def terminal() -> TextIO | None:
    """Where a live view can be drawn: stderr when it is a terminal, else stdout when that is one, else nowhere."""
    return next((stream for stream in (sys.stderr, sys.stdout) if stream.isatty()), None)


class LiveView:
    """A run's progress until it ends or needs input: a table redrawn in place at a terminal (rich, imported only
    then), else one plain line per progress event on `plain`."""

    def __init__(self, runs: RunManager, run_id: str, meter: TokenMeter, *, parallel: bool, plain: TextIO) -> None:
        self.runs, self.run_id, self.meter, self.parallel, self.plain = runs, run_id, meter, parallel, plain
        self.started = time.monotonic()
        self.step, self.latest = "starting", ""

    def event(self, line: str) -> None:
        """Note a progress line: its step is the part before the first colon."""
        self.latest = line
        self.step = line.split(":", 1)[0].strip() or self.step

    def elapsed(self) -> str:
        """Seconds since the view started, e.g. '12.3 s'."""
        return f"{time.monotonic() - self.started:.1f} s"

    def __rich__(self) -> Any:
        """What rich draws on every refresh (so the clock moves even while no event arrives): the table, then the
        totals and the latest event as lines of their own, as wide as the terminal."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"run {self.run_id}", expand=False)
        if self.parallel:
            table.add_column("runner")
            table.add_column("step")
            for name, step in sorted(self.runs.runner_steps(self.run_id).items()):
                table.add_row(name, step)
        else:
            for column in ("step", "elapsed", "tokens"):
                table.add_column(column)
            prompt, completion = self.meter.totals()
            table.add_row(self.step, self.elapsed(), f"{prompt + completion:,}")
        lines = [Text(f"{self.elapsed()} elapsed · {self.meter.line()}", no_wrap=True, overflow="ellipsis")]
        if self.latest:
            lines.append(Text(self.latest[:LATEST_SHOWN], no_wrap=True, overflow="ellipsis"))
        return Group(table, *lines)

    async def watch(self) -> RunStatus:
        """Wait for the run to end (or need input) while showing it; its status."""
        print(f"run {self.run_id}", file=self.plain, flush=True)
        screen = terminal()
        if screen is None:
            return await self.runs.wait(self.run_id, 1e9, on_progress=self.line)
        from rich.console import Console
        from rich.live import Live

        with Live(self, console=Console(file=screen), refresh_per_second=REFRESH_PER_SECOND, transient=True):
            return await self.runs.wait(self.run_id, 1e9, on_progress=self.event)

    def line(self, line: str) -> None:
        """A progress event as a plain line (not at a terminal)."""
        self.event(line)
        print(f"  · {line}", file=self.plain, flush=True)
