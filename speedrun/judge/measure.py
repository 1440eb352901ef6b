"""Deterministic measurement of one implementation tree: lines of code and readability violations.

:func:`measure_tree` walks a directory, recognises source files by extension and returns a
:class:`~speedrun.state.judge.Measurement`. No model is involved; the same tree always gives the same
numbers. What exactly is counted is also written, in words, into ``Measurement.counted`` so the judge's
worksheet can show it.

Lines of code (LOC)
    A line counts when it is neither blank nor a comment.

    * Python: the file is tokenized; a line counts when a token other than a comment, newline or
      indentation starts on it or spans it. Docstrings (a string expression that is the first
      statement of a module, class or function) are documentation, not code, and do not count.
    * Other languages: lizard's NLOC (https://github.com/terryyin/lizard), from its tokenizer for the
      language: a line counts when a token that is not a comment is on it, so code after a comment on the
      same line counts, a line inside a ``/* */`` block or a string with ``//`` in it is judged correctly,
      and a string spanning lines counts every line. C/C++ ``#include`` lines count, other preprocessor
      lines (``#define``, ``#if``, ``#pragma``) do not.
    * Shell has no lizard reader: lines that are blank or start with ``#`` (``#!`` included) do not count.
    * A Python file that does not parse gets lizard's NLOC and no violations; the file is named in
      ``counted``. A file that lizard itself fails on counts its non-blank lines, and is named too.

Readability rules (Python, via :mod:`ast`)
    * ``long_function``: a ``def``/``async def`` spanning more than :data:`MAX_FUNCTION_LINES` lines
      (decorators excluded, nested functions measured on their own as well).
    * ``deep_nesting``: block depth greater than :data:`MAX_NESTING` inside a function body, counting
      ``if``/``for``/``while``/``with``/``try``/``match`` (and async forms). An ``elif`` stays at the level
      of its ``if`` (an ``else:`` holding an indented ``if`` is one level deeper). Nested functions,
      classes and lambdas start their own count. One violation per function, at its deepest block.
    * ``single_letter_name``: a one-letter name bound by an assignment (``=``, annotated, augmented,
      walrus), used as a ``def`` parameter, or defined as a function or class. Exempt: loop targets
      (``for`` and comprehensions), ``_``, lambda parameters; ``with ... as``, ``except ... as`` and
      imports are not assignments for this rule. Reported once per name per scope (module, class,
      function) at its first binding.
    * ``magic_number``: a numeric literal other than 0, 1, -1 and 2 (a leading minus sign belongs to
      the literal), except inside an ALL_CAPS constant assignment at module or class level, and
      except as a subscript index or slice bound (``x[3]``, ``x[2:10]``). Default argument values do
      count. Test files (``test_*.py``, ``*_test.py``, ``conftest.py`` or anything under a ``tests/`` or
      ``test/`` directory) are skipped for this rule only: literal expected values are normal there.

Readability rules (other languages, via lizard)
    lizard finds the functions (named, anonymous, methods, closures it recognises) of JavaScript,
    TypeScript, Go, Rust, Java, C, C++, C#, Kotlin, Swift, Scala, PHP and Ruby, with their first and last
    line, NLOC, cyclomatic complexity (CCN) and parameter count.

    * ``long_function``: a function whose lizard extent (first to last line) spans more than
      :data:`MAX_FUNCTION_LINES` lines; the detail also gives its NLOC, CCN and parameter count.
    * ``deep_nesting`` (brace languages, not Ruby): counted on lizard's tokens, so braces inside strings,
      comments, template literals and regular expressions are never seen. A ``{`` opens a control block
      when the tokens since the last ``;``, ``{`` or ``}`` hold a control keyword of the language (``if``,
      ``else``, ``for``, ``while``, ``do``, ``switch``, ``try``, ``catch``, ``finally``, plus each language's
      own: ``match``/``loop`` in Rust, ``select`` in Go, ``when`` in Kotlin, ``guard`` in Swift, ...), not
      after a ``.`` (``promise.catch(...)`` is a call). A block's depth is the number of open control blocks
      of the same lizard function, itself included, so ``} else if (...) {`` stays at the level of its
      ``if``, and a callback that lizard sees as a function starts its own count. Control statements
      without braces (``if (a) if (b) f();``) and ``case`` labels do not add depth. Same limit as Python,
      one violation per function at its deepest block.
    * Single-letter names and magic numbers are not counted outside Python.
    * Known lizard 1.24 limits: C/C++ preprocessor lines other than ``#include`` are not NLOC; a JavaScript
      or TypeScript function holding a template literal inside nested blocks may be reported as ending at
      the next top-level statement rather than at its closing brace.
    * ``counted`` reports, per language, how many functions lizard found, the highest and mean
      cyclomatic complexity and the most parameters, naming the function.

Test files and readability
    Violations found in test files (see :func:`is_test_file`) are reported apart, in
    ``Measurement.test_violations``, and do not count toward the readability score; their lines are
    ``Measurement.test_loc``. Tests are often shipped with the task, identical for every implementation
    (``b`` for a bucket, ``t`` for a fake clock), so counting them would punish every implementation for
    code none of them wrote, and could eliminate all of them. The quality of the tests an implementation
    did write is still judged: the maintainability checklist asks whether its tests are readable.

What is walked, and how much
    Directories that are not the implementation's own code are skipped: every hidden directory
    (``.git``, ``.venv``, ``.tox``, ``.mypy_cache``, ``.speedrun``, ...), any directory holding a
    ``pyvenv.cfg`` (a virtualenv, whatever its name), and the names in :data:`DEFAULT_EXCLUDE_DIRS`
    (``node_modules``, ``__pycache__``, ``venv``, ``build``, ``dist``, ``site-packages``, ``*.egg-info``, ...).
    Symlinks are not followed. The walk stops with an :class:`~speedrun.errors.InputError` naming the path
    and the limit once it has seen more than :data:`MAX_TREE_ENTRIES` files and directories, more than
    :data:`MAX_SOURCE_FILES` source files, or more than :data:`MAX_SOURCE_BYTES` bytes of source: an
    implementation is a project, not a file system, and ``judge /`` must fail in a second rather than walk
    the disk for minutes.

lizard is imported on first use, not with this module: the MCP server imports the judge at start-up.
"""

