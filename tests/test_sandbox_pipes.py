"""run_tests releases its output pipe and process transport on every exit path: no fd leak, no ResourceWarning."""

from __future__ import annotations

import asyncio
import gc
import os
import warnings
from pathlib import Path

import pytest

from speedrun.sandbox import run_tests


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def _settled(before: set[str]) -> set[str]:
    """The fds opened since ``before`` that are still open after the child is reaped (up to 3 s)."""
    for _ in range(60):
        gc.collect()
        leaked = _open_fds() - before
        if not leaked:
            return leaked
        await asyncio.sleep(0.05)
    return leaked


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["exit", "timeout", "cancel"])
async def test_every_exit_path_releases_the_pipe(tmp_path: Path, how: str) -> None:
    # An escaped grandchild (setsid) holds the pipe's write end; the drain gives up and must still close it.
    command = {
        "exit": "echo out; echo err >&2; exit 3",
        "timeout": "setsid sleep 30 & sleep 30",
        "cancel": "echo started; sleep 30",
    }[how]
    await asyncio.sleep(0)
    before = _open_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        task = asyncio.ensure_future(run_tests(command, tmp_path, timeout_s=1 if how == "timeout" else 30))
        if how == "cancel":
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            report = await task
            if how == "exit":
                assert report.exit_code == 3 and "out" in report.output_tail and "err" in report.output_tail
            else:
                assert report.timed_out
        leaked = await _settled(before)
        gc.collect()
    assert leaked == set()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
