"""Property tests (hypothesis): model replies into files on disk, and search/replace edits, from realistic pieces."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from speedrun.errors import SpeedRunError
from speedrun.files import SafeWriter
from speedrun.loop.edits import apply_edits
from speedrun.loop.reply_parser import FileStreamParser, parse_files
from speedrun.state import WrittenFile
from speedrun.state.edits import Edit

# Deterministic in CI: a fixed seed sequence and no example database; `heavy` runs ten times as many.
FAST = settings(
    max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
HEAVY = settings(FAST, max_examples=2000)

# --- the reply grammar --------------------------------------------------------------------------------------

PATHS = [
    "a.py",
    "src/pkg/b.py",
    "./c.py",
    "dir/../d.py",
    "../escape.py",
    "../../escape.py",
    "/etc/passwd",
    "/tmp/abs.py",
    "~/home.py",
    "~",
    "link_out/pwned.py",
    "link_out",
    "link_file",
    "inside_link/ok.py",
    "a\x00b.py",
    "C:\\win.py",
    "sub\\back.py",
    "x" * 300 + ".py",
    "d/" * 60 + "deep.py",
    "ünïcødé/файл.py",
    "\u200bzero.py",
    "\ufeffbom.py",
    "zero\u200bmid.py",
    ".git/hooks/pre-commit",
    ".github/workflows/ci.yml",
    ".venv/bin/activate",
    ".speedrun/backups/x.py",
    "",
    " ",
    "a.py ",
    "tests/test_a.py",
    "a.py/",
    "exists.py",
    "CON",
    "a.py\nb.py",
]
LINES = [
    "def f(x):",
    "    return x + 1",
    "",
    "\tindented_with_tab = 1",
    'END = "</FILE>"',
    "```python",
    "```",
    "### FILE: legacy.py",
    '<FILE path="nested.py">',
    "x = 1</FILE>",
    "\ufeff# bom line",
    "zero\u200bwidth",
    "\r",
    "crlf line\r",
    "unicode: héllo wörld ✓",
    "a" * 500,
]
# Any code point, lone surrogates (a JSON reply can carry "\ud800") and control characters included.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
OPEN_NAMES = ["FILE", "file", "File", "fIlE", "\u200bFILE", "\ufeffFILE"]


@st.composite
def open_tags(draw: st.DrawFn) -> str:
    """An opening tag in the shapes models write: any case, any quoting, attributes in any order, split lines."""
    path = draw(st.sampled_from(PATHS) | any_text)
    quote = draw(st.sampled_from(['"', "'", ""]))
    attrs = [f"path={quote}{path}{quote}"]
    if draw(st.booleans()):
        attrs.insert(draw(st.integers(0, 1)), draw(st.sampled_from(['lang="python"', "mode=new", 'name="x"'])))
    sep = draw(st.sampled_from([" ", "\n", "  ", "\t", " \n "]))
    name = draw(st.sampled_from(OPEN_NAMES))
    close = draw(st.sampled_from([">", " >", "\n>", "/>"]))
    return f"<{name}{sep}{sep.join(attrs)}{close}"


CLOSERS = ["</FILE>", "</file>", "</FILE >", "</\u200bFILE>", "", "</FILE>\n", "\n</FILE>"]


@st.composite
def blocks(draw: st.DrawFn) -> str:
    """A file block, a legacy marker block, or prose: newline placement varies so tags share lines with code."""
    kind = draw(st.sampled_from(["tag", "tag", "tag", "legacy", "prose"]))
    body = "\n".join(draw(st.lists(st.sampled_from(LINES) | any_text, max_size=8)))
    if kind == "prose":
        return body
    nl = draw(st.sampled_from(["\n", "", "\r\n"]))
    if kind == "legacy":
        path = draw(st.sampled_from(PATHS))
        fence = draw(st.sampled_from(["```python\n", "", "```\n"]))
        return f"### FILE: {path}\n{fence}{body}\n{'```' if fence else ''}\n"
    end = draw(st.sampled_from(["\n", ""]))
    return f"{draw(open_tags())}{nl}{body}{end}{draw(st.sampled_from(CLOSERS))}"


replies = st.lists(blocks(), min_size=0, max_size=6).map("\n".join) | any_text


def _split(text: str, cuts: list[int]) -> list[str]:
    """text cut at the given offsets, as a stream arrives in chunks."""
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


# --- the sandbox each example writes into ---------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes | str]:
    """Files (bytes) and symlinks (targets) under a directory."""
    seen: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                seen[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                seen[rel] = path.read_bytes()
    return seen


def _world(base: Path) -> tuple[Path, Path]:
    """root (with an existing file and symlinks pointing outside it) and a sibling canary directory."""
    root, canary = base / "root", base / "canary"
    (canary / "sub").mkdir(parents=True)
    (canary / "target.txt").write_text("canary\n")
    (canary / "sub" / "pwned.py").write_text("canary\n")
    root.mkdir()
    (root / "exists.py").write_text("old = 1\n")
    (root / "inside").mkdir()
    os.symlink(canary, root / "link_out")
    os.symlink(canary / "target.txt", root / "link_file")
    os.symlink("inside", root / "inside_link")
    return root, canary


def _ours(call: Callable[[], Any]) -> Any:
    """Run a step of the product; only speed-run's own errors may come out of it."""
    try:
        return call()
    except SpeedRunError:
        return None