from __future__ import annotations

import ast
import io
import os
import re
import stat
import token
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from speedrun.errors import InputError
from speedrun.state.judge import Measurement, Violation

__all__ = [
    "ALLOWED_NUMBERS",
    "DEFAULT_EXCLUDE_DIRS",
    "LANGUAGES",
    "MAX_FILE_BYTES",
    "MAX_FUNCTION_LINES",
    "MAX_NESTING",
    "MAX_SOURCE_BYTES",
    "MAX_SOURCE_FILES",
    "MAX_TREE_ENTRIES",
    "is_skipped_dir",
    "is_test_file",
    "measure_tree",
    "source_files",
]

#: A function longer than this many lines is a ``long_function``.
MAX_FUNCTION_LINES = 50
#: Block nesting deeper than this inside a function is ``deep_nesting``.
MAX_NESTING = 3
#: Numeric literals that are never magic.
ALLOWED_NUMBERS: frozenset[int] = frozenset({0, 1, -1, 2})
#: Files larger than this are skipped (generated or vendored blobs); they are named in ``counted``.
MAX_FILE_BYTES = 2_000_000

#: The walk stops past this many files and directories (outside skipped directories).
MAX_TREE_ENTRIES = 20_000
#: ... or past this many recognised source files ...
MAX_SOURCE_FILES = 2_000
#: ... or past this many bytes of recognised source.
MAX_SOURCE_BYTES = 20_000_000

#: Directory names never measured (besides hidden directories and virtualenvs, which are always skipped):
#: dependencies, caches and build output, not the implementation's own code.
DEFAULT_EXCLUDE_DIRS: tuple[str, ...] = (
    "__pycache__",
    "node_modules",
    "bower_components",
    "venv",
    "site-packages",
    "build",
    "dist",
    "htmlcov",
    "__pypackages__",
)

_PY = "Python"

#: How a language is analysed: Python's ast, lizard with block nesting on braces, lizard's functions only
#: (Ruby ends blocks with ``end``), or LOC by lines (no lizard reader).
Analysis = Literal["python", "lizard+braces", "lizard", "lines"]

