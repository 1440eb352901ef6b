"""A table of SEARCH/REPLACE cases in the shapes real models send, each with the exact file before and after."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from speedrun.loop.edits import apply_edits
from speedrun.state.edits import Edit

BIG = "".join(f"def f{i}():\n    return {i}\n\n" for i in range(10))  # 20 non-blank lines: the rewrite guard applies


@dataclass(frozen=True)
class Case:
    """One edit on one file. after=None means the file must be left byte for byte as it was."""

    id: str
    before: str | None  # None: the file does not exist
    search: str
    replace: str
    after: str | None
    status: str = "applied"
    says: str = ""  # a fragment the outcome's message must contain


CASES = [
    # --- The three corruptions of issue 7: each must now be a clean edit or a refusal -----------------------
    Case(
        "search-has-final-newline-replace-not",
        "def f():\n    x = 1\n    y = 2\n",
        "    x = 1\n",
        "    x = 10",
        "def f():\n    x = 10\n    y = 2\n",
    ),
    Case(
        "replace-has-final-newline-search-not",
        "def f():\n    x = 1\n    y = 2\n",
        "    x = 1",
        "    x = 10\n",
        "def f():\n    x = 10\n    y = 2\n",
    ),
    Case(
        "spurious-blank-first-line",
        "import os\ndef f():\n    return 1\n",
        "\ndef f():\n    return 1\n",
        "def f():\n    return 2\n",
        "import os\ndef f():\n    return 2\n",
        says="blank lines around the search",
    ),
    Case(
        "spurious-blank-first-line-in-both",
        "import os\ndef f():\n    return 1\n",
        "\ndef f():\n    return 1\n",
        "\ndef f():\n    return 2\n",
        "import os\ndef f():\n    return 2\n",
    ),
    Case(
        "search-is-part-of-a-line",
        "max_retries = 3\nretries = 5\n",
        "retries = 3",
        "retries = 4",
        None,
        "not_found",
        "only part of line 1",
    ),
    Case(
        "whole-line-wins-over-part-of-a-line",
        "max_retries = 3\nretries = 3\n",
        "retries = 3",
        "retries = 4",
        "max_retries = 3\nretries = 4\n",
        says="at line 2",
    ),
    Case(
        "search-spans-parts-of-two-lines",
        "total = a +\n    b\nprint(total)\n",
        "a +\n    b",
        "a -\n    b",
        None,
        "not_found",
        "only part of lines 1-2",
    ),
    Case(
        "search-without-final-newline-multi-line",
        "def g():\n    pass\n\nz = 1\n",
        "def g():\n    pass",
        "def g():\n    return 1\n",
        "def g():\n    return 1\n\nz = 1\n",
    ),
    # --- Indentation: missing, partial, excessive, tabs; the replacement follows the file ---------------------
    Case(
        "indentation-missing-uniformly",
        "class A:\n    def f(self):\n        return 1\n",
        "def f(self):\n    return 1\n",
        "def f(self):\n    return 2\n",
        "class A:\n    def f(self):\n        return 2\n",
        says="re-indented",
    ),
    Case(
        "indentation-partly-missing",
        "    line1\n    line2\n    line3\n",
        " line1\n line2\n",
        " new_line1\n     new_line2\n",
        "    new_line1\n        new_line2\n    line3\n",
    ),
    Case(
        "indentation-missing-varied",
        "\n    line1\n    line2\n        line3\n    line4\n",
        "line2\n    line3\n",
        "new_line2\n    new_line3\n",
        "\n    line1\n    new_line2\n        new_line3\n    line4\n",
    ),
    Case(
        "over-indented",
        "def f():\n    return 1\n\nx = f()\n",
        "        return 1\n",
        "        return 2\n",
        "def f():\n    return 2\n\nx = f()\n",
    ),
    Case(
        "over-indented-search-replace-at-real-indent",
        "def f():\n    return 1\n\nx = f()\n",
        "        return 1\n",
        "    return 2\n",
        "def f():\n    return 2\n\nx = f()\n",
    ),
    Case(
        "unindented-search-replace-at-real-indent",
        "def f():\n    return 1\n",
        "return 1",
        "    return 2",
        "def f():\n    return 2\n",
    ),
    Case(
        "replace-nests-deeper-relative-indent-kept",
        "def f(x):\n    return x\n",
        "return x\n",
        "if x is None:\n    return 0\nreturn x\n",
        "def f(x):\n    if x is None:\n        return 0\n    return x\n",
    ),
    Case(
        "replace-dedents-below-the-match",
        "class A:\n    def f(self):\n        pass\n",
        "    def f(self):\n        pass\n",
        "    def f(self):\n        pass\n\n\ndef g():\n    pass\n",
        "class A:\n    def f(self):\n        pass\n\n\ndef g():\n    pass\n",
    ),
    Case(
        "tabs-in-file-spaces-in-search",
        "func main() {\n\tif ok {\n\t\treturn\n\t}\n}\n",
        "    if ok {\n        return\n    }\n",
        "    if ok {\n        log()\n        return\n    }\n",
        "func main() {\n\tif ok {\n\t\tlog()\n\t\treturn\n\t}\n}\n",
    ),
    Case(
        "spaces-in-file-tabs-in-search",
        "def f():\n    if x:\n        return 1\n",
        "\tif x:\n\t\treturn 1\n",
        "\tif x:\n\t\treturn 2\n",
        "def f():\n    if x:\n        return 2\n",
    ),
    Case(
        "makefile-tabs-two-space-search",
        "all:\n\techo a\n\techo b\n",
        "  echo a\n  echo b\n",
        "  echo a\n  echo c\n",
        "all:\n\techo a\n\techo c\n",
    ),
    Case(
        "trailing-spaces-in-file",
        "x = 1   \ny = 2\n",
        "x = 1\n",
        "x = 3\n",
        "x = 3\ny = 2\n",
        says="trailing whitespace",
    ),
    Case("trailing-spaces-in-search", "x = 1\ny = 2\n", "x = 1  \n", "x = 3\n", "x = 3\ny = 2\n"),
    # --- Final newlines and line endings ------------------------------------------------------------------
    Case("file-without-final-newline-edit-last-line", "a = 1\nb = 2", "b = 2\n", "b = 3\n", "a = 1\nb = 3"),
    Case("file-without-final-newline-edit-first-line", "a = 1\nb = 2", "a = 1", "a = 0", "a = 0\nb = 2"),
    Case(
        "crlf-file-lf-edit-with-missing-indent",
        "class A:\r\n    x = 1\r\n",
        "x = 1",
        "x = 2\ny = 3",
        "class A:\r\n    x = 2\r\n    y = 3\r\n",
    ),
    Case("lf-file-crlf-edit", "x = 1\ny = 2\n", "x = 1\r\n", "x = 2\r\n", "x = 2\ny = 2\n"),
    Case("delete-a-line", "a\nb\nc\n", "b\n", "", "a\nc\n"),
    Case("delete-last-line-without-final-newline", "a\nb", "b", "", "a"),
    # --- Empty searches, empty files ---------------------------------------------------------------------
    Case("empty-search-fills-empty-file", "", "", "x = 1\n", "x = 1\n", says="filled the empty file"),
    Case("empty-search-fills-blank-file", "\n", "", "x = 1\n", "x = 1\n"),
    Case("empty-search-creates-missing-file", None, "", "A = 1\n", "A = 1\n", says="created"),
    Case(
        "empty-search-on-non-empty-file-refused",
        "x = 1\n",
        "",
        "y = 2\n",
        None,
        "refused",
        "empty search text would replace the whole file",
    ),
    Case("search-in-empty-file", "", "x = 1", "x = 2", None, "not_found", "is empty"),
    Case("search-in-missing-file", None, "x = 1", "x = 2", None, "not_found", "does not exist"),
    # --- Already applied, and near misses that are only whitespace ----------------------------------------
    Case(
        "replace-already-in-file",
        "def f(a, b):\n    return a + b\n",
        "    return a - b\n",
        "    return a + b\n",
        None,
        "already_applied",
        "already applied",
    ),
    Case(
        "already-applied-with-indentation-noise",
        "def f(a, b):\n    return a + b\n",
        "return a - b",
        "return a + b",
        None,
        "already_applied",
        "at line 2",
    ),
    Case(
        "deletion-leftovers-are-not-already-applied",
        "x = 1\ny = 3\n",
        "x = 1\ny = 2\n",
        "x = 1\n",
        None,
        "not_found",
        "most similar region starts at line 1",
    ),
    Case(
        "differs-only-in-spaces-inside-a-line",
        "def add(a, b):\n    return a - b\n",
        "    return a-b",
        "    return a+b",
        None,
        "not_found",
        "line 2 differ from it only in whitespace (spaces inside a line)",
    ),
    Case(
        "differs-only-in-uneven-indentation",
        "if a:\n    x = 1\n    y = 2\nz = 3\n",
        "if a:\nx = 1\n  y = 2\n",
        "if a:\n    x = 10\n    y = 2\n",
        None,
        "not_found",
        "lines 1-3 differ from it only in whitespace (indentation)",
    ),
    Case(
        "differs-only-in-blank-lines",
        "def a():\n    pass\n\ndef b():\n    pass\n",
        "    pass\ndef b():\n    pass\n",
        "    pass\ndef b():\n    return 1\n",
        None,
        "not_found",
        "lines 2-5 differ from it only in whitespace (blank lines)",
    ),
    # --- Ambiguity, and noise models copy from the prompt ---------------------------------------------------
    Case("ambiguous-exact", "a = 1\nb = 2\na = 1\n", "a = 1", "a = 9", None, "ambiguous", "at lines 1, 3"),
    Case(
        "ambiguous-only-when-indentation-is-ignored",
        "class A:\n    def f(self):\n        pass\nclass B:\n    def f(self):\n        pass\n",
        "def f(self):\n    pass\n",
        "def f(self):\n    return 1\n",
        None,
        "ambiguous",
        "2 times in app.py (ignoring indentation), at lines 2, 5",
    ),
    Case("overlapping-matches-are-ambiguous", "x\nx\nx\n", "x\nx\n", "y\n", None, "ambiguous", "lines 1, 2"),
    Case(
        "line-number-prefixes-in-search",
        "def add(a, b):\n    return a - b\n",
        "   2|     return a - b",
        "    return a + b",
        "def add(a, b):\n    return a + b\n",
        says="line-number prefixes",
    ),
    Case(
        "line-number-prefixes-in-both",
        "def add(a, b):\n    return a - b\n",
        "   1| def add(a, b):\n   2|     return a - b\n",
        "   1| def add(a, b):\n   2|     return a + b\n",
        "def add(a, b):\n    return a + b\n",
    ),
    Case(
        "markdown-fences-around-both",
        "def add(a, b):\n    return a - b\n",
        "```python\n    return a - b\n```",
        "```python\n    return a + b\n```",
        "def add(a, b):\n    return a + b\n",
    ),
    # --- Refusals that stay -----------------------------------------------------------------------------
    Case(
        "whole-file-rewrite-refused",
        BIG,
        BIG,
        BIG.replace("return 3", "return 33"),
        None,
        "refused",
        "would replace most of app.py (20 of 20 lines)",
    ),
    Case("identical-but-for-final-newline-refused", "x = 1\n", "x = 1\n", "x = 1", None, "refused", "changes nothing"),
    Case("whitespace-only-search-refused", "x = 1\n", "  \n", "y = 2\n", None, "refused", "only whitespace"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_edit_case(tmp_path: Path, case: Case) -> None:
    target = tmp_path / "app.py"
    if case.before is not None:
        target.write_bytes(case.before.encode())  # bytes: CRLF and missing final newlines stay as written
    [outcome] = apply_edits(tmp_path, [Edit(path="app.py", search=case.search, replace=case.replace)])

    assert outcome.status == case.status, outcome.message
    assert case.says in outcome.message
    if case.after is None:
        if case.before is None:
            assert not target.exists()
        else:
            assert target.read_bytes() == case.before.encode()
            assert not (tmp_path / ".speedrun").exists()  # nothing written, so nothing backed up
    else:
        assert target.read_bytes() == case.after.encode()


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


# --------------------------------------------------------------------------------------------------
# Property: whatever noise a model adds, an edit replaces whole lines or leaves the file as it was
# --------------------------------------------------------------------------------------------------

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_WORDS = ["x = 1", "return x", "pass", "if a:", "y = f(x)", "max_x = 1", "else:", "# note"]
_line = st.builds(lambda level, word: "    " * level + word, st.integers(0, 3), st.sampled_from(_WORDS))
_SPAN = re.compile(r"at lines? (\d+)(?:-(\d+))?")


@st.composite
def _edit_case(draw):
    lines = draw(st.lists(st.one_of(_line, st.just("")), min_size=1, max_size=12))
    start = draw(st.integers(0, len(lines) - 1))
    size = draw(st.integers(1, len(lines) - start))
    window = lines[start : start + size]
    # Noise models add: indentation removed or added uniformly, trailing blanks, a spurious blank first line.
    shift = draw(st.sampled_from(["none", "dedent", "indent", "trailing", "blank-first", "fragment"]))
    if shift == "dedent":
        window = [w[4:] if w.startswith("    ") else w for w in window]
    elif shift == "indent":
        window = ["    " + w if w else w for w in window]
    elif shift == "trailing":
        window = [w + "  " for w in window]
    elif shift == "blank-first":
        window = ["", *window]
    elif shift == "fragment":
        window = [w[len(w) // 2 :] for w in window]
    assume(any(w.strip() for w in window))  # blank searches are refused up front; other tests cover them
    replace = draw(st.lists(_line, max_size=4))
    end_file, end_search, end_replace = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    text = "\n".join(lines) + ("\n" if end_file else "")
    search = "\n".join(window) + ("\n" if end_search else "")
    return text, search, "\n".join(replace) + ("\n" if end_replace and replace else "")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_edit_case())
def test_an_edit_replaces_whole_lines_or_nothing(tmp_path_factory, case) -> None:
    text, search, replace = case
    root = tmp_path_factory.mktemp("prop")
    target = root / "app.py"
    target.write_bytes(text.encode())
    [outcome] = apply_edits(root, [Edit(path="app.py", search=search, replace=replace)])
    after = target.read_bytes().decode()
    before_lines, after_lines = text.splitlines(), after.splitlines()

    if outcome.status != "applied":
        assert after == text
        return
    found = _SPAN.search(outcome.message)
    assert found, outcome.message
    first = int(found.group(1))
    last = int(found.group(2) or first)
    # Lines outside the matched span are untouched, whole; the span is the search, whitespace aside.
    tail = len(before_lines) - last
    assert after_lines[: first - 1] == before_lines[: first - 1]
    assert after_lines[len(after_lines) - tail :] == before_lines[last:] if tail else True
    wanted = [s.strip() for s in search.splitlines() if s.strip()]
    assert [b.strip() for b in before_lines[first - 1 : last] if b.strip()] == wanted
    # The new lines are the replace lines, re-indented at most.
    new = after_lines[first - 1 : len(after_lines) - tail]
    assert [n.strip() for n in new] == [r.strip() for r in replace.splitlines()]
    # The final newline stays as it was, except that a blank last line needs one to exist at all.
    assert after.endswith("\n") == text.endswith("\n") or after in ("", "\n") or after.endswith("\n\n")
