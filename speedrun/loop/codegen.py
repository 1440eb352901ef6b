"""Stream a generator reply straight to disk, file by file, asking once more if the token limit cut it short."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speedrun import prompts
from speedrun.config import Role, Settings
from speedrun.errors import FileProtocolError, InputError
from speedrun.files import SafeWriter, normalize_relpath
from speedrun.llm import Messages, complete
from speedrun.loop.reply_parser import FileStreamParser
from speedrun.state import FileError, GeneratedFile, LedgerEntry, WriteReport, WrittenFile

TRUNCATED_ERROR = (
    "the reply hit the output token limit before this file was complete, and the follow-up request "
    "did not complete it, so it was not written; raise max_tokens (or SPEEDRUN_MAX_TOKENS) "
    "or split the task"
)

CONTEXT_FILE_CAP = 100_000  # characters per context file sent to the model
CONTEXT_TOTAL_CAP = 400_000
REPLY_QUOTE = 200  # characters of a reply without file blocks quoted in the error


@dataclass
class CodegenResult:
    """What a generate-and-write pass did, without any file content."""

    report: WriteReport
    entries: list[LedgerEntry] = field(default_factory=list)
    generation_time_ms: int = 0
    #: Things to check that did not stop a write, each naming its file (e.g. a block with no closing </FILE>).
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """ok: all written; partial: some refused; error: nothing written."""
        if not self.report.files_written:
            return "error"
        return "partial" if self.report.errors else "ok"


def read_context_files(paths: list[str], base: Path, allowed: list[Path]) -> str:
    """Render context files for the prompt; each must resolve inside an allowed root (no reading ~/.ssh).

    Blocking file I/O: async callers run it through asyncio.to_thread.
    """
    blocks: list[str] = []
    total = 0
    for raw in paths:
        path = (base / raw).resolve() if not Path(raw).is_absolute() else Path(raw).resolve()
        if not any(path.is_relative_to(root) for root in allowed):
            raise InputError(
                f"context file {raw!r} is outside the allowed roots "
                f"({', '.join(map(str, allowed))}); copy it into the project or allow its directory."
            )
        text = _read_head(raw, path, CONTEXT_FILE_CAP)
        if len(text) > CONTEXT_FILE_CAP:
            text = text[:CONTEXT_FILE_CAP] + "\n... (truncated)"
        total += len(text)
        if total > CONTEXT_TOTAL_CAP:
            raise InputError(f"context files exceed {CONTEXT_TOTAL_CAP} characters; pass fewer or smaller files.")
        shown = path.relative_to(base) if path.is_relative_to(base) else path.name
        blocks.append(prompts.CONTEXT_FILE.format(path=shown, content=text))
    return prompts.CONTEXT_INTRO + "\n".join(blocks) + "\n" if blocks else ""


def _read_head(raw: str, path: Path, chars: int) -> str:
    """The first chars+1 characters of a regular file (enough to know it was cut), never the whole of a huge one."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise hang here; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(f"context file {raw!r} does not exist (looked at {path}).") from None
    except OSError as exc:
        raise InputError(f"context file {raw!r} cannot be read ({exc.strerror or exc}; looked at {path}).") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise InputError(f"context file {raw!r} is a directory ({path}); name the files in it instead.")
        raise InputError(
            f"context file {raw!r} is not a regular file (a FIFO, socket or device; {path}); pass a regular file."
        )
    with open(fd, encoding="utf-8", errors="replace", closefd=True) as fh:
        return fh.read(chars + 1)  # a text read stops after chars+1 characters: a 2 GiB file is not read whole


class _Writes:
    """Writes finished files as the reply streams in, and remembers which ones were written."""

    def __init__(self, writer: SafeWriter, on_file: Callable[[WrittenFile | FileError], Awaitable[None]] | None):
        self.writer, self.on_file = writer, on_file
        self.written: set[str] = set()
        self.earlier: set[str] = set()  # finished before the follow-up request; a resend of one is not a duplicate

    async def emit(self, files: list[GeneratedFile]) -> None:
        for f in files:
            if _normalized(f.path) in self.earlier:
                continue  # the follow-up re-sent a file the first reply had finished; keep the first copy quietly
            outcome = await asyncio.to_thread(self.writer.write, f)
            if not isinstance(outcome, FileError):
                self.written.add(outcome.path)
            if self.on_file:
                await self.on_file(outcome)

    async def lost(self, cut_off: list[str]) -> list[FileError]:
        """Cut-off files the follow-up did not complete, or did not resend: errors, never a silent gap."""
        refused = {e.path for e in self.writer.report.errors}
        lost = [
            FileError(path=p, error=TRUNCATED_ERROR)
            for p in cut_off
            if _normalized(p) not in self.written and p not in refused
        ]
        for err in lost:
            if self.on_file:
                await self.on_file(err)
        return lost


