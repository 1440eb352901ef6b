"""The judge's unique-name rule, met over both edges: two implementations named alike are refused before any work.

The rule itself lives on the judge's input model; these tests drive it through a real MCP stdio session and
the `speedrun` CLI as a subprocess, and check what the user sees: the error, and that nothing was started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.fake_llm import FakeLLM
from tests.helpers import PYTEST, error_text, fake_env, mcp_session, run_cli, server_env


def nothing_written(base: Path) -> None:
    """No worksheet or scorecard anywhere under `base`."""
    assert not list(base.rglob("judge-worksheet.md")) and not list(base.rglob("scorecard.json"))


def make_dirs(base: Path, *rels: str) -> None:
    for rel in rels:
        (base / rel).mkdir(parents=True)
        (base / rel / "calc.py").write_text("def add(a, b):\n    return a + b\n")


@pytest.mark.parametrize(
    "dirs, implementations, named",
    [
        # Explicit names that differ only in case: one folder on macOS and Windows, one row in the scorecard.
        (("a", "b"), [{"name": "Alpha", "path": "a"}, {"name": "alpha", "path": "b"}], "'alpha'"),
        # Names left out default to the path's last folder, which two directories may share.
        (("x/impl", "y/impl"), [{"path": "x/impl"}, {"path": "y/impl"}], "'impl'"),
        # A blank name counts as left out.
        (("p/impl", "q/impl"), [{"name": "  ", "path": "p/impl"}, {"path": "q/impl"}], "'impl'"),
        # A name given for one equals the default of the other.
        (("one", "two/calc"), [{"name": "calc", "path": "one"}, {"path": "two/calc"}], "'calc'"),
    ],
)
@pytest.mark.anyio
async def test_the_judge_tool_refuses_two_implementations_with_one_name(
    tmp_path: Path, fake_llm: FakeLLM, dirs: tuple[str, ...], implementations: list[dict[str, Any]], named: str
) -> None:
    root = tmp_path / "root"
    make_dirs(root, *dirs)
    with anyio.fail_after(60):
        async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
            args = {"implementations": implementations, "design": "add two integers", "wait_seconds": 5}
            text = error_text(await session.call_tool("judge", args))
            runs = (await session.call_tool("list_runs", {})).structured_content
    assert f"implementations 1 and 2 are both named {named}" in text, text
    assert "distinct" in text and "case is ignored" in text
    assert "JudgeInput" not in text and "Traceback" not in text and len(text) < 600
    assert runs["runs"] == []  # no run started
    assert fake_llm.chat_requests() == []  # no model called
    nothing_written(tmp_path)


@pytest.mark.parametrize(
    "dirs, named",
    [
        (("x/impl", "y/impl"), "'impl'"),  # the directory names are the implementation names
        (("x/Impl", "y/impl"), "'impl'"),  # ... compared ignoring case
    ],
)
def test_cli_judge_refuses_two_directories_with_one_name(
    tmp_path: Path, fake_llm: FakeLLM, dirs: tuple[str, str], named: str
) -> None:
    make_dirs(tmp_path, *dirs)
    (tmp_path / "design.md").write_text("add two integers\n")
    proc = run_cli(
        ["judge", *dirs, "--design", "design.md", "--test-cmd", PYTEST, "--out", "verdict"],
        tmp_path,
        **fake_env(fake_llm),
    )
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()  # one message, no traceback
    assert f"implementations 1 and 2 are both named {named}" in line and "distinct" in line
    assert proc.stdout == ""
    assert fake_llm.chat_requests() == []
    assert not (tmp_path / "verdict").exists()  # no worksheet directory
    assert not (tmp_path / "state" / "runs.sqlite").exists()  # no run created
    nothing_written(tmp_path)