#: Extension -> (language, analysis). Every lizard extension here is one lizard reads itself.
LANGUAGES: dict[str, tuple[str, Analysis]] = {
    ".py": (_PY, "python"),
    ".js": ("JavaScript", "lizard+braces"),
    ".mjs": ("JavaScript", "lizard+braces"),
    ".cjs": ("JavaScript", "lizard+braces"),
    ".jsx": ("JavaScript", "lizard+braces"),
    ".ts": ("TypeScript", "lizard+braces"),
    ".tsx": ("TypeScript", "lizard+braces"),
    ".go": ("Go", "lizard+braces"),
    ".rs": ("Rust", "lizard+braces"),
    ".java": ("Java", "lizard+braces"),
    ".c": ("C", "lizard+braces"),
    ".h": ("C", "lizard+braces"),
    ".cc": ("C++", "lizard+braces"),
    ".cpp": ("C++", "lizard+braces"),
    ".cxx": ("C++", "lizard+braces"),
    ".hpp": ("C++", "lizard+braces"),
    ".hh": ("C++", "lizard+braces"),
    ".cs": ("C#", "lizard+braces"),
    ".kt": ("Kotlin", "lizard+braces"),
    ".swift": ("Swift", "lizard+braces"),
    ".scala": ("Scala", "lizard+braces"),
    ".php": ("PHP", "lizard+braces"),
    ".rb": ("Ruby", "lizard"),
    ".sh": ("Shell", "lines"),
    ".bash": ("Shell", "lines"),
}


_TEST_DIRS = frozenset({"tests", "test", "__tests__", "spec"})


def is_test_file(rel_path: str) -> bool:
    """True for test code: ``test_*``, ``*_test.*``, ``*.test.*``, ``*.spec.*``, ``conftest.py``, or any file
    under a ``tests``, ``test``, ``__tests__`` or ``spec`` directory."""
    parts = rel_path.split("/")
    base = parts[-1]
    stem = base.split(".", 1)[0]
    if base.startswith("test_") or stem.endswith("_test") or base == "conftest.py":
        return True
    if ".test." in base or ".spec." in base:
        return True
    return any(part in _TEST_DIRS for part in parts[:-1])


# --------------------------------------------------------------------------------------------------
# walking


@dataclass
class _FileResult:
    rel: str
    language: str
    loc: int
    violations: list[Violation] = field(default_factory=list)
    functions: list[_Function] = field(default_factory=list)  # lizard languages only
    unparsed: str | None = None  # why no violations could be looked for (a syntax error, a lizard failure)


def is_skipped_dir(path: Path, exclude_dirs: Iterable[str] = DEFAULT_EXCLUDE_DIRS) -> bool:
    """True for a directory the walk does not enter: hidden, a virtualenv, an egg-info or an excluded name."""
    name = path.name
    return (
        name.startswith(".")
        or name in set(exclude_dirs)
        or name.endswith(".egg-info")
        or os.path.isfile(path / "pyvenv.cfg")
    )  # isfile: False, not an error, on unreadable places


def _too_large(root: Path, name: str, what: str) -> InputError:
    who = f"implementation {name[:80]!r} at " if name else ""
    where = str(root)[:200]
    return InputError(
        f"{who}{where} is too large to judge: it holds {what}. Point the judge at the implementation's own "
        "directory, not a parent of it or the file system (dependencies, virtualenvs, hidden directories, "
        "build output and caches are skipped already)."
    )


def _iter_source_files(
    root: Path, exclude_dirs: Iterable[str], name: str = ""
) -> tuple[list[tuple[Path, str]], list[str]]:
    """Recognised source files under ``root`` (sorted), plus relative paths skipped for size.

    Raises InputError once the tree exceeds :data:`MAX_TREE_ENTRIES`, :data:`MAX_SOURCE_FILES` or
    :data:`MAX_SOURCE_BYTES`.
    """
    excluded = set(exclude_dirs)
    found: list[tuple[Path, str]] = []
    too_big: list[str] = []
    entries = source_bytes = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not is_skipped_dir(here / d, excluded))
        entries += len(dirnames) + len(filenames)
        if entries > MAX_TREE_ENTRIES:
            raise _too_large(root, name, f"more than {MAX_TREE_ENTRIES:,} files and directories (the limit)")
        for filename in sorted(filenames):
            path = here / filename
            if path.suffix.lower() not in LANGUAGES:
                continue
            try:
                info = path.lstat()
            except OSError:
                continue  # vanished or unreadable: not part of what can be judged
            if not stat.S_ISREG(info.st_mode):
                continue  # symlinks, FIFOs, devices
            rel = path.relative_to(root).as_posix()
            size = info.st_size
            if size > MAX_FILE_BYTES:
                too_big.append(rel)
                continue
            source_bytes += size
            found.append((path, rel))
            if len(found) > MAX_SOURCE_FILES:
                raise _too_large(root, name, f"more than {MAX_SOURCE_FILES:,} source files (the limit)")
            if source_bytes > MAX_SOURCE_BYTES:
                raise _too_large(root, name, f"more than {MAX_SOURCE_BYTES:,} bytes of source code (the limit)")
    found.sort(key=lambda item: item[1])
    return found, too_big


