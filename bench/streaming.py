"""Benchmark: time from each file's closing tag leaving the scripted server to that file being on disk.

`generate_and_write_files` through a real MCP session to `speedrun mcp`; the scripted server streams a reply of 5
files at about Cerebras speed (20 characters every 2.5 ms, ~2,000 tokens/s) and records when each piece left it
(RecordedRequest.sent). A thread in this process polls the output directory every 0.5 ms; files are renamed into
place whole, so a path that exists is a finished file. Both clocks are time.monotonic() on one machine.
Run: uv run python -m bench streaming [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client

from bench.common import ROOT, Result, emit, median, server_env
from tests.fake_llm import FakeLLM, RecordedRequest, Reply

TARGET_MS = 20.0
FILES = 5
CLOSE = "</FILE>"


def reply_text(files: int) -> str:
    """A reply of `files` modules of ~40 lines each, the shape a contract prompt gets back."""
    body = "".join(f"def f{j}(a, b):\n    return a * {j} + b\n\n" for j in range(13))
    return "".join(f'<FILE path="pkg/mod{i}.py">\n{body}</FILE>\n' for i in range(files))


def tag_times(rec: RecordedRequest) -> list[float]:
    """When the piece completing each `</FILE>` left the server, in reply order."""
    text, ends = "", []
    for _, piece in rec.sent:
        text += piece
        ends.append(len(text))
    times, start = [], 0
    while (at := text.find(CLOSE, start)) >= 0:
        done = at + len(CLOSE)
        times.append(next(t for (t, _), end in zip(rec.sent, ends, strict=True) if end >= done))
        start = done
    return times


class Watcher(threading.Thread):
    """Polls for expected paths and notes when each appears (time.monotonic())."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(daemon=True)
        self.pending = list(paths)
        self.seen: dict[Path, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while self.pending and not self.stop.is_set():
            for path in list(self.pending):
                if os.path.exists(path):
                    self.seen[path] = time.monotonic()
                    self.pending.remove(path)
            time.sleep(0.0005)


async def measure(fake: FakeLLM, tmp: Path, rounds: int) -> list[float]:
    """Seconds from closing tag to file on disk, for every file of every round."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "speedrun", "mcp"], env=server_env(fake.base_url, tmp), cwd=str(ROOT)
    )
    lags: list[float] = []
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        for i in range(-1, rounds):  # round -1 warms up (imports, first connection) and is not counted
            out = tmp / "root" / f"out{i}"
            paths = [out / "pkg" / f"mod{k}.py" for k in range(FILES)]
            watcher = Watcher(paths)
            watcher.start()
            result = await session.call_tool("generate_and_write_files", {"prompt": "modules", "output_dir": str(out)})
            watcher.stop.set()
            watcher.join()
            assert not result.is_error, result.content
            assert not watcher.pending, f"not written: {watcher.pending}"
            if i >= 0:
                tags = tag_times(fake.chat_requests()[-1])
                lags += [watcher.seen[p] - t for p, t in zip(paths, tags, strict=True)]
    return lags


def main(argv: list[str] | None = None) -> list[Result]:
    """Stream the files, print the lags and the verdict on their median."""
    parser = argparse.ArgumentParser(prog="python -m bench streaming", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 replies instead of 8")
    rounds = 3 if parser.parse_args(argv).quick else 8
    with FakeLLM() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.default = Reply(content=reply_text(FILES), chunk_size=20, chunk_delay=0.0025)
        lags = asyncio.run(measure(fake, Path(tmp), rounds))
    ms = sorted(lag * 1000 for lag in lags)
    p90 = ms[int(0.9 * (len(ms) - 1))]
    print(
        f"Streaming to disk: {rounds} replies of {FILES} files through generate_and_write_files, "
        f"~{len(reply_text(FILES)) // FILES} characters each, 20 characters per 2.5 ms"
    )
    print(f"  closing tag → file on disk: median {median(ms):.1f} ms, p90 {p90:.1f} ms, max {ms[-1]:.1f} ms")
    return [
        emit(
            Result(
                name="streaming",
                title="Streaming: a file's closing tag leaving the server → the file on disk",
                measured=f"{median(ms):.1f} ms median (p90 {p90:.1f}, max {ms[-1]:.1f})",
                target=f"<= {TARGET_MS:.0f} ms",
                ok=median(ms) <= TARGET_MS,
            )
        )
    ]


if __name__ == "__main__":
    main()
