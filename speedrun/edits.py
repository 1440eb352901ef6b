"""Apply the fixer's search/replace edits exactly, and never let an "edit" regenerate a whole file."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path

from speedrun.errors import FileProtocolError
from speedrun.files import SafeWriter, normalize_relpath
from speedrun.state.edits import Edit, EditOutcome
from speedrun.state.records import GeneratedFile, WrittenFile

__all__ = ["apply_edits", "closest_match", "numbered"]

# A file with at most this many non-blank lines may be replaced wholesale: the share rule would be noise.
_SMALL_FILE_LINES = 8
_LINE_RE = re.compile(r"[^\n]*\n|[^\n]+")


# --------------------------------------------------------------------------------------------------
# Display helpers
# --------------------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """Lines without terminators ('\\n', and a '\\r' before it); a final newline adds no empty line."""
    if not text:
        return []
    parts = text.split("\n")
    if parts[-1] == "":
        parts.pop()
    return [p[:-1] if p.endswith("\r") else p for p in parts]


def numbered(text: str, start: int = 1, end: int | None = None) -> str:
    """Lines start..end (1-based, inclusive; end=None means the last line) of text, as '  12| line'."""
    lines = _lines(text)
    last = len(lines) if end is None else min(end, len(lines))
    first = max(start, 1)
    if first > last:
        return ""
    width = max(4, len(str(last)))
    out = []
    for n in range(first, last + 1):
        line = lines[n - 1]
        out.append(f"{n:>{width}}| {line}" if line else f"{n:>{width}}|")
    return "\n".join(out)


def closest_match(text: str, search: str, context: int = 2) -> tuple[int, str] | None:
    """Most similar window of text to search: (1-based first line of the window, numbered excerpt ±context).

    Windows are as many lines as the search block; similarity is difflib's ratio with trailing whitespace
    ignored. None when the file or the search text has no lines.
    """
    file_lines = [line.rstrip() for line in _lines(text)]
    wanted_lines = [line.rstrip() for line in _lines(search)]
    # Leading/trailing blank lines in the search carry no signal and would shift the window.
    while wanted_lines and not wanted_lines[0]:
        wanted_lines.pop(0)
    while wanted_lines and not wanted_lines[-1]:
        wanted_lines.pop()
    if not file_lines or not wanted_lines:
        return None
    size = min(len(wanted_lines), len(file_lines))
    wanted = "\n".join(wanted_lines)
    sm = SequenceMatcher(None, autojunk=False)
    sm.set_seq2(wanted)  # seq2 is the one SequenceMatcher preprocesses; reuse it across windows
    best, best_at = -1.0, 0
    for i in range(len(file_lines) - size + 1):
        sm.set_seq1("\n".join(file_lines[i : i + size]))
        # Cheap upper bounds first: most windows cannot beat the best so far.
        if sm.real_quick_ratio() <= best or sm.quick_ratio() <= best:
            continue
        score = sm.ratio()
        if score > best:
            best, best_at = score, i
    first = best_at + 1
    excerpt = numbered(text, max(1, first - context), first + size - 1 + context)
    return first, excerpt


# --------------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------------


def _occurrences(text: str, needle: str) -> list[int]:
    """Start offsets of needle in text, overlapping ones included (so 'aa' in 'aaa' is ambiguous)."""
    found, pos = [], text.find(needle)
    while pos != -1:
        found.append(pos)
        if len(found) > 50:  # enough to say "ambiguous"; don't scan a huge file for more
            break
        pos = text.find(needle, pos + 1)
    return found


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _normalize(text: str) -> str:
    """LF line endings and no trailing whitespace on any line."""
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n"))


def _tolerant_spans(text: str, search: str) -> list[tuple[int, int]]:
    """Spans of text that match search when line endings and trailing whitespace are ignored."""
    needle = _normalize(search)
    if not needle.strip():
        return []
    # Normalized text, with each original line's (original start, body length, normalized start, normalized length).
    norm_parts: list[str] = []
    table: list[tuple[int, int, int, int]] = []
    orig = norm = 0
    for m in _LINE_RE.finditer(text):
        piece = m.group(0)
        term = "\r\n" if piece.endswith("\r\n") else "\n" if piece.endswith("\n") else ""
        body = piece[: len(piece) - len(term)]
        stripped = body.rstrip()
        table.append((orig, len(body), norm, len(stripped)))
        norm_parts.append(stripped + ("\n" if term else ""))
        orig += len(piece)
        norm += len(stripped) + (1 if term else 0)
    haystack = "".join(norm_parts)

    def to_orig(p: int, *, is_end: bool) -> int:
        for o_start, body_len, n_start, n_len in table:
            if n_start <= p <= n_start + n_len:
                off = p - n_start
                # A match that ends where a line's visible text ends also takes that line's trailing blanks.
                if is_end and off == n_len:
                    return o_start + body_len
                return o_start + off
        return len(text)

    spans = []
    for p in _occurrences(haystack, needle):
        spans.append((to_orig(p, is_end=False), to_orig(p + len(needle), is_end=True)))
    return spans


def _non_blank(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip())


def _uses_crlf(text: str) -> bool:
    lf = text.count("\n")
    return lf > 0 and text.count("\r\n") * 2 > lf


def _match_line_ending(replace: str, crlf: bool) -> str:
    lf = replace.replace("\r\n", "\n")
    return lf.replace("\n", "\r\n") if crlf else lf


# --------------------------------------------------------------------------------------------------
# Applying
# --------------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    """One file's in-memory state across the edits of one apply_edits call."""

    rel: str
    original: str | None  # None: the file did not exist
    text: str
    applied: list[int] = field(default_factory=list)  # indexes into the outcomes list
    replaced: int = 0  # non-blank lines replaced so far; many small edits must not add up to a rewrite


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _load(root: Path, rel: str, max_file_bytes: int) -> str | None:
    """Current text of root/rel, None if it does not exist; FileProtocolError if it must not be touched."""
    target = root.joinpath(*rel.split("/"))
    real = Path(os.path.realpath(target))
    if not _inside(real, root):
        raise FileProtocolError(f"'{rel}' resolves to {real}, outside the workspace; refusing to edit it")
    if os.path.islink(target):
        raise FileProtocolError(f"'{rel}' is a symlink; refusing to edit through it")
    if not os.path.lexists(target):
        return None
    if os.path.isdir(target):
        raise FileProtocolError(f"'{rel}' is a directory, not a file")
    if not target.is_file():
        raise FileProtocolError(f"'{rel}' is not a regular file (device, FIFO or socket)")
    size = target.stat().st_size
    if size > max_file_bytes:
        raise FileProtocolError(f"'{rel}' is {size:,} bytes, over the {max_file_bytes:,}-byte cap; refusing to edit it")
    data = target.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OSError(f"'{rel}' is not UTF-8 text ({exc.reason} at byte {exc.start}); it cannot be edited") from exc