def source_files(root: Path, exclude_dirs: Iterable[str] = DEFAULT_EXCLUDE_DIRS) -> list[tuple[Path, str]]:
    """(path, relative POSIX path) of every file :func:`measure_tree` measures, sorted by relative path.

    Same rules and limits: recognised extensions only, skipped directories pruned, symlinks and files
    over :data:`MAX_FILE_BYTES` skipped; InputError when the tree is too large.
    """
    return _iter_source_files(Path(root), exclude_dirs)[0]


def measure_tree(
    root: Path,
    *,
    name: str = "",
    exclude_dirs: Iterable[str] = DEFAULT_EXCLUDE_DIRS,
) -> Measurement:
    """Measure every recognised source file under ``root``.

    ``tests`` is None and ``llm_calls``, ``fix_cycles``, ``generation_ms`` are 0: the caller fills them.
    Raises ``NotADirectoryError`` when ``root`` is not a directory, InputError when it is too large
    (see the module docstring). Blocking: async callers run it in a thread.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"cannot measure {root}: not a directory")
    files, too_big = _iter_source_files(root, exclude_dirs, name)
    results: list[_FileResult] = []
    for path, rel in files:
        try:
            results.append(_measure_file(path, rel))
        except OSError:
            too_big.append(f"{rel} (unreadable)")

    loc_by_language: dict[str, int] = {}
    files_by_language: dict[str, int] = {}
    violations: list[Violation] = []
    test_violations: list[Violation] = []
    test_loc = 0
    for result in results:
        loc_by_language[result.language] = loc_by_language.get(result.language, 0) + result.loc
        files_by_language[result.language] = files_by_language.get(result.language, 0) + 1
        if is_test_file(result.rel):
            test_violations.extend(result.violations)
            test_loc += result.loc
        else:
            violations.extend(result.violations)
    for found in (violations, test_violations):
        found.sort(key=lambda v: (v.file, v.line, v.kind))  # stable: source order within a line

    languages = sorted(loc_by_language)
    return Measurement(
        name=name,
        loc=sum(loc_by_language.values()),
        test_loc=test_loc,
        files=len(results),
        languages=languages,
        loc_by_language=dict(sorted(loc_by_language.items())),
        violations=violations,
        test_violations=test_violations,
        counted=_describe(languages, files_by_language, results, too_big),
    )


def _measure_file(path: Path, rel: str) -> _FileResult:
    language, analysis = LANGUAGES[path.suffix.lower()]
    text = path.read_bytes().decode("utf-8", errors="replace")
    if analysis == "python":
        return _measure_python(text, rel)
    if analysis == "lines":
        return _FileResult(rel=rel, language=language, loc=_shell_loc(text))
    return _measure_with_lizard(text, rel, language, nesting=analysis == "lizard+braces")


def _describe(
    languages: list[str], files_by_language: dict[str, int], results: list[_FileResult], too_big: list[str]
) -> str:
    parts = [] if languages else ["No recognised source files."]
    for language in languages:
        count = files_by_language[language]
        prefix = f"{language} ({count} file{'s' if count != 1 else ''}): "
        parts.append(prefix + _how_counted(language, [r for r in results if r.language == language]))
    unparsed = [r for r in results if r.unparsed]
    if unparsed:
        listed = "; ".join(f"{r.rel} ({r.unparsed})" for r in unparsed)
        parts.append(
            f"Not parsed, so no violations (LOC is lizard's NLOC, or the non-blank lines where lizard failed): "
            f"{listed}."
        )
    if too_big:
        parts.append(f"Skipped as larger than {MAX_FILE_BYTES} bytes or unreadable: {', '.join(too_big)}.")
    tests = [r for r in results if is_test_file(r.rel)]
    if tests:
        parts.append(
            f"Test files ({len(tests)}): their LOC counts, their violations are listed apart and not "
            "scored for readability."
        )
    parts.append(
        "Other files (docs, config, data) not counted; hidden directories, virtualenvs, dependencies, "
        "build output and caches skipped."
    )
    return " ".join(parts)


def _how_counted(language: str, results: list[_FileResult]) -> str:
    """What was counted for one language, and how, in words; for lizard languages also its function facts."""
    analysis = next(how for name, how in LANGUAGES.values() if name == language)
    if analysis == "python":
        return (
            "LOC via tokenize (blank lines, comments and docstrings excluded); parsed with ast "
            f"(4 rules: functions over {MAX_FUNCTION_LINES} lines, nesting over {MAX_NESTING}, "
            "single-letter names, magic numbers; magic numbers not counted in test files)."
        )
    if analysis == "lines":
        return "LOC only (blank lines and # comment lines excluded); no readability rules."
    nesting = (
        f"control-block nesting over {MAX_NESTING} counted on lizard's tokens"
        if analysis == "lizard+braces"
        else "nesting not counted"
    )
    return (
        f"analysed with lizard: LOC is its NLOC (blank and comment-only lines excluded); functions over "
        f"{MAX_FUNCTION_LINES} lines by lizard's extents; {nesting}; single-letter names and magic numbers "
        f"not counted. {_function_facts([f for r in results for f in r.functions])}"
    )


def _function_facts(functions: list[_Function]) -> str:
    """lizard's complexity and parameter facts over the functions of one language, in one sentence."""
    if not functions:
        return "lizard found no functions."
    complex_one = max(functions, key=lambda f: f.ccn)  # max() keeps the first of equals: walk order
    widest = max(functions, key=lambda f: f.parameters)
    mean = sum(f.ccn for f in functions) / len(functions)
    count = len(functions)
    return (
        f"lizard found {count} function{'s' if count != 1 else ''}: cyclomatic complexity up to "
        f"{complex_one.ccn} ({complex_one.where}), mean {mean:.1f}; up to {widest.parameters} "
        f"parameter{'s' if widest.parameters != 1 else ''} ({widest.where})."
    )


