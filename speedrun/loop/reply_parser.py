"""Parse code files out of a model reply, streamed chunk by chunk or whole."""

from __future__ import annotations

import re

from speedrun.errors import FileProtocolError
from speedrun.state.records import GeneratedFile

__all__ = ["FileStreamParser", "parse_files"]

# --------------------------------------------------------------------------------------------------
# The rule for tagged files: a file starts after an opening <FILE path="..."> tag (anywhere in a line, in any
# case, split over lines, with attributes in any order, path quoted or not) and ends at the LAST </FILE> before
# the next opening tag or the end of the reply. So `END = "</FILE>"` inside code followed by the real closing
# tag stays in the file, while `x = 1</FILE><FILE path="b.py">` closes one file and opens the next. What
# follows that last </FILE> is prose (or a legacy "### FILE:" block). A file is therefore complete only when
# the next opening tag arrives or the reply ends; that is when it is emitted.
# --------------------------------------------------------------------------------------------------

# Byte-order marks and zero-width spaces: real replies carry them before tags and inside paths.
_INVISIBLE = "\ufeff\u200b"
_TAG_ATTRS_MAX = 1000  # attribute text longer than this is prose, not a tag; bounds how long a partial tag is held
_OPEN_RE = re.compile(rf"<[{_INVISIBLE}]{{0,4}}file(?=[\s/>{_INVISIBLE}])([^<>]{{0,{_TAG_ATTRS_MAX}}})>", re.IGNORECASE)
# What the end of a chunk looks like when an opening tag has begun but not yet ended.
_PARTIAL_OPEN_RE = re.compile(
    rf"<[{_INVISIBLE}]{{0,4}}(?:f(?:i(?:l(?:e(?:[\s/{_INVISIBLE}][^<>]*)?)?)?)?)?", re.IGNORECASE
)
_PARTIAL_MAX = 1 + 4 + 4 + _TAG_ATTRS_MAX + 1  # longest text a complete opening tag can span
_PATH_ATTR_RE = re.compile(rf"""(?:^|[\s/{_INVISIBLE}])path\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.IGNORECASE)
_CLOSE_RE = re.compile(rf"</[{_INVISIBLE}]{{0,4}}file\s*>", re.IGNORECASE)
_CLOSE_LINE_RE = re.compile(r"^\s*</\s*file\s*>\s*$", re.IGNORECASE)
# Legacy marker: "### FILE: path" (any heading level from ##, any case: models write "## File: x" too).
_MARKER_RE = re.compile(rf"^[\s{_INVISIBLE}]*#{{2,6}}[ \t]*FILE[ \t]*:[ \t]*(.*?)\s*$", re.IGNORECASE)
_FENCE_OPEN_RE = re.compile(r"^\s*(`{3,})")
_PLACEHOLDER = "TRIPLE_BACKTICK"
_MARKDOWN_SUFFIXES = (".md", ".markdown")

# Legacy ("### FILE:") states, used outside tagged blocks.
_IDLE = "idle"  # between files: prose, wrapping fences, blank lines
_PENDING = "pending"  # saw "### FILE: p", waiting for the first non-blank line to pick fenced or raw
_FENCED = "fenced"  # "### FILE: p" + ```lang ... ```
_RAW = "raw"  # "### FILE: p" with no fence; runs to the next marker, the next tag or the end of the reply


def _show(path: str) -> str:
    """A path as shown in a warning: quoted, escaped, bounded."""
    return repr(path[:200] + ("..." if len(path) > 200 else ""))


def _marker_path(raw: str) -> str:
    # Models often decorate the marker path: ### FILE: `src/x.py` or **src/x.py**.
    return _clean_path(raw.strip().strip("`*'\"").strip())


def _clean_path(raw: str) -> str:
    for ch in _INVISIBLE:
        raw = raw.replace(ch, "")
    return raw.strip()


def _tag_path(attrs: str) -> str | None:
    m = _PATH_ATTR_RE.search(attrs)
    if not m:
        return None
    return next(g for g in m.groups() if g is not None)


def _find_open(text: str, pos: int) -> tuple[re.Match[str], str] | None:
    """The first complete opening tag at or after pos that names a path, with that raw path."""
    m = _OPEN_RE.search(text, pos)
    while m:
        path = _tag_path(m.group(1))
        if path is not None:
            return m, path
        m = _OPEN_RE.search(text, m.start() + 1)
    return None


def _partial_start(text: str, pos: int) -> int:
    """Where an opening tag that has begun but not ended starts at the end of text (len(text) if none)."""
    lt = text.rfind("<", pos)
    if lt >= 0 and len(text) - lt <= _PARTIAL_MAX and _PARTIAL_OPEN_RE.fullmatch(text, lt):
        return lt
    return len(text)


def _first_last_nonblank(lines: list[str]) -> tuple[int, int] | None:
    idx = [i for i, line in enumerate(lines) if line.strip()]
    return (idx[0], idx[-1]) if idx else None


def _content(lines: list[str], *, unwrap: bool) -> str:
    if unwrap:
        span = _first_last_nonblank(lines)
        # A block wrapped in its own ``` fence; markdown files legitimately start and end with fences.
        if span and span[0] < span[1]:
            first, last = span
            if lines[first].lstrip().startswith("```") and lines[last].strip() == "```":
                lines = lines[first + 1 : last]
    content = "\n".join(lines).replace(_PLACEHOLDER, "```")
    if content and not content.endswith("\n"):
        content += "\n"
    return content


class FileStreamParser:
    """Incremental parser for files in a model reply; feed it chunks as they stream in."""

    def __init__(self) -> None:
        self._buf = ""  # text not consumed yet: a partial line, or the start of an unfinished opening tag
        self._tag_path: str | None = None  # path of the open tagged block, if any
        self._block: list[str] = []  # its raw text so far, </FILE> tags included
        self._state = _IDLE  # legacy format state, outside tagged blocks
        self._path: str | None = None
        self._lines: list[str] = []
        self._fence = ""
        self._seen: list[str] = []
        self._warnings: list[str] = []
        self._finished = False
        self._unfinished: str | None = None

    @property
    def open_path(self) -> str | None:
        """Path of the file being received now; after finish(), the file left unfinished (or None)."""
        if self._finished:
            return self._unfinished
        if self._tag_path is not None:
            return self._tag_path
        return self._path if self._state != _IDLE else None

    @property
    def seen_paths(self) -> list[str]:
        """Every path whose block started, in order (duplicates included)."""
        return list(self._seen)

    @property
    def warnings(self) -> list[str]:
        """Things the user should check, each naming its file: unclosed blocks, joined paths, kept </FILE> lines."""
        return list(self._warnings)

    def feed(self, text: str) -> list[GeneratedFile]:
        """Consume a chunk (any boundary, even mid-line or mid-tag); return the files it completed, in order."""
        if self._finished:
            raise FileProtocolError("feed() called after finish(); use a new FileStreamParser for a new reply")
        out: list[GeneratedFile] = []
        if text:
            self._buf += text
            self._pump(out, final=False)
        return out

    def finish(self, *, truncated: bool = False) -> list[GeneratedFile]:
        """End of reply: complete the last file; if the token limit cut the reply, drop it and report its path."""
        if self._finished:
            return []
        out: list[GeneratedFile] = []
        self._pump(out, final=True)
        if self._tag_path is not None:
            if truncated:
                # Even a </FILE> in it may be one inside code: the real end may never have been sent.
                self._unfinished = self._tag_path
                self._tag_path, self._block = None, []
            else:
                self._close_tagged(out, at_end=True)
        state, path = self._state, self._path
        if state != _IDLE and truncated:
            self._unfinished = path  # half-written: writing it would plant a broken file
        elif state in (_PENDING, _RAW):
            out.append(self._emit_legacy())  # a raw file has no closing line: the end of the reply is its end
        elif state == _FENCED:
            self._warnings.append(
                f"{_show(path or '')}: no closing ``` fence before the end of the reply; "
                "written up to there, check its end"
            )
            out.append(self._emit_legacy())
        self._state, self._path, self._lines = _IDLE, None, []
        self._finished = True
        return out

    # -- the scanner -------------------------------------------------------------------------------

    def _pump(self, out: list[GeneratedFile], *, final: bool) -> None:
        buf, pos = self._buf, 0
        while True:
            if self._tag_path is not None:
                # Inside a tagged block only the next opening tag matters; everything else is block text.
                found = _find_open(buf, pos)
                if found is None:
                    keep = len(buf) if final else _partial_start(buf, pos)
                    self._block.append(buf[pos:keep])
                    pos = keep
                    break
                m, raw_path = found
                self._block.append(buf[pos : m.start()])
                pos = m.end()
                self._close_tagged(out, at_end=False)
                self._open_tagged(raw_path, out)
                continue
            if self._state == _FENCED:
                # Inside a legacy fence an opening tag is file content: go line by line until the fence closes.
                nl = buf.find("\n", pos)
                if nl < 0:
                    if final and pos < len(buf):
                        self._line(buf[pos:], out)
                        pos = len(buf)
                    break
                self._line(buf[pos:nl], out)
                pos = nl + 1
                continue
            found = _find_open(buf, pos)
            stop = found[0].start() if found else (len(buf) if final else _partial_start(buf, pos))
            # Whole lines before the tag go to the legacy parser; stop early if one opens a fence.
            while self._state != _FENCED:
                nl = buf.find("\n", pos, stop)
                if nl < 0:
                    break
                self._line(buf[pos:nl], out)
                pos = nl + 1
            if self._state == _FENCED:
                continue
            if found:
                m, raw_path = found
                pos = m.end()  # text before the tag on its line is prose ("Here it is: <FILE ...>")
                self._open_tagged(raw_path, out)
                continue
            if final and pos < len(buf):
                self._line(buf[pos:], out)
                pos = len(buf)
                continue  # the last line may have opened a fence; the loop ends at the next pass
            break
        self._buf = buf[pos:]

    def _open_tagged(self, raw_path: str, out: list[GeneratedFile]) -> None:
        path = _clean_path(raw_path)
        if "\n" in path or "\r" in path:
            # A model that wraps a long attribute value; a file name never contains a line break.
            joined = "".join(part.strip() for part in path.splitlines())
            self._warnings.append(f"{_show(path)}: the path was split over lines; joined to {_show(joined)}")
            path = joined
        if "\ufffd" in path:
            # The gateway turns bytes that were no valid text (bad UTF-8, lone surrogates) into U+FFFD: say so.
            self._warnings.append(
                f"{_show(path)}: the path held characters that were not valid text; they were "
                "replaced by U+FFFD, so check the file name"
            )
        self._end_legacy_at_tag(path, out)
        self._tag_path, self._block = path, []
        self._seen.append(path)

    def _end_legacy_at_tag(self, tag_path: str, out: list[GeneratedFile]) -> None:
        state = self._state
        if state == _PENDING:
            pass  # "### FILE: p" right before a tag is a heading for that block, not a file of its own
        elif state == _RAW:
            if self._path == tag_path or not any(line.strip() for line in self._lines):
                pass  # a heading for this block, with prose under it: not a file
            else:
                out.append(self._emit_legacy())
        elif state == _FENCED:  # only reachable through the prose after a </FILE>: the tag was not shielded
            self._warnings.append(
                f"{_show(self._path or '')}: no closing ``` fence before the next <FILE> tag; "
                "written up to there, check its end"
            )
            out.append(self._emit_legacy())
        self._state, self._path, self._lines, self._fence = _IDLE, None, [], ""

    def _close_tagged(self, out: list[GeneratedFile], *, at_end: bool) -> None:
        path, text = self._tag_path or "", "".join(self._block)
        self._tag_path, self._block = None, []
        closes = list(_CLOSE_RE.finditer(text))
        last = closes[-1] if closes else None
        if last is None:
            body, tail = text, ""
            where = "the end of the reply" if at_end else "the next <FILE> tag"
            self._warnings.append(
                f"{_show(path)}: no closing </FILE> before {where}; written up to there, check its end"
            )
        else:
            body, tail = text[: last.start()], text[last.end() :]
        # The line break after the opening tag and the one before </FILE> belong to the tags.
        first_nl = body.find("\n")
        if not body[: first_nl if first_nl >= 0 else len(body)].strip():
            body = body[first_nl + 1 :] if first_nl >= 0 else ""
        last_nl = body.rfind("\n")
        if last_nl >= 0 and not body[last_nl + 1 :].strip():
            body = body[:last_nl]
        elif last_nl < 0 and not body.strip():
            body = ""
        lines = body.split("\n") if body else []
        if any(_CLOSE_LINE_RE.match(line) for line in lines):
            self._warnings.append(
                f"{_show(path)}: kept a line '</FILE>' as content because a later </FILE> "
                "closes the file (a file ends at the last </FILE> before the next <FILE> tag); "
                "check it"
            )
        out.append(
            GeneratedFile(path=path, content=_content(lines, unwrap=not path.lower().endswith(_MARKDOWN_SUFFIXES)))
        )
        # What follows the last </FILE> is prose, or legacy "### FILE:" blocks; it holds no opening tag.
        for line in tail.split("\n") if tail else []:
            self._line(line, out)

    # -- the legacy "### FILE:" formats, line by line ----------------------------------------------

    def _start(self, state: str, path: str) -> None:
        self._state, self._path, self._lines = state, path, []
        self._seen.append(path)

    def _line(self, line: str, out: list[GeneratedFile]) -> None:
        state = self._state
        if state == _FENCED:
            if line.strip() == self._fence:
                out.append(self._emit_legacy())
            else:
                self._lines.append(line)
            return
        marker = _MARKER_RE.match(line)
        if state == _RAW:
            if marker:
                out.append(self._emit_legacy())
                self._start(_PENDING, _marker_path(marker.group(1)))
            else:
                self._lines.append(line)
            return
        if state == _PENDING:
            if not line.strip():
                return  # blank lines between the marker and the fence (or raw content) are not content
            if marker:
                out.append(self._emit_legacy())  # marker right after marker: the first file is empty
                self._start(_PENDING, _marker_path(marker.group(1)))
                return
            fence = _FENCE_OPEN_RE.match(line)
            if fence:
                self._state, self._fence = _FENCED, fence.group(1)
            else:
                self._state = _RAW
                self._lines.append(line)
            return
        if marker:  # _IDLE: only a marker matters here; everything else is prose
            self._start(_PENDING, _marker_path(marker.group(1)))

    def _emit_legacy(self) -> GeneratedFile:
        path, lines = self._path or "", list(self._lines)
        if self._state in (_RAW, _PENDING):
            while lines and not lines[-1].strip():
                lines.pop()  # blank lines before the next marker separate files, they are not content
        self._state, self._path, self._lines, self._fence = _IDLE, None, [], ""
        return GeneratedFile(path=path, content=_content(lines, unwrap=False))


def parse_files(text: str, *, truncated: bool = False) -> tuple[list[GeneratedFile], str | None]:
    """Whole-reply parse; returns (complete files, path of the file the token limit cut off, or None)."""
    parser = FileStreamParser()
    files = parser.feed(text)
    files += parser.finish(truncated=truncated)
    return files, parser.open_path