def check_reply(reply: str, cuts: list[int]) -> None:
    """Stream `reply` through the parser in chunks and write every file; then check what reached the disk."""
    with tempfile.TemporaryDirectory() as tmp:
        root, canary = _world(Path(tmp))
        canary_before, root_before = _tree(canary), _tree(root)
        parser, files = FileStreamParser(), []
        for chunk in _split(reply, cuts):
            files += _ours(lambda chunk=chunk: parser.feed(chunk)) or []
        files += _ours(lambda: parser.finish(truncated=False)) or []
        whole = _ours(lambda: parse_files(reply)[0])
        if whole is not None:  # how the network cut the reply never changes which files it holds
            assert [(f.path, f.content) for f in files] == [(f.path, f.content) for f in whole]
        writer = SafeWriter(root)
        written: dict[str, str] = {}
        for f in files:
            outcome = _ours(lambda f=f: writer.write(f))
            if isinstance(outcome, WrittenFile):
                on_disk = root / outcome.path
                real = os.path.realpath(
                    on_disk
                )  # a symlink inside the root to a place inside it may be written through
                assert real.startswith(os.path.realpath(root) + os.sep)
                written[os.path.relpath(real, os.path.realpath(root))] = f.content
                assert on_disk.read_bytes() == f.content.encode("utf-8"), outcome
                lines = f.content.count("\n") + (0 if not f.content or f.content.endswith("\n") else 1)
                assert outcome.lines == lines
        event(f"files written: {min(len(written), 3)}{'+' if len(written) > 2 else ''}")
        event(f"refusals: {'some' if writer.report.errors else 'none'}")
        assert _tree(canary) == canary_before  # nothing written outside the root, through a symlink or otherwise
        after = {k: v for k, v in _tree(root).items() if not k.startswith(".speedrun")}
        changed = {k for k in after if root_before.get(k) != after[k]} | (root_before.keys() - after.keys())
        assert changed <= written.keys()  # every change on disk is a file the writer reported
        for rel, content in written.items():
            assert after[rel] == content.encode("utf-8")


@FAST
@given(reply=replies, cuts=st.lists(st.integers(0, 10_000), max_size=6))
def test_replies_never_write_outside_the_root_nor_misreport(reply: str, cuts: list[int]) -> None:
    check_reply(reply, cuts)


@pytest.mark.heavy
@HEAVY
@given(reply=replies, cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_replies_heavy(reply: str, cuts: list[int]) -> None:
    check_reply(reply, cuts)


# --- the edit engine ------------------------------------------------------------------------------------------

CODE_LINES = [
    "def f(x):",
    "    return x + 1",
    "    return x + 1",  # a duplicate, so some searches are ambiguous
    "",
    "class A:",
    "    def m(self):",
    "        pass",
    "\tif tabbed:",
    "\t\treturn 2",
    "  two_space = True",
    "# comment ✓ héllo",
    "x = 1  ",
    "}",
    "12| numbered",
]


@st.composite
def files_and_edits(draw: st.DrawFn) -> tuple[bytes, Edit]:
    """A file (CRLF or LF, final newline or not) and one edit, its search often copied from the file with noise."""
    lines = draw(st.lists(st.sampled_from(CODE_LINES) | any_text.filter(lambda t: "\n" not in t), max_size=12))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = eol.join(lines) + (eol if lines and draw(st.booleans()) else "")
    how = draw(st.sampled_from(["exact", "exact", "noise", "tabs", "crlf", "random", "empty"]))
    search = ""
    if how != "empty" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(i + 1, min(len(lines), i + 4)))
        picked = lines[i:j]
        if how == "noise":
            picked = [draw(st.sampled_from(["", " ", "  ", "\t"])) + p.strip() for p in picked]
        elif how == "tabs":
            picked = [p.replace("\t", "    ") for p in picked]
        search = ("\r\n" if how == "crlf" else "\n").join(picked) + draw(st.sampled_from(["\n", ""]))
    if how == "random":
        search = draw(any_text)
    replace_lines = draw(st.lists(st.sampled_from(CODE_LINES) | any_text.filter(lambda t: "\n" not in t), max_size=4))
    replace = "\n".join(replace_lines) + draw(st.sampled_from(["\n", ""]))
    path = draw(st.sampled_from(["f.py", "f.py", "f.py", "new.py", "../out.py", "link_out/x.py"]))
    return text.encode("utf-8", "surrogatepass"), Edit(path=path, search=search, replace=replace)