def _shell_loc(text: str) -> int:
    """Lines that are neither blank nor ``#`` comments (lizard has no shell reader)."""
    return sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


# --------------------------------------------------------------------------------------------------
# Python


def _measure_python(text: str, rel: str) -> _FileResult:
    try:
        tree = ast.parse(text, filename=rel)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        where = f"line {line}" if line else "unparseable"
        return _FileResult(
            rel=rel,
            language=_PY,
            loc=_lizard_nloc(text, rel),
            unparsed=f"syntax error at {where}" if line else where,
        )
    try:
        loc = _python_loc(text, _docstring_spans(tree))
    except (tokenize.TokenError, SyntaxError):
        loc = _lizard_nloc(text, rel)
    checker = _PythonChecker(rel, skip_magic=is_test_file(rel))
    checker.run(tree)
    return _FileResult(rel=rel, language=_PY, loc=loc, violations=checker.violations)


_Pos = tuple[int, int]
_NON_CODE_TOKENS = {token.COMMENT, token.NL, token.NEWLINE, token.INDENT, token.DEDENT, token.ENCODING, token.ENDMARKER}


def _docstring_spans(tree: ast.Module) -> list[tuple[_Pos, _Pos]]:
    """(start, end) positions of every docstring expression in the module."""
    spans: list[tuple[_Pos, _Pos]] = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if not body:
            continue
        first = body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
            and first.end_lineno is not None
            and first.end_col_offset is not None
        ):
            spans.append(((first.lineno, first.col_offset), (first.end_lineno, first.end_col_offset)))
    return spans


def _python_loc(text: str, docstrings: list[tuple[_Pos, _Pos]]) -> int:
    """Lines on which a code token starts or that a code token spans; docstring tokens are not code."""
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in _NON_CODE_TOKENS:
            continue
        if any(start <= tok.start and tok.end <= end for start, end in docstrings):
            continue
        code_lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(code_lines)


_BLOCKS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.TryStar, ast.Match)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_CONSTANT_NAME = re.compile(r"^_*[A-Z][A-Z0-9_]*$")


def _literal_number(node: ast.AST) -> int | float | complex | None:
    """The numeric value of a literal (with its sign), or None for anything else (bools included)."""
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float, complex))
        and not isinstance(node.value, bool)
    ):
        return sign * node.value
    return None


def _format_number(node: ast.AST) -> str:
    return ast.unparse(node)


def _bound_names(target: ast.AST) -> Iterable[ast.Name]:
    """Plain names bound by an assignment target (tuple/list unpacking and starred included)."""
    if isinstance(target, ast.Name):
        yield target
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _bound_names(element)
    elif isinstance(target, ast.Starred):
        yield from _bound_names(target.value)