def apply_edits(
    root: Path, edits: list[Edit], *, max_file_bytes: int = 1_000_000, max_share: float = 0.6
) -> list[EditOutcome]:
    """Apply edits in order (later edits see earlier ones), then write each changed file once, safely.

    Returns one outcome per edit, in order. Nothing is written for an edit that is not 'applied'; if a
    file's write fails, every edit applied to it becomes 'error' with the writer's reason.
    """
    root = Path(root)
    writer = SafeWriter(root, max_file_bytes=max_file_bytes)
    real_root = root.resolve()
    outcomes: list[EditOutcome] = []
    pending: dict[str, _Pending] = {}

    for edit in edits:
        outcome = _apply_one(real_root, edit, pending, max_file_bytes, max_share)
        if outcome.status == "applied":
            pending[normalize_relpath(edit.path)].applied.append(len(outcomes))
        outcomes.append(outcome)

    for state in pending.values():
        if not state.applied or state.text == state.original:
            continue
        result = writer.write(GeneratedFile(path=state.rel, content=state.text))
        for i in state.applied:
            if isinstance(result, WrittenFile):
                outcomes[i].backup = result.backup
            else:
                outcomes[i].status = "error"
                outcomes[i].message = f"could not write {state.rel}: {result.error}"
    return outcomes


