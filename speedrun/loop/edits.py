"""Apply the fixer's search/replace edits by whole lines, tolerantly; never let an "edit" regenerate a whole file."""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from math import gcd
from pathlib import Path

from speedrun.errors import FileProtocolError
from speedrun.files import SafeWriter, normalize_relpath
from speedrun.state.edits import Edit, EditOutcome, EditStatus
from speedrun.state.records import GeneratedFile, WrittenFile

__all__ = ["apply_edits", "closest_match", "numbered"]

# A file with at most this many non-blank lines may be replaced wholesale: the share rule would be noise.
_SMALL_FILE_LINES = 8
# Outcome messages and excerpts go back to a model and into results: keep them short (issue 7, section 4).
MAX_MESSAGE_CHARS = 300
MAX_CLOSEST_LINES = 10
_MAX_EXCERPT_LINE = 160
_MAX_PATH_SHOWN = 80
_MAX_MATCHES = 50  # enough to say "ambiguous" and where; don't scan a huge file for more
# Similarity search: compare every window only while that stays cheap; otherwise the best-voted candidates.
_FULL_SCAN_LINES = 40_000
_CANDIDATES = 200
_COMMON_WORD = 200
_WORD = re.compile(r"\w+")
_LINE_RE = re.compile(r"[^\n]*\n|[^\n]+")
# The fixer is shown excerpts as '  12| code'; models sometimes copy that prefix into the search text.
_NUMBER_PREFIX = re.compile(r"^ *\d+\|(?: |$)")


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


def _closest(file_lines: list[str], wanted_lines: list[str]) -> tuple[int, int] | None:
    """(0-based start, size) of the window of file_lines most similar to wanted_lines (trailing blanks ignored)."""
    file_lines = [line.rstrip() for line in file_lines]
    wanted_lines = [line.rstrip() for line in wanted_lines]
    # Leading/trailing blank lines in the search carry no signal and would shift the window.
    while wanted_lines and not wanted_lines[0]:
        wanted_lines.pop(0)
    while wanted_lines and not wanted_lines[-1]:
        wanted_lines.pop()
    if not file_lines or not wanted_lines:
        return None
    size = min(len(wanted_lines), len(file_lines))
    starts: Iterable[int] = range(len(file_lines) - size + 1)
    if len(file_lines) * size > _FULL_SCAN_LINES:  # difflib on every window of a big file takes minutes
        starts = _likely_starts(file_lines, wanted_lines, size)
    sm = SequenceMatcher(None, autojunk=False)
    sm.set_seq2("\n".join(wanted_lines))  # seq2 is the one SequenceMatcher preprocesses; reuse it across windows
    best, best_at = -1.0, 0
    for i in starts:
        sm.set_seq1("\n".join(file_lines[i : i + size]))
        # Cheap upper bounds first: most windows cannot beat the best so far.
        if sm.real_quick_ratio() <= best or sm.quick_ratio() <= best:
            continue
        score = sm.ratio()
        if score > best:
            best, best_at = score, i
    return best_at, size


