"""The reply parser on the shapes real models produce: shared lines, odd tags, BOMs, nesting, and any stream split."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from speedrun.loop.reply_parser import FileStreamParser, parse_files
from speedrun.state.records import GeneratedFile


def parse(text: str, *, truncated: bool = False) -> tuple[dict[str, str], list[str], str | None]:
    """Whole-reply parse as {path: content}, the warnings, and the unfinished path."""
    parser = FileStreamParser()
    files = parser.feed(text) + parser.finish(truncated=truncated)
    assert len({f.path for f in files}) == len(files), files  # the cases below name each path once
    return {f.path: f.content for f in files}, parser.warnings, parser.open_path


def stream(text: str, cuts: list[int], *, truncated: bool = False) -> tuple[list[GeneratedFile], list[str], str | None]:
    parser = FileStreamParser()
    files: list[GeneratedFile] = []
    prev = 0
    for cut in sorted(cuts):
        files += parser.feed(text[prev:cut])
        prev = cut
    files += parser.feed(text[prev:])
    files += parser.finish(truncated=truncated)
    return files, parser.warnings, parser.open_path


def whole(text: str, *, truncated: bool = False) -> tuple[list[GeneratedFile], list[str], str | None]:
    return stream(text, [], truncated=truncated)


# ---------------------------------------------------------------------------------------------------
# The shapes issue 7 lists: each writes the right files, with no warning where nothing is odd.
# ---------------------------------------------------------------------------------------------------

CLEAN_CASES = {
    "closing tag on a code line, then the next file": (
        '<FILE path="a.py">\nx = 1</FILE>\n<FILE path="b.py">\ny = 2\n</FILE>\n',
        {"a.py": "x = 1\n", "b.py": "y = 2\n"},
    ),
    "closing and next opening tag on one line": (
        '<FILE path="a.py">\nx = 1\n</FILE><FILE path="b.py">\ny = 2\n</FILE>',
        {"a.py": "x = 1\n", "b.py": "y = 2\n"},
    ),
    "two one-line files on one line": (
        '<FILE path="a.txt">alpha</FILE><FILE path="b.txt">beta</FILE>\n',
        {"a.txt": "alpha\n", "b.txt": "beta\n"},
    ),
    "two one-line files with prose between": (
        '<FILE path="a.txt">alpha</FILE> and <FILE path="b.txt">beta</FILE>',
        {"a.txt": "alpha\n", "b.txt": "beta\n"},
    ),
    "prose before the opening tag on its line": (
        'Here it is: <FILE path="a.py">\nx = 1\n</FILE>\n',
        {"a.py": "x = 1\n"},
    ),
    "prose after the closing tag": (
        '<FILE path="a.py">\nx = 1\n</FILE> Done!\n<FILE path="b.py">\ny\n</FILE> That is all.',
        {"a.py": "x = 1\n", "b.py": "y\n"},
    ),
    "opening tag split over two lines": ('<FILE\n  path="a.py">\nx = 1\n</FILE>\n', {"a.py": "x = 1\n"}),
    "opening tag split over three lines with another attribute": (
        '<FILE\n  lang="python"\n  path="a.py"\n>\nx = 1\n</FILE>\n',
        {"a.py": "x = 1\n"},
    ),
    "closing tag inside a string literal stays in the file": (
        '<FILE path="gen.py">\nEND = "</FILE>"\nprint(END)\n</FILE>\nok\n',
        {"gen.py": 'END = "</FILE>"\nprint(END)\n'},
    ),
    "closing tag inside code, then the real one shares the last line": (
        '<FILE path="gen.py">\nEND = "</FILE>"\nx = END</FILE>\n<FILE path="b.py">\nb\n</FILE>\n',
        {"gen.py": 'END = "</FILE>"\nx = END\n', "b.py": "b\n"},
    ),
    "lowercase tags, single quotes": ("<file path='a.py'>\nx = 1\n</file>\n", {"a.py": "x = 1\n"}),
    "unquoted path": ("<FILE path=a.py>\nx = 1\n</FILE>\n", {"a.py": "x = 1\n"}),
    "reordered attributes": ('<FILE lang="py" path="src/a.py">\nx = 1\n</FILE>\n', {"src/a.py": "x = 1\n"}),
    "upper-case attribute, spaces around =": ('<FILE  PATH = "a.py" >\nx = 1\n</FILE >\n', {"a.py": "x = 1\n"}),
    "BOM before the first tag": ('\ufeff<FILE path="a.py">\nx = 1\n</FILE>\n', {"a.py": "x = 1\n"}),
    "BOM inside the path and the tag": (
        '<FILE \ufeffpath="\ufeffsrc/a.py">\nx = 1\n</FILE>\n',
        {"src/a.py": "x = 1\n"},
    ),
    "CRLF line endings": (
        '<FILE path="a.py">\r\nx = 1\r\ny = 2\r\n</FILE>\r\n<FILE path="b.py">\r\nz\r\n</FILE>\r\n',
        {"a.py": "x = 1\r\ny = 2\r\n", "b.py": "z\r\n"},
    ),
    "missing final newline everywhere": ('<FILE path="a.py">\nx = 1</FILE>', {"a.py": "x = 1\n"}),
    "wrapped in an xml fence with prose": (
        'Sure!\n```xml\n<FILE path="a.py">\nx = 1\n</FILE>\n```\nLet me know.\n',
        {"a.py": "x = 1\n"},
    ),
    "a markdown heading naming the block": ('## FILE: a.py\n<FILE path="a.py">\nx = 1\n</FILE>\n', {"a.py": "x = 1\n"}),
    "## FILE: heading with a fence": (
        "## FILE: a.py\n```python\nx = 1\n```\n#### File: b.py\n```\ny\n```\n",
        {"a.py": "x = 1\n", "b.py": "y\n"},
    ),
    "a fenced legacy block shields an opening tag inside it": (
        '### FILE: docs/format.md\n```\n<FILE path="x.py">\n```\n',
        {"docs/format.md": '<FILE path="x.py">\n'},
    ),
    "legacy blocks after a tagged one": (
        '<FILE path="a.py">\nx\n</FILE>\n### FILE: b.md\n```md\n# B\n```\n',
        {"a.py": "x\n", "b.md": "# B\n"},
    ),
}


@pytest.mark.parametrize("text,expected", list(CLEAN_CASES.values()), ids=list(CLEAN_CASES))
def test_real_model_shapes_give_the_right_files(text: str, expected: dict[str, str]) -> None:
    files, warnings, unfinished = parse(text)
    assert files == expected
    assert warnings == [] and unfinished is None
    assert stream(text, list(range(len(text)))) == whole(text)  # one character at a time: the same


def test_unclosed_last_block_at_a_normal_end_is_kept_with_a_warning() -> None:
    files, warnings, unfinished = parse('<FILE path="a.py">\nx = 1\n</FILE>\n<FILE path="b.py">\ny = 2\n')
    assert files == {"a.py": "x = 1\n", "b.py": "y = 2\n"} and unfinished is None
    assert warnings == ["'b.py': no closing </FILE> before the end of the reply; written up to there, check its end"]


def test_unclosed_last_block_when_truncated_is_unfinished_not_returned() -> None:
    text = '<FILE path="a.py">\nx = 1\n</FILE>\n<FILE path="b.py">\nEND = "</FILE>"\ndef half('
    assert parse(text, truncated=True) == ({"a.py": "x = 1\n"}, [], "b.py")


def test_path_with_a_newline_is_joined_and_said() -> None:
    files, warnings, _ = parse('<FILE path="src/\n  app.py">\nx = 1\n</FILE>\n')
    assert files == {"src/app.py": "x = 1\n"}
    assert len(warnings) == 1 and "split over lines" in warnings[0] and "'src/app.py'" in warnings[0]


def test_nested_tags_follow_the_rule_and_say_so() -> None:
    # An opening tag before a.py closed: a.py ends there (unclosed), b.py runs to the LAST </FILE>.
    files, warnings, _ = parse('<FILE path="a.py">\nx = 1\n<FILE path="b.py">\ny = 2\n</FILE>\n</FILE>\n')
    assert files == {"a.py": "x = 1\n", "b.py": "y = 2\n</FILE>\n"}
    assert len(warnings) == 2
    assert warnings[0].startswith("'a.py': no closing </FILE> before the next <FILE> tag")
    assert warnings[1].startswith("'b.py': kept a line '</FILE>' as content")


def test_lone_surrogates_in_reply_and_path_do_not_crash() -> None:
    files, _, _ = parse('<FILE path="a\ud800.py">\nx = "\udcff"\n</FILE>\n<FILE path="b.py">\nok\n</FILE>\n')
    assert files == {"a\ud800.py": 'x = "\udcff"\n', "b.py": "ok\n"}


def test_tag_without_a_path_is_not_a_block() -> None:
    files, _, _ = parse('Each <FILE> holds a file.\n<FILE path="a.py">\nx\n</FILE>\n')
    assert files == {"a.py": "x\n"}


def test_no_blocks_at_all() -> None:
    assert parse("Sorry, I can't help with that.\n")[0] == {}
    parser = FileStreamParser()
    parser.feed("<file>nothing</file> here")
    parser.finish()
    assert parser.seen_paths == []


def test_each_file_is_emitted_when_the_next_opening_tag_completes() -> None:
    parser = FileStreamParser()
    assert parser.feed('<FILE path="a.py">\nx = 1\n</FILE>\n') == []  # a later </FILE> could still extend it
    assert parser.feed("<FILE pa") == []
    assert parser.feed('th="b.py">') == [GeneratedFile(path="a.py", content="x = 1\n")]
    assert parser.open_path == "b.py"
    assert parser.feed("y = 2\n</FILE>\n") == []
    assert parser.finish() == [GeneratedFile(path="b.py", content="y = 2\n")]


# ---------------------------------------------------------------------------------------------------
# Property: any split of a reply into stream chunks gives the files written down by hand for it.
# ---------------------------------------------------------------------------------------------------

# For each clean case, when the reply is cut off by the token limit: how many of its files (in order) are
# still written, and which file is left unfinished. A cut-off reply's last <FILE> block could still be extended
# by a later </FILE>, so it stays unfinished along with everything after its opening tag; a closed legacy
# fence is complete.
CUT_OFF = {
    "closing tag on a code line, then the next file": (1, "b.py"),
    "closing and next opening tag on one line": (1, "b.py"),
    "two one-line files on one line": (1, "b.txt"),
    "two one-line files with prose between": (1, "b.txt"),
    "prose before the opening tag on its line": (0, "a.py"),
    "prose after the closing tag": (1, "b.py"),
    "opening tag split over two lines": (0, "a.py"),
    "opening tag split over three lines with another attribute": (0, "a.py"),
    "closing tag inside a string literal stays in the file": (0, "gen.py"),
    "closing tag inside code, then the real one shares the last line": (1, "b.py"),
    "lowercase tags, single quotes": (0, "a.py"),
    "unquoted path": (0, "a.py"),
    "reordered attributes": (0, "src/a.py"),
    "upper-case attribute, spaces around =": (0, "a.py"),
    "BOM before the first tag": (0, "a.py"),
    "BOM inside the path and the tag": (0, "src/a.py"),
    "CRLF line endings": (1, "b.py"),
    "missing final newline everywhere": (0, "a.py"),
    "wrapped in an xml fence with prose": (0, "a.py"),
    "a markdown heading naming the block": (0, "a.py"),
    "## FILE: heading with a fence": (2, None),
    "a fenced legacy block shields an opening tag inside it": (1, None),
    "legacy blocks after a tagged one": (0, "a.py"),
}

# The corpus with its oracle: (reply, the files it holds in order, (files kept, unfinished path) when cut off).
ORACLE: list[tuple[str, list[tuple[str, str]], tuple[int, str | None]]] = [
    *[(text, list(expected.items()), CUT_OFF[name]) for name, (text, expected) in CLEAN_CASES.items()],
    (
        '<FILE path="a.py">\nx\n<FILE path="b.py">\ny\n</FILE>\n</FILE>\n',
        [("a.py", "x\n"), ("b.py", "y\n</FILE>\n")],
        (1, "b.py"),
    ),
    ('<FILE path="src/\na.py">\nx\n</FILE>', [("src/a.py", "x\n")], (0, "src/a.py")),
    (
        '### FILE: a.py\nx = 1\n\n### FILE: b.py\n<FILE path="b.py">\ny\n</FILE>\n',
        [("a.py", "x = 1\n"), ("b.py", "y\n")],
        (1, "b.py"),
    ),
    ("### FILE: a.py\n```python\nx = 1\n", [("a.py", "x = 1\n")], (0, "a.py")),
]
HAND_WRITTEN = [text for text, _, _ in ORACLE]


def test_every_clean_case_says_what_a_cut_off_reply_keeps() -> None:
    assert set(CUT_OFF) == set(CLEAN_CASES)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(ORACLE), data=st.data(), truncated=st.booleans())
def test_any_split_of_a_corpus_reply_gives_its_hand_written_files(case, data, truncated: bool) -> None:
    text, files, (kept, cut_open) = case
    want = (files[:kept], cut_open) if truncated else (files, None)
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=12))
    for split in (cuts, list(range(len(text)))):  # random cuts, then one character at a time
        got, _, unfinished = stream(text, split, truncated=truncated)
        assert ([(f.path, f.content) for f in got], unfinished) == want


# Pieces real replies are made of, including the awkward ones; random concatenations make messy replies.
PIECES = [
    '<FILE path="a.py">',
    "<file path='b.py'>",
    "<FILE path=c.py>",
    '<FILE lang="py" path="d/e.py">',
    '<FILE\n  path="f.py">',
    '<FILE path="g\ufeff.py">',
    "<FILE>",
    "</FILE>",
    "</file>",
    "</FILE >",
    "<",
    "<fi",
    "<FILE",
    "### FILE: h.py",
    "## File: `i.py`",
    "```",
    "```python",
    "\n",
    "\r\n",
    "\n\n",
    " ",
    "x = 1",
    'END = "</FILE>"',
    "Here it is: ",
    " Done!",
    "TRIPLE_BACKTICK",
    "\ufeff",
    "\ud800",
    "é",
    "> ",
    "path=",
    '"',
]

messy_replies = st.one_of(st.sampled_from(HAND_WRITTEN), st.lists(st.sampled_from(PIECES), max_size=40).map("".join))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=messy_replies, data=st.data(), truncated=st.booleans())
@example(text='<FILE path="a.py">\nx\n</FILE><FILE path="b.py">y</FILE>', data=None, truncated=False)
def test_any_split_of_a_messy_reply_gives_the_same_files_as_the_whole(text: str, data, truncated: bool) -> None:
    """Random concatenations have no hand-written answer: here the check is that chunking changes nothing."""
    cuts = [] if data is None else data.draw(st.lists(st.integers(0, len(text)), max_size=12))
    assert stream(text, cuts, truncated=truncated) == whole(text, truncated=truncated)
    assert stream(text, list(range(len(text))), truncated=truncated) == whole(text, truncated=truncated)


# Lines a file may hold: code with </FILE> inside strings, markers and tag-like text that are not opening tags.
CODE_LINES = [
    "x = 1",
    "    return x",
    'END = "</FILE>"',
    "print('</file>')",
    "### FILE: not-a-marker",
    "",
    "    ",
    "# <FILE> without a path",
    "a < b > c",
    "\ttab",
    "é = 'ü'",
    "<FILEX>",
    "```py",
]
paths = st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8}){0,2}\.(py|txt|md)", fullmatch=True)
contents = (
    st.lists(st.sampled_from(CODE_LINES), min_size=1, max_size=8)
    .filter(lambda ls: ls[-1].strip() != "" and not ls[0].startswith("```") and not ls[-1].startswith("```"))
    .map(lambda ls: "\n".join(ls) + "\n")
)
OPENERS = [
    '<FILE path="{p}">',
    "<file path='{p}'>",
    "<FILE path={p}>",
    '<FILE lang="x" path="{p}">',
    '<FILE\n  path="{p}">',
    'Here: <FILE path="{p}">',
    '\ufeff<FILE path="{p}">',
]
CLOSERS = ["\n</FILE>", "</FILE>", "\n</file>", "\n  </FILE>  "]  # on its own line, or sharing the last code line
GAPS = ["\n", "", " Done!\n", "\n\nNext one:\n", "\r\n"]


@settings(max_examples=300, deadline=None)
@given(
    files=st.lists(st.tuples(paths, contents), min_size=1, max_size=5, unique_by=lambda f: f[0]),
    shapes=st.lists(
        st.tuples(st.sampled_from(OPENERS), st.sampled_from(CLOSERS), st.sampled_from(GAPS)), min_size=5, max_size=5
    ),
    data=st.data(),
)
def test_generated_replies_give_back_exactly_their_files(files, shapes, data) -> None:
    parts = []
    # Five shapes are drawn for one to five files: the spare shapes go unused.
    for (path, content), (opener, closer, gap) in zip(files, shapes, strict=False):
        parts.append(opener.format(p=path) + "\n" + content[:-1] + closer + gap)
    text = "Sure, here are the files.\n" + "".join(parts)
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=10))
    got, _, unfinished = stream(text, cuts)
    assert [(f.path, f.content) for f in got] == files
    assert unfinished is None
    assert (got, unfinished) == parse_files(text)


def test_a_path_with_replaced_invalid_characters_is_written_with_a_warning() -> None:
    files, unfinished = parse_files('<FILE path="a\ufffd.py">\nx = 1\n</FILE>\n')
    assert [(f.path, f.content) for f in files] == [("a\ufffd.py", "x = 1\n")] and unfinished is None
    parser = FileStreamParser()
    parser.feed('<FILE path="a\ufffd.py">\nx = 1\n</FILE>\n')
    parser.finish()
    assert any("U+FFFD" in w for w in parser.warnings)
