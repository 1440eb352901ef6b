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
    * Other languages: per-line rules. C-like languages drop lines that start with ``//`` and lines
      inside ``/* ... */`` blocks that start a line; ``#``-comment languages (Ruby, shell, ...) drop
      lines starting with ``#`` (``#!`` included). C/C++ keep ``#include`` and friends: they are code.
    * A Python file that does not parse is counted with the ``#`` rule and yields no violations; the
      file is named in ``counted``.

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

Readability rules (other languages, best effort)
    For brace languages (JavaScript, TypeScript, Go, Rust, Java, C, C++, C#, Kotlin, Swift, Scala, PHP)
    strings and comments are blanked out and braces are counted. A brace whose header looks like a
    function opens a function; ``long_function`` and ``deep_nesting`` (control blocks such as
    ``if``/``for``/``while``/``switch``/``try``/``catch``/``else`` opened with a brace) use the same limits as
    Python. Single-letter names and magic numbers are not counted there. Ruby and shell get LOC only.
"""

from __future__ import annotations

import ast
import io
import os
import re
import stat
import token
import tokenize
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

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
_C_STYLE = "c"  # // and /* */ comments, # is code (preprocessor, Rust attributes)
_HASH_STYLE = "hash"  # # comments
_PHP_STYLE = "php"  # both

#: Extension -> (language, comment style, braces counted for functions and nesting).
LANGUAGES: dict[str, tuple[str, str, bool]] = {
    ".py": (_PY, _HASH_STYLE, False),
    ".js": ("JavaScript", _C_STYLE, True),
    ".mjs": ("JavaScript", _C_STYLE, True),
    ".cjs": ("JavaScript", _C_STYLE, True),
    ".jsx": ("JavaScript", _C_STYLE, True),
    ".ts": ("TypeScript", _C_STYLE, True),
    ".tsx": ("TypeScript", _C_STYLE, True),
    ".go": ("Go", _C_STYLE, True),
    ".rs": ("Rust", _C_STYLE, True),
    ".java": ("Java", _C_STYLE, True),
    ".c": ("C", _C_STYLE, True),
    ".h": ("C", _C_STYLE, True),
    ".cc": ("C++", _C_STYLE, True),
    ".cpp": ("C++", _C_STYLE, True),
    ".cxx": ("C++", _C_STYLE, True),
    ".hpp": ("C++", _C_STYLE, True),
    ".hh": ("C++", _C_STYLE, True),
    ".cs": ("C#", _C_STYLE, True),
    ".kt": ("Kotlin", _C_STYLE, True),
    ".swift": ("Swift", _C_STYLE, True),
    ".scala": ("Scala", _C_STYLE, True),
    ".php": ("PHP", _PHP_STYLE, True),
    ".rb": ("Ruby", _HASH_STYLE, False),
    ".sh": ("Shell", _HASH_STYLE, False),
    ".bash": ("Shell", _HASH_STYLE, False),
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
    syntax_error: str | None = None


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
    language, style, braces = LANGUAGES[path.suffix.lower()]
    text = path.read_bytes().decode("utf-8", errors="replace")
    if language == _PY:
        return _measure_python(text, rel)
    lines = text.splitlines()
    result = _FileResult(rel=rel, language=language, loc=_generic_loc(lines, style))
    if braces:
        result.violations = _brace_violations(text, rel)
    return result


def _describe(
    languages: list[str], files_by_language: dict[str, int], results: list[_FileResult], too_big: list[str]
) -> str:
    if not languages:
        parts = ["No recognised source files."]
    else:
        parts = []
    for language in languages:
        count = files_by_language[language]
        prefix = f"{language} ({count} file{'s' if count != 1 else ''}): "
        if language == _PY:
            parts.append(
                prefix + "LOC via tokenize (blank lines, comments and docstrings excluded); parsed with ast "
                f"(4 rules: functions over {MAX_FUNCTION_LINES} lines, nesting over {MAX_NESTING}, "
                "single-letter names, magic numbers; magic numbers not counted in test files)."
            )
        elif any(LANGUAGES[ext][0] == language and LANGUAGES[ext][2] for ext in LANGUAGES):
            parts.append(
                prefix + "best-effort line heuristics: LOC excludes blank lines and // or /* */ comment "
                "lines; long functions and nesting via brace counting; single-letter names and "
                "magic numbers not counted."
            )
        else:
            parts.append(prefix + "LOC only (blank lines and # comment lines excluded); no readability rules.")
    broken = [r for r in results if r.syntax_error]
    if broken:
        listed = "; ".join(f"{r.rel} ({r.syntax_error})" for r in broken)
        parts.append(f"Not parseable, LOC by the # rule and no violations: {listed}.")
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


# --------------------------------------------------------------------------------------------------
# generic LOC


def _generic_loc(lines: list[str], style: str) -> int:
    """Count non-blank, non-comment lines by per-line rules for the given comment style."""
    loc = 0
    in_block = False
    for raw in lines:
        code, in_block = _code_part(raw.strip(), style, in_block)
        if code:
            loc += 1
    return loc


def _code_part(line: str, style: str, in_block: bool) -> tuple[str, bool]:
    """The code left on a stripped line, and whether a ``/* */`` block is still open after it."""
    if in_block:
        end = line.find("*/")
        if end < 0:
            return "", True
        line = line[end + 2 :].strip()
    if not line:
        return "", False
    if style in (_HASH_STYLE, _PHP_STYLE) and line.startswith("#"):
        return "", False
    if style in (_C_STYLE, _PHP_STYLE):
        if line.startswith("//"):
            return "", False
        if line.startswith("/*"):
            return _code_part(line[2:], style, True)
    return line, False


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
            loc=_generic_loc(text.splitlines(), _HASH_STYLE),
            syntax_error=f"syntax error at {where}" if line else where,
        )
    try:
        loc = _python_loc(text, _docstring_spans(tree))
    except (tokenize.TokenError, SyntaxError):
        loc = _generic_loc(text.splitlines(), _HASH_STYLE)
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


_BLOCKS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.Match)
if hasattr(ast, "TryStar"):  # Python 3.11+
    _BLOCKS = _BLOCKS + (ast.TryStar,)
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
        for body_owner in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef))]:
            for stmt in body_owner.body:
                if _is_constant_assignment(stmt):
                    exempt.update(id(n) for n in ast.walk(stmt))
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript):
                exempt.update(id(n) for n in _index_literals(node.slice))
        signed: set[int] = set()
        for node in ast.walk(tree):
            if id(node) in exempt or id(node) in signed:
                continue
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
# brace languages (best effort)

_CONTROL_HEADER = re.compile(
    r"(?:^|[;}]\s*)(?:else\s+)?(?:if|for|foreach|while|switch|try|catch|finally|else|do|loop|match|select|"
    r"unless|until|guard|when|with|synchronized|using|lock)\b[^{]*$"
)
_FUNCTION_HEADERS = (
    re.compile(r"\bfunction\b"),  # JS/TS/PHP function declarations and expressions
    re.compile(r"=>\s*$"),  # JS/TS arrow function with a block body
    re.compile(r"^\s*func\b"),  # Go (methods included)
    re.compile(r"\bfn\s+\w+"),  # Rust
    re.compile(r"\bfun\s+[\w.<>]+\s*\("),  # Kotlin
    re.compile(r"\bdef\s+\w+"),  # Scala
    # C / C++ / Java / C# / Swift / JS class methods: `name(args) [modifiers] {`
    re.compile(
        r"[\w>\]*&~]\s*\(\s*[^;()]*(?:\([^;()]*\)[^;()]*)*\)\s*(?:const\b\s*)?(?:noexcept\b\s*)?"
        r"(?:throws\s+[\w.,\s]+)?(?:->\s*[^{]+|:\s*[\w<>\[\].?, ]+)?\s*$"
    ),
)
_NOT_A_FUNCTION = re.compile(
    r"^\s*(?:}\s*)?(?:if|for|while|switch|catch|return|new|else|do|try|with|match|"
    r"class|struct|enum|interface|impl|trait|namespace)\b"
)


def _blank_strings_and_comments(text: str) -> list[str]:
    """The text split into lines, with string/char literals and comments replaced by spaces.

    Line breaks are kept, so line numbers do not move. A quote with no closing quote on its line (a Rust
    lifetime, a stray apostrophe) is left as it is; backtick strings may span lines.
    """
    pieces: list[str] = []
    pos = 0
    while pos < len(text):
        end = _literal_end(text, pos)
        if end is None:
            pieces.append(text[pos])
            pos += 1
            continue
        keep_quotes = text[pos] in "\"'`"
        inner = "".join("\n" if char == "\n" else " " for char in text[pos:end])
        pieces.append(text[pos] + inner[1:-1] + text[end - 1] if keep_quotes else inner)
        pos = end
    return "".join(pieces).split("\n")


def _literal_end(text: str, pos: int) -> int | None:
    """End index (exclusive) of the comment or string literal starting at ``pos``, or None."""
    opener = text[pos : pos + 2]
    if opener == "//":
        end = text.find("\n", pos)
        return len(text) if end < 0 else end
    if opener == "/*":
        end = text.find("*/", pos + 2)
        return len(text) if end < 0 else end + 2
    quote = text[pos]
    if quote not in "\"'`":
        return None
    scan = pos + 1
    while scan < len(text) and text[scan] != quote:
        if text[scan] == "\n" and quote != "`":
            return None
        scan += 2 if text[scan] == "\\" else 1
    return scan + 1 if scan < len(text) else None


@dataclass
class _Block:
    kind: str  # "function", "control" or "other"
    line: int
    name: str = ""
    deepest: int = 0
    deepest_line: int = 0


def _classify(header: str) -> tuple[str, str]:
    """('function'|'control'|'other', function name) for the text before an opening brace."""
    stripped = header.strip()
    if _CONTROL_HEADER.search(stripped) and not re.search(r"\bfunction\b|=>\s*$", stripped):
        return "control", ""
    for pattern in _FUNCTION_HEADERS:
        if pattern.search(stripped):
            if pattern is _FUNCTION_HEADERS[-1] and _NOT_A_FUNCTION.match(stripped):
                return "other", ""
            return "function", _function_name(stripped)
    return "other", ""


_FUNCTION_NAMES = (
    re.compile(r"\b(?:function\*?|func|fn|fun|def)\s+(?:\([^)]*\)\s*)?([A-Za-z_$][\w$]*)"),
    re.compile(r"([A-Za-z_$][\w$]*)\s*[=:]\s*(?:async\s*)?(?:function\b|\(|[A-Za-z_$][\w$]*\s*=>)"),
    re.compile(r"([A-Za-z_$][\w$]*)\s*(?:<[^()]*>)?\s*\("),
)


def _function_name(header: str) -> str:
    for pattern in _FUNCTION_NAMES:
        match = pattern.search(header)
        if match and match.group(1) not in ("function", "async"):
            return match.group(1)
    return "anonymous function"


def _brace_violations(text: str, rel: str) -> list[Violation]:
    """long_function and deep_nesting for a brace language, by counting braces."""
    lines = _blank_strings_and_comments(text)
    stack: list[_Block] = []
    violations: list[Violation] = []
    for number, line in enumerate(lines, start=1):
        segment_start = 0
        for col, char in enumerate(line):
            if char == "{":
                header, header_line = _header(lines, number, line[segment_start:col])
                kind, name = _classify(header)
                block = _Block(kind=kind, line=header_line if kind == "function" else number, name=name)
                _note_depth(stack, block)
                stack.append(block)
                segment_start = col + 1
            elif char == "}" and stack:  # a stray } (unbalanced source) is ignored
                _close(stack.pop(), number, rel, violations)
                segment_start = col + 1
    for block in stack:  # unbalanced: close at end of file
        _close(block, len(lines), rel, violations)
    return violations


_MAX_HEADER_LINES = 20  # how far back a multi-line signature is followed


def _header(lines: list[str], number: int, before_brace: str) -> tuple[str, int]:
    """The text that introduces a brace and the line it starts on.

    A brace on its own line takes the previous code line; a header with unbalanced ``)`` (a signature
    split over lines) is extended upwards until its parentheses balance.
    """
    header, start = before_brace, number
    if not header.strip():
        previous = next((n for n in range(number - 1, 0, -1) if lines[n - 1].strip()), None)
        if previous is None:
            return "", number
        header, start = lines[previous - 1], previous
    while header.count(")") > header.count("(") and start > 1 and number - start < _MAX_HEADER_LINES:
        start -= 1
        header = lines[start - 1] + " " + header
    return header, start


def _note_depth(stack: list[_Block], block: _Block) -> None:
    """Record a control block's depth on the innermost enclosing function."""
    if block.kind != "control":
        return
    depth = 1
    for outer in reversed(stack):
        if outer.kind == "function":
            if depth > outer.deepest:
                outer.deepest, outer.deepest_line = depth, block.line
            return
        if outer.kind == "control":
            depth += 1


def _close(block: _Block, end_line: int, rel: str, violations: list[Violation]) -> None:
    if block.kind != "function":
        return
    span = end_line - block.line + 1
    if span > MAX_FUNCTION_LINES:
        violations.append(
            Violation(
                kind="long_function",
                file=rel,
                line=block.line,
                detail=f"{block.name} spans {span} lines (limit {MAX_FUNCTION_LINES})",
            )
        )
    if block.deepest > MAX_NESTING:
        violations.append(
            Violation(
                kind="deep_nesting",
                file=rel,
                line=block.deepest_line,
                detail=f"{block.name} nests blocks {block.deepest} deep (limit {MAX_NESTING})",
            )
        )
