"""The house rules a reviewer would otherwise check by eye: module docstrings, function length, public APIs only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "speedrun"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 60  # "about 60": a longer function says why in its docstring ("Long because ...")


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _length(func: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from `def` to the last statement, not counting the docstring."""
    total = (func.end_lineno or func.lineno) - func.lineno + 1
    first = func.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        total -= (first.end_lineno or first.lineno) - first.lineno + 1
    return total


def test_the_package_is_found() -> None:
    assert len(MODULES) > 30, MODULES  # a wrong path would make every rule below pass vacuously


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_says_its_one_job_on_its_first_line(path: Path) -> None:
    doc = ast.get_docstring(_tree(path))
    assert doc, f"{path} has no module docstring"
    first = doc.splitlines()[0].strip()
    assert first.endswith((".", ":")) and len(first) <= 120, f"{path}: first docstring line {first!r}"


def test_no_function_is_long_without_a_reason() -> None:
    long = [
        f"{path.relative_to(PACKAGE)}:{func.lineno} {func.name} ({_length(func)} lines)"
        for path in MODULES
        for func in _functions(_tree(path))
        if _length(func) > MAX_LINES and "Long because" not in (ast.get_docstring(func) or "")
    ]
    assert not long, "functions over ~60 lines need splitting or a 'Long because' reason:\n" + "\n".join(long)


def test_only_public_apis_of_other_libraries() -> None:
    private = []
    for path in MODULES:
        for node in ast.walk(_tree(path)):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] != "speedrun" and any(p.startswith("_") and not p.startswith("__") for p in parts):
                    private.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {name}")
    assert not private, "\n".join(private)


def test_the_length_rule_can_fail() -> None:
    long_body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES + 1))
    [func] = _functions(ast.parse(f"def f():\n    '''Doc.'''\n{long_body}\n"))
    assert _length(func) == MAX_LINES + 2  # def line + body, docstring not counted