class _PythonChecker:
    """Collects the four Python readability violations for one parsed file."""

    def __init__(self, rel: str, *, skip_magic: bool) -> None:
        self.rel = rel
        self.skip_magic = skip_magic
        self.violations: list[Violation] = []

    def _add(self, kind: str, line: int, detail: str) -> None:
        self.violations.append(Violation(kind=kind, file=self.rel, line=line, detail=detail))  # type: ignore[arg-type]

    def run(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._check_length(node)
                self._check_nesting(node)
        self._check_names(tree, "module")
        if not self.skip_magic:
            self._check_numbers(tree)

    # long_function -------------------------------------------------------------------------------

    def _check_length(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        span = (node.end_lineno or node.lineno) - node.lineno + 1
        if span > MAX_FUNCTION_LINES:
            self._add("long_function", node.lineno, f"{node.name} spans {span} lines (limit {MAX_FUNCTION_LINES})")

    # deep_nesting --------------------------------------------------------------------------------

    def _check_nesting(self, func: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        deepest: list[tuple[int, int]] = []  # (depth, line) of the deepest block, first one wins
        self._walk_blocks(func.body, 0, deepest)
        if deepest and deepest[0][0] > MAX_NESTING:
            depth, line = deepest[0]
            self._add("deep_nesting", line, f"{func.name} nests blocks {depth} deep (limit {MAX_NESTING})")

    def _walk_blocks(self, statements: list[ast.stmt], depth: int, deepest: list[tuple[int, int]]) -> None:
        for stmt in statements:
            if isinstance(stmt, _SCOPES):
                continue  # nested functions and classes are measured on their own
            if isinstance(stmt, _BLOCKS):
                self._enter_block(stmt, depth + 1, deepest)

    def _enter_block(self, stmt: ast.stmt, depth: int, deepest: list[tuple[int, int]]) -> None:
        if not deepest or depth > deepest[0][0]:
            deepest[:] = [(depth, stmt.lineno)]
        if isinstance(stmt, ast.Match):
            for case in stmt.cases:
                self._walk_blocks(case.body, depth, deepest)
            return
        for name in ("body", "orelse", "finalbody"):
            children = getattr(stmt, name, None) or []
            if (
                name == "orelse"
                and isinstance(stmt, ast.If)
                and len(children) == 1
                and isinstance(children[0], ast.If)
                and children[0].col_offset == stmt.col_offset
            ):
                self._enter_block(children[0], depth, deepest)  # elif: same level as its if
                continue
            self._walk_blocks(children, depth, deepest)
        for handler in getattr(stmt, "handlers", None) or []:
            self._walk_blocks(handler.body, depth, deepest)

    # single_letter_name --------------------------------------------------------------------------

    def _check_names(self, scope: ast.AST, scope_name: str) -> None:
        """Report single-letter bindings of ``scope`` (once per name), then recurse into child scopes."""
        seen: set[str] = set()

        def report(name: str, line: int, how: str) -> None:
            if len(name) == 1 and name != "_" and name not in seen:
                seen.add(name)
                self._add("single_letter_name", line, f"'{name}' {how} in {scope_name}")

        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = scope.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if arg is not None:
                    report(arg.arg, arg.lineno, "is a parameter")

        children: list[ast.AST] = []
        for node in _scope_nodes(scope):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                children.append(node)
            for name, line, how in _bindings(node):
                report(name, line, how)
        for child in children:
            self._check_names(child, getattr(child, "name", scope_name))

    # magic_number --------------------------------------------------------------------------------

    def _check_numbers(self, tree: ast.Module) -> None:
        exempt: set[int] = set()  # id() of literal nodes that are exempt
        owners: list[ast.Module | ast.ClassDef] = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef))]
        for body_owner in owners:
            for stmt in body_owner.body:
                if _is_constant_assignment(stmt):
                    exempt.update(id(n) for n in ast.walk(stmt))
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript):
                exempt.update(id(n) for n in _index_literals(node.slice))
        signed: set[int] = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.expr) or id(node) in exempt or id(node) in signed:
                continue  # numeric literals are expressions
            value = _literal_number(node)
            if value is None:
                continue
            if isinstance(node, ast.UnaryOp):
                signed.add(id(node.operand))
            if value in ALLOWED_NUMBERS:
                continue
            self._add("magic_number", node.lineno, f"literal {_format_number(node)}")


def _bindings(node: ast.AST) -> Iterable[tuple[str, int, str]]:
    """(name, line, how) for every name ``node`` binds under the single-letter rule.

    Loop and comprehension targets, ``with``/``except`` aliases and imports are not included, nor are
    type variables (``T = TypeVar("T")``), whose one-letter names are the convention.
    """
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        kind = "class" if isinstance(node, ast.ClassDef) else "function"
        yield node.name, node.lineno, f"names a {kind}"
    elif isinstance(node, ast.Assign) and not _is_type_variable(node.value):
        for target in node.targets:
            yield from ((name.id, name.lineno, "is assigned") for name in _bound_names(target))
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        yield from ((name.id, name.lineno, "is assigned") for name in _bound_names(node.target))
    elif isinstance(node, ast.NamedExpr):
        yield node.target.id, node.target.lineno, "is assigned"


