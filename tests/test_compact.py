"""Compact results over real MCP stdio: a failed turbo run fits the caller's budget; the full report is a file."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from tests.fake_llm import FakeLLM
from tests.helpers import CONTRACT_TEXT, PYTEST, Script, file_blocks, fix_reply, role_of

BYTES_BASE, BYTES_PER_FILE = 1024, 120

# Five failing tests whose assertion messages are long and multi-line, as pytest prints real diffs.
BUGGY = (
    "def add(a, b):\n    return a - b\n\n\ndef describe(items):\n"
    "    return {'count': len(items), 'items': list(items), 'note': 'x' * 400}\n"
)
TESTS = (
    "from calc import add, describe\n\n\n"
    + "".join(
        f"def test_case_{i}():\n"
        f"    expected = {{'count': {i}, 'items': list(range({i + 40})), 'note': 'y' * 400}}\n"
        f"    assert describe(range({i + 40})) == expected, 'describe() disagrees with the spec: ' + 'z' * 300\n\n\n"
        for i in range(5)
    )
    + "def test_add():\n    assert add(2, 3) == 5\n"
)


def compact_size(result) -> int:
    """Bytes of the JSON a client shows the model: the result's structuredContent."""
    return len(json.dumps(result.structured_content).encode())


@pytest.mark.anyio
async def test_failed_run_with_two_fix_cycles_is_compact_and_the_full_report_is_a_file(
    speedrun_env, fake_llm: FakeLLM, tmp_path
):
    attempts = iter(range(1, 100))
    long_diagnosis = "The describe function builds its note from the wrong character " * 20
    fake_llm.script(file_blocks({"calc.py": BUGGY, "test_calc.py": TESTS}))
    # Every fix applies one edit that changes nothing relevant, and a second one that is never found.
    fake_llm.responder = lambda body: fix_reply(
        ("calc.py", "def add(a, b):\n", f"def add(a, b):\n    # attempt {next(attempts)}\n"),
        ("calc.py", "THIS LINE IS NOT IN THE FILE " * 30, "nothing"),
        diagnosis=long_diagnosis,
    )
    out = tmp_path / "ws"
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "speedrun", "mcp"], env=speedrun_env, cwd=str(tmp_path)
    )
    with anyio.fail_after(120):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool(
                "turbo",
                {
                    "contract": CONTRACT_TEXT,
                    "output_dir": str(out),
                    "test_command": PYTEST,
                    "max_fix_cycles": 2,
                    "wait_seconds": 90,
                },
            )
            assert not result.is_error, result.content
            status = await session.call_tool("run_status", {"run_id": result.structured_content["run_id"]})
            listed = await session.call_tool("list_runs", {})

    assert [role_of(r) for r in fake_llm.chat_requests()][:3] == ["generator", "fixer", "fixer"]
    sc = result.structured_content
    assert sc["status"] == "failed"
    budget = BYTES_BASE + BYTES_PER_FILE * len(sc["result"]["files"])
    print(
        f"\nturbo result {compact_size(result)} B, run_status {compact_size(status)} B, "
        f"list_runs {compact_size(listed)} B (budget {budget} B)"
    )
    assert compact_size(result) <= budget
    assert compact_size(status) <= budget
    assert compact_size(listed) <= BYTES_BASE

    summary = sc["result"]
    assert summary["fix_cycles"] == 2
    failures = summary["tests"]["failures"]
    assert len(failures) == 3  # six tests failed; three are shown, and the rest are counted
    assert summary["tests"]["failed"] == 6 and "3 failing tests" in summary["omitted"]
    assert all(f.startswith("test_calc.py::test_case_") and "\n" not in f and len(f) <= 100 for f in failures)
    assert "describe() disagrees" in failures[0]
    last = summary["last_cycle"]
    assert last["cycle"] == 2 and last["applied"] >= 1  # applied edits are counted; the not-found one is shown
    assert len(last["diagnosis"]) <= 60
    [missed] = last["edits"]
    assert missed["status"] == "not_found" and len(missed["message"]) <= 80 and "\n" not in missed["message"]

    # The full report is on disk, private to the user, and holds what the compact result left out.
    report_path = Path(sc["report_path"])
    assert report_path == Path(speedrun_env["SPEEDRUN_HOME"]) / "runs" / sc["run_id"] / "report.json"
    assert stat.S_IMODE(os.stat(report_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(report_path.parent).st_mode) == 0o700
    full = json.loads(report_path.read_text())
    assert full["status"] == "failed"
    assert len(full["tests"]["failures"]) == 6
    assert any("z" * 300 in f["message"] for f in full["tests"]["failures"])
    assert full["cycles"][0]["diagnosis"] == long_diagnosis
    fixer_calls = sum(role_of(r) == "fixer" for r in fake_llm.chat_requests())
    assert {role: u["calls"] for role, u in full["ledger"].items()} == {"generator": 1, "fixer": fixer_calls}
    assert "sk-test-not-a-real-key" not in report_path.read_text()
    assert status.structured_content["report_path"] == str(report_path)


@pytest.mark.anyio
async def test_a_judge_of_three_implementations_is_compact_over_mcp(speedrun_env, fake_llm: FakeLLM, tmp_path):
    for name, body in (("alpha", "first + second"), ("beta", "sum((first, second))"), ("gamma", "second + first")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "calc.py").write_text(f"def add(first, second):\n    return {body}\n")
        (tmp_path / name / "test_calc.py").write_text(TESTS.split("\n\n\n", 1)[0] + "\n")
    fake_llm.responder = Script(strong_marker="first + second")
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "speedrun", "mcp"], env=speedrun_env, cwd=str(tmp_path)
    )
    with anyio.fail_after(120):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool(
                "judge",
                {
                    "implementations": [{"path": n, "test_command": PYTEST} for n in ("alpha", "beta", "gamma")],
                    "design": "add two integers " * 200,
                    "wait_seconds": 90,
                },
            )
    assert not result.is_error, result.content
    print(f"\njudge result {compact_size(result)} B")
    assert result.structured_content["status"] == "done"
    assert compact_size(result) <= BYTES_BASE + 3 * 400  # a verdict line per implementation
    report = Path(result.structured_content["report_path"])
    assert report.name == "scorecard.json" and report.is_file()  # every answer, finding and score
    assert "scorecard_path" not in result.structured_content["result"]  # said once