def _apply_one(
    root: Path, edit: Edit, pending: dict[str, _Pending], max_file_bytes: int, max_share: float
) -> EditOutcome:
    def out(status: str, message: str = "", closest: str | None = None) -> EditOutcome:
        return EditOutcome(edit=edit, status=status, message=message, closest=closest)

    try:
        rel = normalize_relpath(edit.path)
    except FileProtocolError as exc:
        return out("refused", f"unsafe path {edit.path!r}: {exc}")

    state = pending.get(rel)
    if state is None:
        try:
            current = _load(root, rel, max_file_bytes)
        except FileProtocolError as exc:
            return out("refused", str(exc))
        except OSError as exc:
            return out("error", str(exc) if not exc.strerror else f"could not read {rel}: {exc.strerror}")
        state = _Pending(rel=rel, original=current, text=current if current is not None else "")
        pending[rel] = state
    exists = state.original is not None or bool(state.applied)
    text, search = state.text, edit.search

    if search == "":
        if exists:
            return out(
                "refused",
                f"empty search text would replace the whole file {rel}; an empty search only creates a new file. "
                "Send edits whose search text is the exact lines to change.",
            )
        state.text = edit.replace
        return out("applied", f"created {rel}")
    if not exists:
        return out(
            "not_found",
            f"file does not exist: {rel}. To create it, send an edit with an empty search text and the whole "
            "content as replace; otherwise check the path.",
        )
    if not search.strip():
        return out("refused", "the search text is only whitespace, which cannot pick a place; copy the lines to change")
    if search == edit.replace:
        return out("refused", "search and replace are identical, so this edit changes nothing; drop it or fix replace")

    tolerant = False
    spans = [(p, p + len(search)) for p in _occurrences(text, search)]
    if not spans:
        spans, tolerant = _tolerant_spans(text, search), True
    if len(spans) > 1:
        where = ", ".join(str(_line_of(text, s)) for s, _ in spans[:20])
        more = "" if len(spans) <= 20 else ", ..."
        how = " (ignoring trailing whitespace)" if tolerant else ""
        return out(
            "ambiguous",
            f"the search text occurs {len(spans)} times in {rel}{how}, at lines {where}{more}; "
            "include more surrounding lines so it matches exactly one place",
        )
    if not spans:
        found = closest_match(text, search)
        if found is None:
            return out("not_found", f"the search text was not found in {rel} (the file is empty)")
        line, excerpt = found
        return out(
            "not_found",
            f"the search text was not found in {rel}; the most similar region starts at line {line} (shown numbered "
            "in 'closest'). Copy the text to change exactly from that excerpt, character for character with its "
            "indentation, without the 'NN| ' line-number prefixes.",
            excerpt,
        )

    start, end = spans[0]
    first_line = _line_of(text, start)
    last_line = _line_of(text, max(start, end - 1))
    file_lines = _lines(text)
    total = _non_blank(file_lines)
    covered = _non_blank(file_lines[first_line - 1 : last_line])
    if state.original is not None:  # judge the share against the file as it was before this batch
        total = max(total, _non_blank(_lines(state.original)))
    if total > _SMALL_FILE_LINES and state.replaced + covered > max_share * total:
        so_far = f", {state.replaced} already replaced by earlier edits" if state.replaced else ""
        return out(
            "refused",
            f"this edit would replace most of {rel} ({covered} of {total} lines{so_far}); we never regenerate a "
            "whole file: send smaller edits that change only the broken lines",
        )

    new_text = text[:start] + _match_line_ending(edit.replace, _uses_crlf(text)) + text[end:]
    if new_text == text:
        return out("refused", "this edit changes nothing in the file; drop it or fix replace")
    state.text = new_text
    state.replaced += covered
    how = " (matched ignoring trailing whitespace and line endings)" if tolerant else ""
    span = f"line {first_line}" if first_line == last_line else f"lines {first_line}-{last_line}"
    return out("applied", f"applied to {rel} at {span}{how}")