def _is_type_variable(value: ast.AST) -> bool:
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    return called in ("TypeVar", "ParamSpec", "TypeVarTuple")


def _scope_nodes(scope: ast.AST) -> Iterable[ast.AST]:
    """Nodes belonging to ``scope``: descend everywhere except into nested defs, classes and lambdas
    (which are yielded but not entered). The scope's own decorators, defaults and bases are skipped."""
    if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        stack: list[ast.AST] = list(reversed(scope.body))
    else:
        stack = [scope]
    while stack:
        node = stack.pop()
        if node is not scope:
            yield node
        if node is not scope and isinstance(node, _SCOPES):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _is_constant_assignment(stmt: ast.stmt) -> bool:
    """``NAME = ...`` / ``NAME: T = ...`` where every target is an ALL_CAPS name."""
    if isinstance(stmt, ast.Assign):
        targets = [name for target in stmt.targets for name in _bound_names(target)]
        plain = all(isinstance(t, (ast.Name, ast.Tuple, ast.List)) for t in stmt.targets)
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
        targets = list(_bound_names(stmt.target))
        plain = isinstance(stmt.target, ast.Name)
    else:
        return False
    return plain and bool(targets) and all(_CONSTANT_NAME.match(t.id) for t in targets)


def _index_literals(index: ast.AST) -> Iterable[ast.AST]:
    """Literal nodes used directly as a subscript index or slice bound (signs and tuple indexes included)."""
    if isinstance(index, ast.Slice):
        for part in (index.lower, index.upper, index.step):
            if part is not None:
                yield from _index_literals(part)
    elif isinstance(index, ast.Tuple):
        for element in index.elts:
            yield from _index_literals(element)
    elif _literal_number(index) is not None:
        yield index
        if isinstance(index, ast.UnaryOp):
            yield index.operand


# --------------------------------------------------------------------------------------------------
# other languages, via lizard


@dataclass
class _Function:
    """lizard's facts about one function, for the sentence in ``counted``."""

    where: str  # "name in file:line"
    ccn: int
    parameters: int


#: Keywords that open a control block in every brace language measured here (reserved words in all).
_CONTROL_KEYWORDS = frozenset({"if", "else", "for", "while", "do", "switch", "try", "catch", "finally"})
#: ... plus each language's own. Only its reserved words: elsewhere ``lock`` or ``select`` may name a function.
_LANGUAGE_KEYWORDS: dict[str, frozenset[str]] = {
    "JavaScript": frozenset({"with"}),
    "Go": frozenset({"select"}),
    "Rust": frozenset({"loop", "match"}),
    "Java": frozenset({"synchronized"}),
    "C#": frozenset({"foreach", "lock", "using", "checked", "unchecked", "fixed"}),
    "Kotlin": frozenset({"when"}),
    "Swift": frozenset({"guard", "repeat"}),
    "Scala": frozenset({"match"}),
    "PHP": frozenset({"foreach", "elseif"}),
}
#: A keyword right after one of these is a member or method name (``promise.catch(...)``), not a keyword.
_MEMBER_ACCESS = frozenset({".", "?.", "->", "::"})


class _BlockDepth:
    """A lizard token processor: the deepest control block of each function, counted on braces.

    lizard runs it between its tokenizer (comments and blank space already gone) and its language reader,
    so ``reader.context.current_function`` is the function the token belongs to. The nesting rule is in the
    module docstring. ``${`` opens a brace too: lizard's tokens for a template literal's ``${a}`` end with a
    plain ``}``.
    """

    def __init__(self, keywords: frozenset[str]) -> None:
        self.keywords = keywords
        #: id() of a lizard function -> (depth, line) of its deepest control block; the first one wins.
        self.deepest: dict[int, tuple[int, int]] = {}

    def __call__(self, tokens: Iterable[str], reader: Any) -> Iterator[str]:
        context = reader.context
        blocks: list[tuple[bool, object]] = []  # (is a control block, owning function) per open brace
        head = _Head(self.keywords)
        for tok in tokens:
            if tok in ("{", "${"):
                owner = context.current_function
                control = tok == "{" and head.keyword is not None
                if control:
                    self._note_depth(
                        1 + sum(1 for is_control, of in blocks if is_control and of is owner), owner, context
                    )
                blocks.append((control, owner))
                head = _Head(self.keywords)
            elif tok == "}":
                if blocks:  # a stray } (unbalanced source) is ignored
                    blocks.pop()
                head = _Head(self.keywords)
            elif tok == ";" and head.ends_at_semicolon():
                head = _Head(self.keywords)
            else:
                head.add(tok)
            yield tok

    def _note_depth(self, depth: int, owner: object, context: Any) -> None:
        best = self.deepest.get(id(owner))
        if best is None or depth > best[0]:
            self.deepest[id(owner)] = (depth, context.current_line)