def _no_file_blocks(reply: str) -> FileProtocolError:
    """Not an empty success: the caller must learn the model answered in some other shape, and see how."""
    start = reply.lstrip()[:REPLY_QUOTE]
    cut = " (cut)" if len(reply.lstrip()) > REPLY_QUOTE else ""
    began = f"the reply began {start!r}{cut}" if start else "the reply was empty"
    return FileProtocolError(
        'the model\'s reply contained no file blocks (<FILE path="..."> ... </FILE>), so nothing was written; '
        f"{began}. Ask again, or name the files to write more explicitly in the prompt."
    )


async def generate_and_write(
    settings: Settings,
    prompt: str,
    output_dir: Path,
    *,
    system_prompt: str | None = None,
    context: str = "",
    max_tokens: int | None = None,
    role: Role = "generator",
    on_file: Callable[[WrittenFile | FileError], Awaitable[None]] | None = None,
    allow_paths: Sequence[str] = (),
    confine_to: Path | None = None,
) -> CodegenResult:
    """Generate files for `prompt` and write each one under `output_dir` as soon as it is complete.

    allow_paths: protected places (CI workflows, virtualenvs, ...) the user explicitly lets the model write,
    on top of the settings' SPEEDRUN_ALLOW_PATHS. confine_to: the allowed root that protected places are judged
    against (an output_dir inside its .git/hooks is refused); output_dir itself when None. Raises FileProtocolError
    when the reply holds no file block.
    """
    if not prompt.strip():
        raise InputError("prompt is empty; describe the files to generate (ideally as a contract).")
    allowed = [*settings.allowed_paths(), *allow_paths]
    # Off the event loop: building a writer may touch the disk, and Studio (langgraph dev) refuses blocking calls.
    writer = await asyncio.to_thread(
        SafeWriter, output_dir, max_file_bytes=settings.max_file_bytes, allow_paths=allowed, confine_to=confine_to
    )
    system = prompts.CODEGEN_SYSTEM + (f"\n{system_prompt}" if system_prompt else "")
    messages: Messages = [("system", system), ("user", prompts.CODEGEN_USER.format(context=context, prompt=prompt))]
    result = CodegenResult(report=writer.report)
    started = time.monotonic()
    writes = _Writes(writer, on_file)
    cut_off: list[str] = []  # paths the token limit cut short, in either reply
    seen_blocks = False
    first_reply = ""
    for attempt in range(2):
        parser = FileStreamParser()

        async def sink(text: str, parser: FileStreamParser = parser) -> None:
            await writes.emit(parser.feed(text))

        reply = await complete(settings, role, messages, max_tokens=max_tokens, on_text=sink)
        result.entries.append(reply.entry)
        truncated = reply.finish_reason == "length"
        await writes.emit(parser.finish(truncated=truncated))
        result.warnings.extend(parser.warnings)
        seen_blocks = seen_blocks or bool(parser.seen_paths)
        if attempt == 0:
            first_reply = reply.text
        unfinished = parser.open_path if truncated else None
        if unfinished and unfinished not in cut_off:
            cut_off.append(unfinished)
        if not truncated:
            break
        if attempt == 0:
            writes.earlier.update(writes.written)
            follow_up = prompts.CONTINUE_TRUNCATED.format(
                done=", ".join(sorted(writes.written)) or "(none)", unfinished=unfinished or "(none)"
            )
            messages = [*messages, ("assistant", reply.text), ("user", follow_up)]
    if not seen_blocks:
        raise _no_file_blocks(first_reply)
    lost = await writes.lost(cut_off)
    result.generation_time_ms = int((time.monotonic() - started) * 1000)
    report = writer.report  # a fresh copy on every access: build the final one, don't append to it
    result.report = WriteReport(files_written=report.files_written, errors=[*report.errors, *lost])
    return result


def _normalized(path: str) -> str:
    try:
        return normalize_relpath(path)
    except FileProtocolError:
        return path