def _likely_starts(file_lines: list[str], wanted_lines: list[str], size: int) -> list[int]:
    """Window starts that share the most (not too common) words with the search, aligned line by line."""
    where: dict[str, list[int]] = defaultdict(list)
    for p, line in enumerate(file_lines):
        for word in set(_WORD.findall(line)):
            where[word].append(p)
    last = len(file_lines) - size
    votes: Counter[int] = Counter()
    for k, line in enumerate(wanted_lines):
        for word in set(_WORD.findall(line)):
            hits = where.get(word, ())
            if len(hits) <= _COMMON_WORD:  # a word on every other line locates nothing
                votes.update(p - k for p in hits if 0 <= p - k <= last)
    if not votes:  # nothing distinctive: look at evenly spread windows rather than none
        return list(range(0, last + 1, max(1, (last + 1) // _CANDIDATES)))
    return sorted(start for start, _ in votes.most_common(_CANDIDATES))


def closest_match(text: str, search: str, context: int = 2) -> tuple[int, str] | None:
    """Most similar window of text to search: (1-based first line of the window, numbered excerpt ±context).

    Windows are as many lines as the search block; similarity is difflib's ratio with trailing whitespace
    ignored. None when the file or the search text has no lines.
    """
    found = _closest(_lines(text), _lines(search.replace("\r\n", "\n")))
    if found is None:
        return None
    start, size = found
    return start + 1, numbered(text, max(1, start + 1 - context), start + size + context)


def _excerpt(text: str, first: int, last: int, context: int = 2) -> str:
    """Numbered lines first-context..last+context, at most MAX_CLOSEST_LINES of them, long lines cut."""
    start = max(1, first - context)
    end = min(last + context, start + MAX_CLOSEST_LINES - 1)
    rows = numbered(text, start, end).split("\n")
    return "\n".join(r if len(r) <= _MAX_EXCERPT_LINE else r[: _MAX_EXCERPT_LINE - 3] + "..." for r in rows)


def _cap(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _show(path: str) -> str:
    """A path as echoed in a message: bounded, so a huge bad path cannot flood the result."""
    return path if len(path) <= _MAX_PATH_SHOWN else path[: _MAX_PATH_SHOWN - 3] + "..."


# --------------------------------------------------------------------------------------------------
# Lines and indentation
# --------------------------------------------------------------------------------------------------


def _split(text: str) -> tuple[list[str], list[str]]:
    """A file's lines as (bodies, terminators); a terminator is '\\n', '\\r\\n' or '' (only on the last line)."""
    bodies, terms = [], []
    for m in _LINE_RE.finditer(text):
        piece = m.group(0)
        term = "\r\n" if piece.endswith("\r\n") else "\n" if piece.endswith("\n") else ""
        bodies.append(piece[: len(piece) - len(term)])
        terms.append(term)
    return bodies, terms


def _block(text: str) -> list[str]:
    """A search or replace text as lines; its final newline (present or not) makes no difference."""
    if not text:
        return []
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _blank(line: str) -> bool:
    return not line.strip()


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _col(indent: str, tab: int) -> int:
    """Display width of an indentation, tabs advancing to the next multiple of tab."""
    col = 0
    for ch in indent:
        col = (col // tab + 1) * tab if ch == "\t" else col + 1
    return col


def _make_indent(col: int, tabs: bool, tab: int) -> str:
    return "\t" * (col // tab) + " " * (col % tab) if tabs else " " * col


def _space_unit(lines: list[str]) -> int | None:
    """The indentation step of space-indented lines (gcd of their widths), if it looks like one (2..8)."""
    unit = 0
    for line in lines:
        ind = _indent(line)
        if ind and "\t" not in ind and not _blank(line):
            unit = gcd(unit, len(ind))
    return unit if 2 <= unit <= 8 else None


# --------------------------------------------------------------------------------------------------
# Matching: whole lines only, strictest rule first
# --------------------------------------------------------------------------------------------------

_EXACT, _TRAILING, _INDENT = "exact", "trailing whitespace", "indentation"


@dataclass
class _Match:
    start: int  # 0-based index of the first matched file line
    size: int
    tier: str
    reindent: Callable[[list[str]], list[str]] | None = None  # maps the replace lines onto the file's indentation


def _key(line: str, tier: str) -> str:
    if tier == _EXACT:
        return line
    if tier == _TRAILING:
        return line.rstrip()
    return line.rstrip().lstrip(" \t")


def _find(bodies: list[str], search: list[str], tier: str, tab_widths: list[int]) -> list[_Match]:
    """Every place where the search lines equal whole file lines under the tier's rule (overlaps included)."""
    keys = [_key(b, tier) for b in bodies]
    wanted = [_key(s, tier) for s in search]
    n = len(wanted)
    found: list[_Match] = []
    for i in range(len(keys) - n + 1):
        if keys[i] != wanted[0] or keys[i : i + n] != wanted:
            continue
        if tier != _INDENT:
            found.append(_Match(i, n, tier))
        else:
            reindent = _indent_map(bodies[i : i + n], search, bodies, tab_widths)
            if reindent is None:  # same text, but the indentation is not shifted uniformly: not this place
                continue
            found.append(_Match(i, n, tier, reindent))
        if len(found) > _MAX_MATCHES:
            break
    return found


def _indent_map(
    window: list[str], search: list[str], bodies: list[str], tab_widths: list[int]
) -> Callable[[list[str]], list[str]] | None:
    """If window is search shifted by one uniform indentation, a function re-indenting replace lines likewise."""
    pairs = [(w, s) for w, s in zip(window, search, strict=True) if not _blank(w)]
    for tab in tab_widths:
        deltas = {_col(_indent(w), tab) - _col(_indent(s), tab) for w, s in pairs}
        if len(deltas) == 1:
            break
    else:
        return None
    delta = deltas.pop()
    tabs = _uses_tabs(window, bodies)  # None: the file has no indentation to copy; keep the replace's own
    first_file = _col(_indent(pairs[0][0]), tab)
    first_search = _col(_indent(pairs[0][1]), tab)

    def reindent(replace: list[str]) -> list[str]:
        body = [r for r in replace if not _blank(r)]
        shift = delta
        # A model that got the search's indentation wrong sometimes wrote the replace at the file's real
        # indentation: its first line then sits exactly where the matched text starts. Don't shift it twice.
        if body and first_search != first_file and _col(_indent(body[0]), tab) == first_file:
            shift = 0
        out = []
        for r in replace:
            if _blank(r):
                out.append("")
            else:
                col = max(0, _col(_indent(r), tab) + shift)
                use_tabs = tabs if tabs is not None else "\t" in _indent(r)
                out.append(_make_indent(col, use_tabs, tab) + r.lstrip(" \t"))
        return out

    return reindent


def _uses_tabs(window: list[str], bodies: list[str]) -> bool | None:
    """Whether new indentation should be tabs: as in the matched lines, else as in most of the file."""
    for sample in (window, bodies[:2000]):
        indents = [_indent(line) for line in sample if _indent(line) and not _blank(line)]
        if indents:
            return sum(ind.startswith("\t") for ind in indents) * 2 > len(indents)
    return None


@dataclass
class _Variant:
    """One reading of the edit: the search and replace lines, and what was forgiven to get them."""

    search: list[str]
    replace: list[str]
    note: str = ""


def _strip_blank_lines(lines: list[str]) -> list[str]:
    start = next((i for i, line in enumerate(lines) if not _blank(line)), len(lines))
    end = len(lines) - next((i for i, line in enumerate(reversed(lines)) if not _blank(line)), len(lines))
    return lines[start:end] if start < end else []


def _trim_blank(v: _Variant) -> _Variant:
    """Drop blank lines around the search, and as many around the replace (models add them in pairs)."""
    s, r = v.search, v.replace
    lead = next((i for i, line in enumerate(s) if not _blank(line)), len(s))
    trail = next((i for i, line in enumerate(reversed(s)) if not _blank(line)), 0)
    if not lead and not trail:
        return v
    r_lead = min(lead, next((i for i, line in enumerate(r) if not _blank(line)), len(r)))
    r = r[r_lead:]
    r_trail = min(trail, next((i for i, line in enumerate(reversed(r)) if not _blank(line)), len(r)))
    return _Variant(s[lead : len(s) - trail], r[: len(r) - r_trail], _join(v.note, "blank lines around the search"))


def _unfence(v: _Variant) -> _Variant:
    def strip(lines: list[str]) -> list[str]:
        if len(lines) >= 2 and lines[0].lstrip().startswith("```") and lines[-1].strip() == "```":
            return lines[1:-1]
        return lines

    s = strip(v.search)
    return v if s == v.search else _Variant(s, strip(v.replace), _join(v.note, "``` fences"))


def _unnumber(v: _Variant) -> _Variant:
    def strip(lines: list[str]) -> list[str]:
        if lines and all(_NUMBER_PREFIX.match(line) for line in lines if line):
            return [_NUMBER_PREFIX.sub("", line) for line in lines]
        return lines

    s = strip(v.search)
    return v if s == v.search else _Variant(s, strip(v.replace), _join(v.note, "'NN| ' line-number prefixes"))


def _join(a: str, b: str) -> str:
    return f"{a}, {b}" if a else b


def _variants(search: list[str], replace: list[str]) -> list[_Variant]:
    """The edit as written, then with the noise models add around it removed; each one tried in order."""
    out: list[_Variant] = []
    v = _Variant(search, replace)
    for step in (None, _trim_blank, _unfence, _trim_blank, _unnumber, _trim_blank):
        v = step(v) if step else v
        if v.search and all(v.search != seen.search for seen in out):
            out.append(v)
    return out


def _tab_widths(bodies: list[str], variants: list[_Variant]) -> list[int]:
    """Tab widths to try when tabs meet spaces: the space side's own step first, then the usual ones."""
    guesses = [_space_unit(v.search + v.replace) for v in variants[:1]] + [_space_unit(bodies[:2000])]
    out: list[int] = []
    for w in [*guesses, 4, 8, 2]:
        if w and w not in out:
            out.append(w)
    return out


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
        raise FileProtocolError(f"'{_show(rel)}' resolves outside the workspace; refusing to edit it")
    if os.path.islink(target):
        raise FileProtocolError(f"'{_show(rel)}' is a symlink; refusing to edit through it")
    if not os.path.lexists(target):
        return None
    if os.path.isdir(target):
        raise FileProtocolError(f"'{_show(rel)}' is a directory, not a file")
    if not target.is_file():
        raise FileProtocolError(f"'{_show(rel)}' is not a regular file (device, FIFO or socket)")
    size = target.stat().st_size
    if size > max_file_bytes:
        raise FileProtocolError(
            f"'{_show(rel)}' is {size:,} bytes, over the {max_file_bytes:,}-byte cap; refusing to edit it"
        )
    data = target.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OSError(
            f"'{_show(rel)}' is not UTF-8 text ({exc.reason} at byte {exc.start}); it cannot be edited"
        ) from exc


def apply_edits(
    root: Path,
    edits: list[Edit],
    *,
    max_file_bytes: int = 1_000_000,
    max_share: float = 0.6,
    allow_paths: Sequence[str] = (),
) -> list[EditOutcome]:
    """Apply edits in order (later edits see earlier ones), then write each changed file once, safely.

    Returns one outcome per edit, in order. Nothing is written for an edit that is not 'applied'; if a
    file's write fails, every edit applied to it becomes 'error' with the writer's reason. `allow_paths`: the
    protected places the user let the run write (the same list the generator's writes obeyed). Blocking: call
    it from async code through asyncio.to_thread.
    """
    root = Path(root)
    writer = SafeWriter(root, max_file_bytes=max_file_bytes, allow_paths=allow_paths)
    real_root = root.resolve()
    outcomes: list[EditOutcome] = []
    pending: dict[str, _Pending] = {}

    for edit in edits:
        outcome = _apply_one(real_root, edit, pending, max_file_bytes, max_share, allow_paths)
        if outcome.status == "applied":
            pending[normalize_relpath(edit.path, allow_paths)].applied.append(len(outcomes))
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
                outcomes[i].message = _cap(f"could not write {_show(state.rel)}: {result.error}")
    return outcomes


def _apply_one(
    root: Path,
    edit: Edit,
    pending: dict[str, _Pending],
    max_file_bytes: int,
    max_share: float,
    allow_paths: Sequence[str],
) -> EditOutcome:
    """Apply one edit to the batch's pending text of its file; the outcome says what happened and why."""

    def out(status: EditStatus, message: str = "", closest: str | None = None) -> EditOutcome:
        return EditOutcome(edit=edit, status=status, message=_cap(message), closest=closest)

    try:
        rel = normalize_relpath(edit.path, allow_paths)
    except FileProtocolError as exc:
        return out("refused", f"unsafe path {_show(edit.path)!r}: {exc}")
    shown = _show(rel)
    state = pending.get(rel)
    if state is None:
        loaded = _load_pending(root, rel, max_file_bytes, out)
        if isinstance(loaded, EditOutcome):
            return loaded
        state = pending[rel] = loaded
    exists = state.original is not None or bool(state.applied)
    text = state.text
    search, replace = _block(edit.search), _block(edit.replace)
    if not edit.search.strip():
        return _empty_search(edit, state, exists, shown, out)
    bodies, terms = _split(text)
    hopeless = _hopeless(exists, search, replace, bodies, shown)
    if hopeless:
        return out(*hopeless)

    variants = _variants(search, replace)
    tabs = _tab_widths(bodies, variants)
    variant, matches = _locate(bodies, variants, tabs)

    if len(matches) > 1:
        return out("ambiguous", _ambiguity(matches, shown))
    if not matches:
        return _not_found(out, shown, text, bodies, search, variants, tabs)

    [match] = matches
    first_line, last_line = match.start + 1, match.start + match.size
    covered = _non_blank(bodies[match.start : match.start + match.size])
    too_much = _share_refusal(state, bodies, covered, max_share, shown)
    if too_much:
        return out("refused", too_much)

    new_lines = variant.replace if match.reindent is None else match.reindent(variant.replace)
    new_text = _splice(bodies, terms, match, new_lines, crlf=_uses_crlf(text))
    if new_text == text:
        return out("refused", "this edit changes nothing in the file; drop it or fix replace")
    state.text = new_text
    state.replaced += covered
    span = f"line {first_line}" if first_line == last_line else f"lines {first_line}-{last_line}"
    done = out("applied", f"applied to {shown} at {span}{_forgiven(match, variant)}")
    # What really changed, which can differ from the edit's text (a forgiven blank line, an absent final newline).
    done.lines_removed, done.lines_added = match.size, len(new_lines)
    return done


def _hopeless(
    exists: bool, search: list[str], replace: list[str], bodies: list[str], shown: str
) -> tuple[EditStatus, str] | None:
    """Why an edit with search text cannot apply before any search is made (no file, no change, empty file)."""
    if not exists:
        return (
            "not_found",
            f"file does not exist: {shown}. To create it, send an edit with an empty search text and the whole "
            "content as replace; otherwise check the path.",
        )
    if search == replace:
        return "refused", "search and replace are identical, so this edit changes nothing; drop it or fix replace"
    if not bodies:
        return (
            "not_found",
            f"{shown} is empty, so the search text cannot be in it; to fill it, send an "
            "edit with an empty search text and the content as replace",
        )
    return None


def _ambiguity(matches: list[_Match], shown: str) -> str:
    """Where a search text that matches several places occurs, so the fixer can widen it to one."""
    where = ", ".join(str(m.start + 1) for m in matches[:10]) + ("" if len(matches) <= 10 else ", ...")
    count = f"{len(matches)}" if len(matches) <= _MAX_MATCHES else f"over {_MAX_MATCHES}"
    how = "" if matches[0].tier == _EXACT else f" (ignoring {matches[0].tier})"
    return (
        f"the search text occurs {count} times in {shown}{how}, at lines {where}; "
        "include more surrounding lines so it matches exactly one place"
    )


def _forgiven(match: _Match, variant: _Variant) -> str:
    """What the match had to overlook, said in the outcome message ('' for an exact match)."""
    forgiven = [] if match.tier == _EXACT else [match.tier]
    if variant.note:
        forgiven.append(variant.note)
    how = f" (matched ignoring {', '.join(forgiven)})" if forgiven else ""
    if match.tier == _INDENT:
        how += "; replacement re-indented to the file's indentation"
    return how


def _load_pending(root: Path, rel: str, max_file_bytes: int, out: Callable[..., EditOutcome]) -> _Pending | EditOutcome:
    """The file's state before this batch's first edit to it, or the outcome that refuses the edit."""
    try:
        current = _load(root, rel, max_file_bytes)
    except FileProtocolError as exc:
        return out("refused", str(exc))
    except OSError as exc:
        return out("error", str(exc) if not exc.strerror else f"could not read {_show(rel)}: {exc.strerror}")
    return _Pending(rel=rel, original=current, text=current if current is not None else "")


def _empty_search(
    edit: Edit, state: _Pending, exists: bool, shown: str, out: Callable[..., EditOutcome]
) -> EditOutcome:
    """An edit without search text: it creates a new file or fills an empty one, and never rewrites a whole file."""
    if not exists:
        state.text = edit.replace
        created = out("applied", f"created {shown}")
        created.lines_added = len(_lines(edit.replace))
        return created
    if not state.text.strip():  # an empty (or blank) file has nothing a whole-file rewrite could lose
        filled = out("applied", f"filled the empty file {shown}")
        filled.lines_removed, filled.lines_added = len(_lines(state.text)), len(_lines(edit.replace))
        state.text = edit.replace
        return filled
    if edit.search:
        return out("refused", "the search text is only whitespace, which cannot pick a place; copy the lines to change")
    return out(
        "refused",
        f"empty search text would replace the whole file {shown}; an empty search only creates a new file "
        "or fills an empty one. Send edits whose search text is the exact lines to change.",
    )


def _locate(bodies: list[str], variants: list[_Variant], tabs: list[int]) -> tuple[_Variant, list[_Match]]:
    """The first variant that matches, at the strictest tier that finds it (exact, then trailing, then indent)."""
    for variant in variants:
        for tier in (_EXACT, _TRAILING, _INDENT):
            matches = _find(bodies, variant.search, tier, tabs)
            if matches:
                return variant, matches
    return variants[-1], []


def _share_refusal(state: _Pending, bodies: list[str], covered: int, max_share: float, shown: str) -> str | None:
    """Why an edit is refused for replacing most of the file (counting this batch's earlier edits), or None."""
    total = _non_blank(bodies)
    if state.original is not None:  # judge the share against the file as it was before this batch
        total = max(total, _non_blank(_lines(state.original)))
    if total > _SMALL_FILE_LINES and state.replaced + covered > max_share * total:
        so_far = f", {state.replaced} already replaced by earlier edits" if state.replaced else ""
        return (
            f"this edit would replace most of {shown} ({covered} of {total} lines{so_far}); we never regenerate a "
            "whole file: send smaller edits that change only the broken lines"
        )
    return None


def _splice(bodies: list[str], terms: list[str], match: _Match, new_lines: list[str], *, crlf: bool) -> str:
    """The file with the matched lines replaced by new_lines; line endings and final newline as the file has them."""
    nl = "\r\n" if crlf else "\n"
    end = match.start + match.size
    out_bodies = bodies[: match.start] + new_lines + bodies[end:]
    out_terms = terms[: match.start] + [nl] * len(new_lines) + terms[end:]
    if out_terms and not terms[-1] and out_bodies[-1]:
        # A file without a final newline keeps it that way, whichever lines the edit touched (a blank last
        # line needs its newline to exist at all).
        out_terms[-1] = ""
    return "".join(b + t for b, t in zip(out_bodies, out_terms, strict=True))


def _not_found(
    out: Callable[..., EditOutcome],
    shown: str,
    text: str,
    bodies: list[str],
    search: list[str],
    variants: list[_Variant],
    tabs: list[int],
) -> EditOutcome:
    """Explain a search that matches no whole lines as precisely as the file allows.

    First: the replacement is already there (and the search is not), so the edit was most likely applied before;
    only when the replace adds or changes a line, since a pure deletion's leftover lines prove nothing."""
    for v in variants:
        body = _strip_blank_lines(v.replace)
        if {b.strip() for b in body} - {s.strip() for s in v.search}:
            for tier in (_EXACT, _TRAILING, _INDENT):
                found = _find(bodies, body, tier, tabs)
                if found:
                    line = found[0].start + 1
                    return out(
                        "already_applied",
                        f"already applied: the replace text is already in {shown} at line "
                        f"{line} and the search text is not; drop this edit",
                        _excerpt(text, line, line + len(body) - 1),
                    )

    wanted = variants[-1].search if variants else search
    near = _whitespace_only(bodies, wanted)
    if near is not None:
        first, last, kinds = near
        span = f"line {first}" if first == last else f"lines {first}-{last}"
        return out(
            "not_found",
            f"the search text was not found in {shown}; {span} differ from it only in whitespace ({kinds}). "
            "Copy them exactly from 'closest', with their indentation, without the 'NN| ' prefixes.",
            _excerpt(text, first, last),
        )

    fragment = "\n".join(wanted).strip()
    flat = "\n".join(bodies)
    pos = flat.find(fragment) if fragment else -1
    if pos != -1:
        first = flat.count("\n", 0, pos) + 1
        last = first + fragment.count("\n")
        span = f"line {first}" if first == last else f"lines {first}-{last}"
        return out(
            "not_found",
            f"the search text matches only part of {span} in {shown}; search and replace must be whole lines "
            "(a part of a line is never edited). Copy the whole line(s) from 'closest'.",
            _excerpt(text, first, last),
        )

    closest = _closest(bodies, wanted)
    assert closest is not None  # bodies and wanted are both non-empty here
    start, size = closest
    return out(
        "not_found",
        f"the search text was not found in {shown}; the most similar region starts at line {start + 1} (shown "
        "numbered in 'closest'). Copy the text to change exactly from that excerpt, character for character with "
        "its indentation, without the 'NN| ' line-number prefixes.",
        _excerpt(text, start + 1, start + size),
    )


def _whitespace_only(bodies: list[str], search: list[str]) -> tuple[int, int, str] | None:
    """(first line, last line, which whitespace) of a file region equal to search once all whitespace is ignored."""

    def squeeze(line: str) -> str:
        return "".join(line.split())

    wanted = [squeeze(s) for s in search if not _blank(s)]
    if not wanted:
        return None
    rows = [(i, squeeze(b)) for i, b in enumerate(bodies) if not _blank(b)]
    keys = [k for _, k in rows]
    n = len(wanted)
    for j in range(len(keys) - n + 1):
        if keys[j] != wanted[0] or keys[j : j + n] != wanted:
            continue
        first, last = rows[j][0], rows[j + n - 1][0]
        region, trimmed = bodies[first : last + 1], _strip_blank_lines(search)
        kinds = []
        if [_indent(b) for b in region if not _blank(b)] != [_indent(s) for s in trimmed if not _blank(s)]:
            kinds.append("indentation")
        if [b.strip() for b in region if not _blank(b)] != [s.strip() for s in trimmed if not _blank(s)]:
            kinds.append("spaces inside a line")
        if [_blank(b) for b in region] != [_blank(s) for s in trimmed]:
            kinds.append("blank lines")
        return first + 1, last + 1, ", ".join(kinds) or "whitespace"
    return None


def _non_blank(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip())


def _uses_crlf(text: str) -> bool:
    lf = text.count("\n")
    return lf > 0 and text.count("\r\n") * 2 > lf
