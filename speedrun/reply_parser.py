"""Parse code files out of a model reply, streamed chunk by chunk or whole."""

from __future__ import annotations

import re

from speedrun.errors import FileProtocolError
from speedrun.state.records import GeneratedFile

__all__ = ["FileStreamParser", "parse_files"]

# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------

_CLOSE_TAG = "</FILE>"
# Extra attributes after path= are tolerated; anything after '>' on the same line is first content.
_OPEN_RE = re.compile(r"""^\s*<FILE\s+path\s*=\s*(["'])(.*?)\1[^>]*>(.*)$""")
_MARKER_RE = re.compile(r"^\s*###\s*FILE:\s*(.*?)\s*$")
_FENCE_OPEN_RE = re.compile(r"^\s*(`{3,})")
_PLACEHOLDER = "TRIPLE_BACKTICK"
_MARKDOWN_SUFFIXES = (".md", ".markdown")

_IDLE = "idle"  # between files: prose, wrapping fences, blank lines
_TAGGED = "tagged"  # inside <FILE path=...> ... </FILE>
_PENDING = "pending"  # saw "### FILE: p", waiting for the first non-blank line to pick fenced or raw
_FENCED = "fenced"  # "### FILE: p" + ```lang ... ```
_RAW = "raw"  # "### FILE: p" with no fence; runs to the next marker or the end of the reply


def _marker_path(raw: str) -> str:
    # Models often decorate the marker path: ### FILE: `src/x.py` or **src/x.py**.
    return raw.strip().strip("`*'\"").strip()


def _first_last_nonblank(lines: list[str]) -> tuple[int, int] | None:
    idx = [i for i, line in enumerate(lines) if line.strip()]
    return (idx[0], idx[-1]) if idx else None


class FileStreamParser:
    """Incremental parser for files in a model reply; feed it chunks as they stream in."""

    def __init__(self) -> None:
        self._buf = ""  # partial last line, not yet terminated by "\n"
        self._state = _IDLE
        self._path: str | None = None
        self._lines: list[str] = []
        self._fence = ""
        self._seen: list[str] = []
        self._finished = False
        self._unfinished: str | None = None

    @property
    def open_path(self) -> str | None:
        """Path of the file being received now; after finish(), the file left unfinished (or None)."""
        if self._finished:
            return self._unfinished
        return self._path if self._state != _IDLE else None

    @property
    def seen_paths(self) -> list[str]:
        """Every path whose block started, in order (duplicates included)."""
        return list(self._seen)

    def feed(self, text: str) -> list[GeneratedFile]:
        """Consume a chunk (any boundary, even mid-line); return the files this chunk completed, in order."""
        if self._finished:
            raise FileProtocolError("feed() called after finish(); use a new FileStreamParser for a new reply")
        out: list[GeneratedFile] = []
        if not text:
            return out
        self._buf += text
        if "\n" not in text:
            return out
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            self._line(line, out)
        return out

    def finish(self, *, truncated: bool = False) -> list[GeneratedFile]:
        """End of reply: flush the last line and a pending raw-format file; drop an open file if truncated."""
        if self._finished:
            return []
        out: list[GeneratedFile] = []
        if self._buf:
            line, self._buf = self._buf, ""
            self._line(line, out)
        state, path = self._state, self._path
        if state in (_PENDING, _RAW) and not truncated:
            # A raw file has no closing line: the end of a complete reply is its end.
            out.append(self._emit(_RAW))
        elif state == _TAGGED and not truncated and self._lenient_close():
            out.append(self._emit(_TAGGED))
        elif state != _IDLE:
            # Half-written (truncated) or never closed: writing it would plant a broken file.
            self._unfinished = path
        self._state, self._path, self._lines = _IDLE, None, []
        self._finished = True
        return out

    # -- internals ---------------------------------------------------------------------------------

    def _start(self, state: str, path: str) -> None:
        self._state, self._path, self._lines = state, path, []
        self._seen.append(path)

    def _line(self, line: str, out: list[GeneratedFile]) -> None:
        state = self._state
        if state == _TAGGED:
            if line.strip() == _CLOSE_TAG:
                out.append(self._emit(_TAGGED))
            else:
                self._lines.append(line)
            return
        if state == _FENCED:
            if line.strip() == self._fence:
                out.append(self._emit(_FENCED))
            else:
                self._lines.append(line)
            return
        marker = _MARKER_RE.match(line)
        if state == _RAW:
            if marker:
                out.append(self._emit(_RAW))
                self._start(_PENDING, _marker_path(marker.group(1)))
            else:
                self._lines.append(line)
            return
        if state == _PENDING:
            if not line.strip():
                return  # blank lines between the marker and the fence (or raw content) are not content
            if marker:
                out.append(self._emit(_RAW))  # marker right after marker: the first file is empty
                self._start(_PENDING, _marker_path(marker.group(1)))
                return
            fence = _FENCE_OPEN_RE.match(line)
            if fence:
                self._state, self._fence = _FENCED, fence.group(1)
            else:
                self._state = _RAW
                self._lines.append(line)
            return
        # _IDLE: only an opening tag or a marker matters; everything else is prose.
        opening = _OPEN_RE.match(line)
        if opening:
            self._start(_TAGGED, opening.group(2).strip())
            rest = opening.group(3)
            if rest.strip():
                if rest.rstrip().endswith(_CLOSE_TAG):  # one-line file: <FILE path="a">text</FILE>
                    self._lines.append(rest.rstrip()[: -len(_CLOSE_TAG)])
                    out.append(self._emit(_TAGGED))
                else:
                    self._lines.append(rest)
        elif marker:
            self._start(_PENDING, _marker_path(marker.group(1)))

    def _lenient_close(self) -> bool:
        # The reply ended with "...last line</FILE>": accept it, dropping the suffix and anything blank after.
        lines = self._lines
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines or not lines[-1].rstrip().endswith(_CLOSE_TAG):
            return False
        lines[-1] = lines[-1].rstrip()[: -len(_CLOSE_TAG)]
        return True

    def _emit(self, kind: str) -> GeneratedFile:
        path, lines = self._path or "", self._lines
        if kind == _TAGGED and not path.lower().endswith(_MARKDOWN_SUFFIXES):
            span = _first_last_nonblank(lines)
            # A block wrapped in its own ``` fence; markdown files legitimately start and end with fences.
            if span and span[0] < span[1]:
                first, last = span
                if lines[first].lstrip().startswith("```") and lines[last].strip() == "```":
                    lines = lines[first + 1 : last]
        elif kind == _RAW:
            lines = list(lines)
            while lines and not lines[-1].strip():
                lines.pop()  # blank lines before the next marker separate files, they are not content
        content = "\n".join(lines).replace(_PLACEHOLDER, "```")
        if content and not content.endswith("\n"):
            content += "\n"
        self._state, self._path, self._lines, self._fence = _IDLE, None, [], ""
        return GeneratedFile(path=path, content=content)


def parse_files(text: str, *, truncated: bool = False) -> tuple[list[GeneratedFile], str | None]:
    """Whole-reply parse; returns (complete files, path of the unfinished file or None)."""
    parser = FileStreamParser()
    files = parser.feed(text)
    files += parser.finish(truncated=truncated)
    return files, parser.open_path