class _Head:
    """The tokens between a statement boundary and the next ``{``: does a control keyword lead to the brace?"""

    def __init__(self, keywords: frozenset[str]) -> None:
        self.keywords = keywords
        self.keyword: str | None = None  # the first control keyword outside brackets
        self.after_keyword: str | None = None  # the token after it
        self.brackets = 0
        self.previous = ""

    def add(self, tok: str) -> None:
        if self.keyword is not None and self.after_keyword is None:
            self.after_keyword = tok
        if tok in ("(", "["):
            self.brackets += 1
        elif tok in (")", "]"):
            self.brackets = max(0, self.brackets - 1)
        elif (
            self.keyword is None and self.brackets == 0 and tok in self.keywords and self.previous not in _MEMBER_ACCESS
        ):
            self.keyword = tok
        self.previous = tok

    def ends_at_semicolon(self) -> bool:
        """False inside brackets (``for (;;)``) and in a control header without parentheses: Go's
        ``for i := 0; i < n; i++ {`` and ``if err := f(); err != nil {``."""
        if self.brackets:
            return False
        return self.keyword is None or self.after_keyword in (None, "(")


def _lizard_analysis(text: str, rel: str, extensions: list[Any]) -> Any:
    """lizard's FileInformation for one file (``nloc``, ``function_list``), its reader chosen by extension."""
    import lizard  # type: ignore[import-untyped]  # lazily: the MCP server imports this module at start-up

    # A fresh analyzer per file: extensions hold per-file state, and parallel judges measure in threads.
    analyzer = lizard.FileAnalyzer(lizard.get_extensions(extensions))
    return analyzer.analyze_source_code("source" + Path(rel).suffix.lower(), text)


def _non_blank_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def _lizard_nloc(text: str, rel: str) -> int:
    """lizard's NLOC of a file nothing else could count (a Python file that does not tokenize)."""
    try:
        return int(_lizard_analysis(text, rel, []).nloc)
    except Exception:  # noqa: BLE001 - see _measure_with_lizard
        return _non_blank_lines(text)


def _measure_with_lizard(text: str, rel: str, language: str, *, nesting: bool) -> _FileResult:
    """LOC, long functions and (for brace languages) deep nesting of one file, from lizard."""
    depth = _BlockDepth(_CONTROL_KEYWORDS | _LANGUAGE_KEYWORDS.get(language, frozenset()))
    try:
        info = _lizard_analysis(text, rel, [depth] if nesting else [])
    except Exception as exc:  # noqa: BLE001 - a lizard bug on one odd file must not lose the whole judgement
        unparsed = f"lizard failed: {type(exc).__name__}"
        return _FileResult(rel=rel, language=language, loc=_non_blank_lines(text), unparsed=unparsed)
    result = _FileResult(rel=rel, language=language, loc=int(info.nloc))
    for function in info.function_list:
        name = str(function.name)[:80] or "anonymous function"  # Go's func literals have no name
        where = f"{name} in {rel}:{function.start_line}"
        result.functions.append(_Function(where, function.cyclomatic_complexity, function.parameter_count))
        span = function.end_line - function.start_line + 1
        result.violations.extend(_lizard_violations(function, name, rel, span, depth.deepest.get(id(function))))
    return result


def _lizard_violations(
    function: Any, name: str, rel: str, span: int, deepest: tuple[int, int] | None
) -> Iterator[Violation]:
    """long_function and deep_nesting for one lizard function spanning ``span`` lines."""
    if span > MAX_FUNCTION_LINES:
        count = function.parameter_count
        detail = (
            f"{name} spans {span} lines (limit {MAX_FUNCTION_LINES}; NLOC {function.nloc}, cyclomatic "
            f"complexity {function.cyclomatic_complexity}, {count} parameter{'s' if count != 1 else ''})"
        )
        yield Violation(kind="long_function", file=rel, line=function.start_line, detail=detail)
    if deepest is not None and deepest[0] > MAX_NESTING:
        detail = f"{name} nests blocks {deepest[0]} deep (limit {MAX_NESTING})"
        yield Violation(kind="deep_nesting", file=rel, line=deepest[1], detail=detail)