def _file_lines(data: bytes) -> tuple[list[bytes], bool]:
    """A file's lines without their \\n (a CRLF line keeps its \\r), and whether it ends with a newline."""
    parts = data.split(b"\n")
    final = parts[-1] == b""
    if final:
        parts.pop()
    return parts, final


def _text_lines(text: str) -> list[str]:
    parts = text.split("\n")
    if parts[-1] == "":
        parts.pop()
    return [p.strip() for p in parts]


def _trimmed(lines: list[str]) -> list[str]:
    while lines and not lines[-1]:
        lines = lines[:-1]
    while lines and not lines[0]:
        lines = lines[1:]
    return lines


def _same(old: list[bytes], new: list[bytes], loose_last: bool) -> bool:
    if loose_last and old and new and len(old) == len(new):
        return old[:-1] == new[:-1] and old[-1].rstrip(b"\r") == new[-1].rstrip(b"\r")
    return old == new


def _region_replaced(before: bytes, after: bytes, removed: int, added: int, replace: str) -> bool:
    """after == before with `removed` whole lines at one place replaced by `added` lines holding replace's text
    (indentation and line endings may be adapted to the file, blank edges trimmed); every other line
    byte-identical, and the final newline changed only when the region reaches the end of the file."""
    old, old_nl = _file_lines(before)
    new, new_nl = _file_lines(after)
    if len(new) - len(old) != added - removed:
        return False
    wanted = _text_lines(replace)
    for a in range(len(old) - removed + 1):
        b = a + removed
        at_end = b == len(old)  # then the file's last line, and so its line ending, may move into the prefix
        if not _same(old[:a], new[:a], at_end) or old[b:] != new[a + added :] or (not at_end and old_nl != new_nl):
            continue
        middle = [line.decode("utf-8", "surrogateescape").strip() for line in new[a : a + added]]
        if middle == wanted or _trimmed(middle) == _trimmed(wanted):
            return True
    return False


def check_edit(original: bytes, edit: Edit) -> None:
    """Apply one edit; applied means exactly one region changed, anything else means the file is untouched."""
    with tempfile.TemporaryDirectory() as tmp:
        root, canary = _world(Path(tmp))
        (root / "f.py").write_bytes(original)
        canary_before, root_before = _tree(canary), _tree(root)
        outcomes = _ours(lambda: apply_edits(root, [edit]))
        assert _tree(canary) == canary_before
        after = {k: v for k, v in _tree(root).items() if not k.startswith(".speedrun")}
        event(f"edit: {outcomes[0].status if outcomes else 'raised'}")
        if not outcomes or outcomes[0].status != "applied":
            assert after == root_before, outcomes
            return
        outcome = outcomes[0]
        changed = {k for k in after if root_before.get(k) != after[k]} | (root_before.keys() - after.keys())
        target = os.path.relpath(os.path.realpath(root / edit.path), os.path.realpath(root))
        assert changed <= {target}, (changed, outcome)
        if edit.path == "f.py" and edit.search.strip():
            new = after["f.py"]
            assert isinstance(new, bytes)
            assert _region_replaced(original, new, outcome.lines_removed, outcome.lines_added, edit.replace), (
                outcome,
                new,
            )


@FAST
@given(case=files_and_edits())
def test_edits_change_exactly_their_region_or_nothing(case: tuple[bytes, Edit]) -> None:
    check_edit(*case)


@pytest.mark.heavy
@HEAVY
@given(case=files_and_edits())
def test_edits_heavy(case: tuple[bytes, Edit]) -> None:
    check_edit(*case)
