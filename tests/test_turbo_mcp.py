"""Turbo over a real MCP stdio session: the caller as fixer, long runs, cancel and resume, compact results."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, stdio_client

from tests.fake_llm import FakeLLM
from tests.helpers import CONTRACT_TEXT, HANG_ONCE, PYTEST, TEST_CALC, Caller, file_blocks, role_of, server_params

# A distinctive line of generated code: it must never come back in a tool result.
MARKER = "ZEBRA_MARKER_81 = 'only in the generated file'\n"
BUGGY_CALC = f"{MARKER}\n\ndef add(a, b):\n    return a - b\n"
FIXED_CALC = f"{MARKER}\n\ndef add(a, b):\n    return a + b\n"
RESULT_CAP = 20_000  # bytes; Claude Code caps a tool result at 25K tokens (~100 KB)


def assert_compact(caller: Caller) -> None:
    for text in caller.texts:
        assert len(text.encode()) < RESULT_CAP
        assert "ZEBRA_MARKER_81" not in text
        assert "return a - b" not in text and "return a + b" not in text
        assert "sk-test-not-a-real-key" not in text


@pytest.mark.anyio
async def test_client_fixer_over_mcp_retest_edits_and_stop(speedrun_env, fake_llm: FakeLLM, tmp_path):
    buggy = file_blocks({"calc.py": BUGGY_CALC, "test_calc.py": TEST_CALC})
    common = {"contract": CONTRACT_TEXT, "test_command": PYTEST, "roles": {"fixer": "client"}, "wait_seconds": 30}
    with anyio.fail_after(90):
        async with (
            stdio_client(server_params(speedrun_env, tmp_path)) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            caller = Caller(session)

            # 1. The interrupt reaches the caller; the caller fixes the file itself and asks for a retest.
            fake_llm.script(buggy)
            first = tmp_path / "ws1"
            paused = await caller.call("turbo", output_dir=str(first), **common)
            assert paused["status"] == "needs_input"
            [need] = paused["needs"]
            assert need["kind"] == "fix_needed"
            assert need["output_dir"] == str(first)
            assert sorted(need["files"]) == ["calc.py", "test_calc.py"]
            [failure] = need["failures"]
            assert failure["name"] == "test_calc.py::test_add"
            assert "assert -1 == 5" in failure["message"]
            assert "retest" in paused["next"]
            assert any(line.startswith("generate:") for line in caller.progress)  # MCP progress notifications
            assert any(line.startswith("run_tests:") for line in caller.progress)

            (first / "calc.py").write_text(FIXED_CALC)
            done = await caller.call("resume_run", run_id=paused["run_id"], action="retest")
            assert done["status"] == "passed"
            result = done["result"]
            assert result["tests"]["passed"] == 1
            assert result["fix_cycles"] == 1
            assert (result["last_cycle"]["source"], result["last_cycle"]["diagnosis"]) == (
                "client",
                "caller fixed the files",
            )
            full = json.loads(Path(done["report_path"]).read_text())  # the full report, for what the summary omits
            assert "fixer" not in full["ledger"]
            assert result["llm"]["calls"] == 1
            assert [role_of(r) for r in fake_llm.chat_requests()] == ["generator"]  # no model fixer

            # 2. The caller answers with search/replace edits instead.
            fake_llm.script(buggy)
            second = tmp_path / "ws2"
            paused2 = await caller.call("turbo", output_dir=str(second), **common)
            assert paused2["status"] == "needs_input"
            message = await caller.error("resume_run", run_id=paused2["run_id"], action="edits")
            assert "non-empty `edits` list" in message  # refused at once with a hint; the run still waits
            message = await caller.error(
                "resume_run", run_id=paused2["run_id"], action="edits", edits=[{"path": "calc.py"}]
            )
            assert "search" in message and "replace" in message
            assert (await caller.call("run_status", run_id=paused2["run_id"]))["status"] == "needs_input"
            done2 = await caller.call(
                "resume_run",
                run_id=paused2["run_id"],
                action="edits",
                edits=[{"path": "calc.py", "search": "    return a - b", "replace": "    return a + b"}],
            )
            assert done2["status"] == "passed"
            cycle = done2["result"]["last_cycle"]
            assert (cycle["source"], cycle["applied"], done2["result"]["fix_cycles"]) == ("client", 1, 1)
            assert "edits" not in cycle  # only edits that did not apply are listed
            [full_cycle] = json.loads(Path(done2["report_path"]).read_text())["cycles"]
            assert [(e["path"], e["status"]) for e in full_cycle["edits"]] == [("calc.py", "applied")]
            assert (second / "calc.py").read_text() == FIXED_CALC

            # 3. An edit that does not apply comes back with the next pause; then the caller gives up.
            fake_llm.script(buggy)
            third = tmp_path / "ws3"
            paused3 = await caller.call("turbo", output_dir=str(third), **common)
            again = await caller.call(
                "resume_run",
                run_id=paused3["run_id"],
                action="edits",
                edits=[{"path": "calc.py", "search": "return a * b", "replace": "return a + b"}],
            )
            assert again["status"] == "needs_input"
            [need3] = again["needs"]
            [refused] = need3["edits_not_applied"]
            assert (refused["path"], refused["status"]) == ("calc.py", "not_found")
            assert "\n" not in refused["message"] and refused["message"]
            assert need3["cycle"] == 2 and need3["failures"][0]["name"] == "test_calc.py::test_add"
            stopped = await caller.call("resume_run", run_id=paused3["run_id"], action="stop")
            assert stopped["status"] == "stopped"
            assert "status" not in stopped["result"]  # said once, at the top
            assert (third / "calc.py").read_text() == BUGGY_CALC
            finished = await caller.error("resume_run", run_id=paused3["run_id"], action="retest")
            assert "already finished" in finished

            listed = await caller.call("list_runs")
            assert [(r["run_id"], r["status"]) for r in listed["runs"]] == [
                (paused3["run_id"], "stopped"),
                (paused2["run_id"], "passed"),
                (paused["run_id"], "passed"),
            ]
            assert [r["output_dir"] for r in listed["runs"]] == [str(third), str(second), str(first)]

    assert len(fake_llm.chat_requests()) == 3
    assert_compact(caller)


@pytest.mark.anyio
async def test_long_run_over_mcp_wait_expiry_cancel_and_continue(speedrun_env, fake_llm: FakeLLM, tmp_path):
    fixed = file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC})
    with anyio.fail_after(90):
        async with (
            stdio_client(server_params(speedrun_env, tmp_path)) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            caller = Caller(session)

            # wait_seconds expires: the run goes on in the background and run_status returns its result later.
            fake_llm.script(fixed)
            running = await caller.call(
                "turbo",
                output_dir=str(tmp_path / "slow"),
                contract=CONTRACT_TEXT,
                test_command=f"sleep 2; {PYTEST}",
                wait_seconds=0.5,
            )
            assert running["status"] == "running"
            assert "result" not in running
            assert any(line.startswith("generate:") for line in running["progress"])
            final = await caller.call("run_status", run_id=running["run_id"], wait_seconds=30)
            assert final["status"] == "passed"
            assert final["result"]["tests"]["passed"] == 1

            # cancel_run stops a run in its tests; resume_run 'continue' finishes it without regenerating.
            fake_llm.script(fixed)
            hang = tmp_path / "hang"
            started = await caller.call(
                "turbo", output_dir=str(hang), contract=CONTRACT_TEXT, test_command=HANG_ONCE, wait_seconds=0
            )
            with anyio.fail_after(30):
                while not (hang / ".pid").is_file():
                    await anyio.sleep(0.05)
            cancelled = await caller.call("cancel_run", run_id=started["run_id"])
            assert cancelled["status"] == "cancelled"
            assert (await caller.call("run_status", run_id=started["run_id"]))["status"] == "cancelled"
            done = await caller.call("resume_run", run_id=started["run_id"], action="continue", wait_seconds=30)
            assert done["status"] == "passed"
            assert done["result"]["tests"]["passed"] == 1

            missing = await caller.error("run_status", run_id="turbo-nope")
            assert "no run 'turbo-nope'" in missing

    assert [role_of(r) for r in fake_llm.chat_requests()] == ["generator", "generator"]
    assert_compact(caller)
