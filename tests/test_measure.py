"""measure_tree on small fixture projects with known line counts and known violations."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import speedrun.judge.measure
from speedrun.errors import InputError
from speedrun.judge.measure import MAX_FUNCTION_LINES, is_test_file, measure_tree, source_files
from speedrun.judge.scoring import SCORE_TABLES, readability_rate
from speedrun.state.judge import Measurement, Violation
from tests.helpers import SHIPPED_TESTS, TOKEN_BUCKET_PY


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def _measure(root: Path, files: dict[str, str]) -> Measurement:
    return measure_tree(_write(root, files), name="impl")


def _of(measurement: Measurement, kind: str) -> list[tuple[str, int, str]]:
    return [(v.file, v.line, v.detail) for v in measurement.violations if v.kind == kind]


# --------------------------------------------------------------------------------------------------
# fixture sources (line numbers in the comments are 1-based, after dedent)

DOCSTRINGS_PY = '''
"""Module docstring.

More text.
"""
# a comment line

import os  # trailing comment


class Thing:
    """Class docstring."""

    def method(self):
        """Method docstring
        on two lines."""
        text = """not a docstring
line two"""
        return os.sep + text
'''
# code lines: import, class, def, text = (2 lines), return -> 6

NESTING_PY = """
def flat(items):
    for item in items:
        if item:
            while item:
                item = None
    return items


def deep(items):
    for item in items:
        if item:
            try:
                with open(item) as handle:
                    handle.read()
            except OSError:
                pass
    return items


def elif_chain(value):
    if value is None:
        return value
    elif value:
        return value
    elif not value:
        for part in value:
            if part:
                return part
    return value


def else_if(value):
    for part in value:
        if part:
            pass
        else:
            if part is None:
                if value:
                    return part
    return value


def deepest_wins(rows):
    for row in rows:
        if row:
            for cell in row:
                if cell:
                    pass
    while rows:
        if rows:
            for row in rows:
                with row:
                    if row:
                        return row
    return rows


def outer(rows):
    for row in rows:
        if row:
            def inner(cells):
                for cell in cells:
                    if cell:
                        return cell
            return inner
    return rows


async def handler(stream):
    async for chunk in stream:
        async with chunk:
            match chunk:
                case {"kind": kind}:
                    if kind:
                        return kind
    return None
"""

NAMES_PY = """
import math
from typing import TypeVar

T = TypeVar("T")
x = 1
_ = 2
total, n = 0, 1


def f(a, b=0, *c, **d):
    e = a + b
    e = e + 1
    for i in range(2):
        e += i
    squares = [j * j for j in c]
    g = lambda q: q
    with open(__file__) as h:
        pass
    try:
        pass
    except OSError as k:
        pass
    if (m := len(squares)):
        return m
    return math.pi, g, d, h, k, squares, e, total


class P:
    z = 0

    def method(self, y):
        return y
"""

MAGIC_PY = """
RATE = 0.25
LIMITS = {"low": 10, "high": 20}


class Config:
    RETRIES = 3
    timeout = 30


def price(amount, tax=0.19):
    rows = [amount] * 3
    first = rows[5]
    part = rows[2:7]
    neg = -1 + 2 + 0 + 1 + 0.0
    cold = -40
    flag = True
    return amount * 1.5 + first + neg + len(part) + cold + flag + tax
"""

TEST_PY = """
def test_value():
    v = 40
    assert v + 2 == 42
