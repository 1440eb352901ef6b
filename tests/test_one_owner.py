"""One owner per rule: validation text, the test summary line and source excerpts read the same everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel


def test_an_edge_error_lists_five_problems_and_counts_the_rest() -> None:
    from speedrun.errors import InputError, parse_input

    class Many(BaseModel):
        a: int
        b: int
        c: int
        d: int
        e: int
        f: int
        g: int
        h: int

    with pytest.raises(InputError) as info:
        parse_input(Many, {"a": "x" * 5000}, names={"a": "--a"})
    text = str(info.value)
    assert text.startswith("invalid input: --a: Input should be a valid integer")
    assert "b: Field required" in text and "and 3 more" in text and "h: Field" not in text
    assert "xxxx" not in text and len(text) < 400


def test_a_timed_out_run_says_so_in_its_summary_line() -> None:
    from speedrun.state.records import TestReport

    assert TestReport(command="pytest", exit_code=1, passed=3, failed=1).summary() == "3 passed, 1 failed, 0 errors"
    late = TestReport(command="pytest", exit_code=None, passed=2, timed_out=True)
    assert late.summary() == "2 passed, 0 failed, 0 errors (timed out)"


def test_fixer_excerpts_name_the_files_the_budget_left_out(tmp_path: Path, monkeypatch) -> None:
    from speedrun.nodes import surgical_fix
    from speedrun.state.records import TestFailure, TestReport, WrittenFile
    from speedrun.state.turbo import TurboState

    files = {
        "calc.py": "def add(a, b):\n    return a - b\n",
        "big.py": "".join(f"x_{i} = {i}\n" for i in range(150)),
        "util.py": "def unit():\n    return 1\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    report = TestReport(
        command="pytest -q",
        exit_code=1,
        failed=1,
        failures=[TestFailure(name="test_calc.py::test_add", message="assert -1 == 5", file="calc.py", line=2)],
    )
    state = TurboState(
        contract="add",
        output_dir=str(tmp_path),
        test_command="pytest -q",
        tests=report,
        files=[WrittenFile(path=p, filename=p, lines=t.count("\n"), action="created") for p, t in files.items()],
    )
    monkeypatch.setattr(surgical_fix, "EXCERPT_BUDGET", 400)
    text = surgical_fix._excerpts(tmp_path, state)
    assert text.startswith("--- calc.py\n   1| def add(a, b):\n   2|     return a - b\n")
    assert "--- big.py (omitted: size bound reached)" in text and "x_1 = 1" not in text
    assert "--- util.py\n   1| def unit():" in text  # a small file after the big one still fits


def test_judge_sources_number_lines_like_the_fixer(tmp_path: Path) -> None:
    from speedrun.judge.panel import read_sources

    (tmp_path / "calc.py").write_text("def add(a, b):\n\n    return a + b\n")
    assert read_sources(tmp_path, 10_000) == "--- calc.py\n   1| def add(a, b):\n   2|\n   3|     return a + b\n"
    assert read_sources(tmp_path, 10) == "--- calc.py (omitted: size bound reached)\n"