"""

BROKEN_PY = """
def oops(:
    # comment
    return 1
"""
# generic rule: "def oops(:" and "return 1" -> 2

APP_JS = """
// header comment
/* block
 * comment
 */
import fs from "fs"; /* trailing */

function load(path) {
  if (path) {
    for (const line of path) {
      while (line) {
        if (line === "}") {
          return line;
        }
      }
    }
  }
  return null;
}
"""
# code: import + 12 function lines -> 13; deep_nesting at line 11 (the 4th control block)

MAIN_C = """
#include <stdio.h>
// comment
int main(void)
{
    return 0;
}
"""
# #include is code in C -> 5


def _long_python(body_lines: int, name: str, *, is_async: bool = False) -> str:
    head = f"{'async ' if is_async else ''}def {name}(count):\n"
    return head + "    count += 1\n" * (body_lines - 1) + "    return count\n"


def _long_js(body_lines: int) -> str:
    return "function big(count) {\n" + "  count += 1;\n" * (body_lines - 1) + "}\n"


# --------------------------------------------------------------------------------------------------
# lines of code


@pytest.mark.parametrize(
    ("filename", "source", "loc"),
    [
        ("docs.py", DOCSTRINGS_PY, 6),
        ("broken.py", BROKEN_PY, 2),
        ("app.js", APP_JS, 13),
        ("main.c", MAIN_C, 5),
        ("run.sh", "#!/bin/sh\n# comment\n\necho hi\n", 1),
        ("inline.ts", "const a = 1; // note\n/* one-line block */\n/* block */ const b = 2;\n", 2),
    ],
)
def test_loc_per_language(tmp_path: Path, filename: str, source: str, loc: int) -> None:
    measurement = _measure(tmp_path, {filename: source})
    assert measurement.loc == loc
    assert measurement.files == 1


def test_docstring_file_has_no_violations(tmp_path: Path) -> None:
    assert _measure(tmp_path, {"docs.py": DOCSTRINGS_PY}).violations == []


# --------------------------------------------------------------------------------------------------
# Python rules


def test_long_function_boundary(tmp_path: Path) -> None:
    source = (
        _long_python(MAX_FUNCTION_LINES - 1, "fits")
        + "\n\n"
        + _long_python(MAX_FUNCTION_LINES, "too_long")
        + "\n\n"
        + _long_python(MAX_FUNCTION_LINES + 10, "slow", is_async=True)
    )
    measurement = _measure(tmp_path, {"long.py": source})
    fits_lines = MAX_FUNCTION_LINES  # def + body
    too_long_line = fits_lines + 3
    slow_line = too_long_line + MAX_FUNCTION_LINES + 1 + 2
    assert _of(measurement, "long_function") == [
        ("long.py", too_long_line, "too_long spans 51 lines (limit 50)"),
        ("long.py", slow_line, "slow spans 61 lines (limit 50)"),
    ]
    assert measurement.violation_counts() == {
        "long_function": 2,
        "deep_nesting": 0,
        "single_letter_name": 0,
        "magic_number": 0,
    }


def test_deep_nesting(tmp_path: Path) -> None:
    measurement = _measure(tmp_path, {"nest.py": NESTING_PY})
    assert _of(measurement, "deep_nesting") == [
        ("nest.py", 13, "deep nests blocks 4 deep (limit 3)"),
        ("nest.py", 38, "else_if nests blocks 4 deep (limit 3)"),
        ("nest.py", 53, "deepest_wins nests blocks 5 deep (limit 3)"),
        ("nest.py", 74, "handler nests blocks 4 deep (limit 3)"),
    ]
    assert measurement.violation_counts()["deep_nesting"] == 4


def test_single_letter_names(tmp_path: Path) -> None:
    measurement = _measure(tmp_path, {"names.py": NAMES_PY})
    found = [
        (line, detail.split("'")[1], detail.split(" in ")[-1])
        for _, line, detail in _of(measurement, "single_letter_name")
    ]
    assert found == [
        (5, "x", "module"),
        (7, "n", "module"),
        (10, "f", "module"),
        (10, "a", "f"),
        (10, "b", "f"),
        (10, "c", "f"),
        (10, "d", "f"),
        (11, "e", "f"),
        (16, "g", "f"),
        (23, "m", "f"),
        (28, "P", "module"),
        (29, "z", "P"),
        (31, "y", "method"),
    ]
    assert measurement.violation_counts() == {
        "long_function": 0,
        "deep_nesting": 0,
        "single_letter_name": 13,
        "magic_number": 0,
    }


def test_magic_numbers(tmp_path: Path) -> None:
    measurement = _measure(tmp_path, {"magic.py": MAGIC_PY})
    assert [(line, detail) for _, line, detail in _of(measurement, "magic_number")] == [
        (7, "literal 30"),
        (10, "literal 0.19"),
        (11, "literal 3"),
        (15, "literal -40"),
        (17, "literal 1.5"),
    ]
    assert measurement.violation_counts()["magic_number"] == 5
    assert measurement.violation_counts()["single_letter_name"] == 0


@pytest.mark.parametrize("rel", ["test_value.py", "value_test.py", "tests/helpers.py", "pkg/test/check.py"])
def test_test_files_skip_magic_numbers_and_their_violations_are_listed_apart(tmp_path: Path, rel: str) -> None:
    measurement = _measure(tmp_path, {rel: TEST_PY})
    assert measurement.violations == []  # not scored for readability
    assert [(v.kind, v.file) for v in measurement.test_violations] == [("single_letter_name", rel)]
    assert measurement.test_loc == measurement.loc == 3


def test_is_test_file() -> None:
    assert is_test_file("tests/test_x.py") and is_test_file("x_test.py") and is_test_file("conftest.py")
    assert not is_test_file("src/testing.py") and not is_test_file("contest.py")


def test_syntax_error_does_not_crash(tmp_path: Path) -> None:
    measurement = _measure(tmp_path, {"broken.py": BROKEN_PY, "ok.py": "value = 1\n"})
    assert measurement.loc == 3
    assert measurement.files == 2
    assert measurement.violations == []
    assert "broken.py (syntax error at line 1)" in measurement.counted


# --------------------------------------------------------------------------------------------------
# other languages


def test_brace_language_nesting_and_length(tmp_path: Path) -> None:
    measurement = _measure(tmp_path, {"app.js": APP_JS, "long.js": _long_js(MAX_FUNCTION_LINES + 5)})
    assert measurement.violations == [
        Violation(kind="deep_nesting", file="app.js", line=11, detail="load nests blocks 4 deep (limit 3)"),
        Violation(
            kind="long_function",
            file="long.js",
            line=1,
            detail="big spans 56 lines (limit 50; NLOC 56, cyclomatic complexity 1, 1 parameter)",
        ),
    ]
    assert "JavaScript (2 files): analysed with lizard" in measurement.counted
    assert "single-letter names and magic numbers not counted" in measurement.counted


def test_brace_language_else_if_and_multiline_signature(tmp_path: Path) -> None:
    source = """
    class Box {
      method(
        first,
        second
      ) {
        if (first) {
          return 1;
        } else if (second) {
          for (;;) {
            while (second) {
              break;
            }
          }
        }
      }
    }
    """
    measurement = _measure(tmp_path, {"box.ts": source})
    assert measurement.violations == []  # else-if stays at depth 1: deepest is 3


def test_go_function_with_semicolon_loop(tmp_path: Path) -> None:
    source = """
    package main

    func (s *Server) Handle(w int) error {
    \tfor i := 0; i < w; i++ {
    \t\tif i > 2 {
    \t\t\tswitch i {
    \t\t\tcase 3:
    \t\t\t\tif true {
    \t\t\t\t\treturn nil
    \t\t\t\t}
    \t\t\t}
    \t\t}
    \t}
    \treturn nil
    }
    """
    measurement = _measure(tmp_path, {"main.go": source})
    assert measurement.loc == 14
    assert measurement.violations == [
        Violation(kind="deep_nesting", file="main.go", line=8, detail="Handle nests blocks 4 deep (limit 3)"),
    ]


# --------------------------------------------------------------------------------------------------
# whole tree


def test_whole_tree(tmp_path: Path) -> None:
    files = {
        "pkg/docs.py": DOCSTRINGS_PY,
        "pkg/magic.py": MAGIC_PY,
        "pkg/broken.py": BROKEN_PY,
        "tests/test_pkg.py": TEST_PY,
        "web/app.js": APP_JS,
        "native/main.c": MAIN_C,
        "README.md": "# Title\n\nText.\n",
        "config.json": '{"a": 1}\n',
        ".venv/lib/site.py": NAMES_PY,
        "node_modules/dep/index.js": _long_js(80),
        "pkg/__pycache__/docs.py": NAMES_PY,
    }
    measurement = _measure(tmp_path, files)
    # docs 6 + magic 13 (17 lines, 4 blank) + broken 2 + test 3 = 24 Python; app.js 13; main.c 5
    assert measurement.loc_by_language == {"C": 5, "JavaScript": 13, "Python": 24}
    assert measurement.loc == 42
    assert measurement.files == 6
    assert measurement.languages == ["C", "JavaScript", "Python"]
    assert measurement.violation_counts() == {
        "long_function": 0,
        "deep_nesting": 1,
        "single_letter_name": 0,
        "magic_number": 5,
    }
    assert [v.file for v in measurement.violations] == ["pkg/magic.py"] * 5 + ["web/app.js"]
    assert [(v.kind, v.file) for v in measurement.test_violations] == [("single_letter_name", "tests/test_pkg.py")]
    assert measurement.test_loc == 3
    assert measurement.name == "impl"
    assert measurement.tests is None
    assert (measurement.llm_calls, measurement.fix_cycles, measurement.generation_ms) == (0, 0, 0)
    for language in ("C (1 file)", "JavaScript (1 file)", "Python (4 files)"):
        assert language in measurement.counted
    assert "pkg/broken.py" in measurement.counted


def test_empty_tree(tmp_path: Path) -> None:
    measurement = measure_tree(tmp_path)
    assert (measurement.loc, measurement.files, measurement.languages) == (0, 0, [])
    assert "No recognised source files" in measurement.counted


def test_custom_exclude_and_missing_root(tmp_path: Path) -> None:
    _write(tmp_path, {"gen/big.py": "value = 1\n", "src/main.py": "value = 1\n"})
    assert measure_tree(tmp_path, exclude_dirs=("gen",)).files == 1
    with pytest.raises(NotADirectoryError):
        measure_tree(tmp_path / "missing")


def test_source_files_lists_what_is_measured(tmp_path: Path) -> None:
    _write(tmp_path, {"b.py": "value = 1\n", "a/c.js": "let v;\n", "notes.md": "# n\n", ".git/x.py": "value = 1\n"})
    assert [rel for _, rel in source_files(tmp_path)] == ["a/c.js", "b.py"]


def test_is_test_file_other_languages() -> None:
    for rel in ("bucket_test.go", "src/bucket.test.ts", "web/app.spec.js", "src/__tests__/app.js", "spec/a_spec.rb"):
        assert is_test_file(rel), rel
    for rel in ("src/bucket.go", "latest.py", "src/testing.js", "attest/x.py"):
        assert not is_test_file(rel), rel


def test_the_shipped_example_tests_do_not_count_toward_readability(tmp_path: Path) -> None:
    """The example's test file names a bucket `b` and a fake clock `t`; every implementation ships it unchanged,
    so it must not eliminate them all (it did: 17 violations per 134 LOC gave readability 1)."""
    _write(tmp_path, {"token_bucket.py": TOKEN_BUCKET_PY, "tests/test_token_bucket.py": SHIPPED_TESTS.read_text()})
    measurement = measure_tree(tmp_path)
    assert measurement.violations == []
    assert {v.kind for v in measurement.test_violations} == {"single_letter_name"}
    assert {v.file for v in measurement.test_violations} == {"tests/test_token_bucket.py"}
    assert measurement.test_loc > 0 and measurement.loc > measurement.test_loc
    assert SCORE_TABLES["readability"].lookup(readability_rate(measurement)) == 5
    assert "Test files (1)" in measurement.counted


def test_dependency_cache_and_build_directories_are_skipped(tmp_path: Path) -> None:
    skipped = [
        "myenv/lib/python3.11/site-packages/dep.py",
        "node_modules/dep/index.js",
        ".tox/py311/lib/x.py",
        ".mypy_cache/3.11/x.py",
        "build/lib/pkg/app.py",
        "dist/pkg/app.py",
        "pkg.egg-info/x.py",
        "pkg/__pycache__/app.py",
        ".git/hooks/x.py",
        ".speedrun/backups/app.py",
        "venv/x.py",
    ]
    _write(
        tmp_path,
        {
            "pkg/app.py": "value = 1\n",
            "myenv/pyvenv.cfg": "home = /usr/bin\n",
            **{rel: "value = 1\n" for rel in skipped},
        },
    )
    assert [rel for _, rel in source_files(tmp_path)] == ["pkg/app.py"]
    assert measure_tree(tmp_path).files == 1


@pytest.mark.parametrize(
    ("limit", "value", "files", "says"),
    [
        ("MAX_TREE_ENTRIES", 10, {f"data/{i}.txt": "x" for i in range(12)}, "more than 10 files and directories"),
        ("MAX_SOURCE_FILES", 3, {f"src/m{i}.py": "value = 1\n" for i in range(4)}, "more than 3 source files"),
        (
            "MAX_SOURCE_BYTES",
            100,
            {"src/a.py": "value = 1\n" * 8, "src/b.py": "value = 1\n" * 8},
            "more than 100 bytes of source code",
        ),
    ],
)
def test_a_tree_over_a_limit_is_refused_naming_the_path_and_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str, value: int, files: dict[str, str], says: str
) -> None:
    monkeypatch.setattr(speedrun.judge.measure, limit, value)
    _write(tmp_path, files)
    with pytest.raises(InputError) as caught:
        measure_tree(tmp_path, name="alpha")
    message = str(caught.value)
    assert says in message and str(tmp_path) in message and "'alpha'" in message
    assert "own directory" in message
    with pytest.raises(InputError):
        source_files(tmp_path)  # the judge's source excerpts obey the same bound


def test_the_file_system_root_is_refused_fast() -> None:
    import time

    started = time.monotonic()
    with pytest.raises(InputError, match=r"^implementation '/' at / is too large to judge"):
        measure_tree(Path("/"), name="/")
    assert time.monotonic() - started < 20
