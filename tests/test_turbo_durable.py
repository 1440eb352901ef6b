"""Durable turbo runs: a killed CLI resumes from a new process without a new generate call; wait, cancel, resume."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from speedrun.config import Settings
from speedrun.errors import InputError
from speedrun.procs import group_alive
from speedrun.runs import RunManager, RunStatus
from tests.fake_llm import FakeLLM
from tests.helpers import CONTRACT_TEXT, FIXED_CALC, HANG_ONCE, PYTEST, TEST_CALC, file_blocks, role_of, wait_for


def speedrun_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "speedrun", *args], env=env, capture_output=True, text=True, check=False, timeout=timeout
    )


async def look_and_cancel(run_id: str) -> tuple[RunStatus, str]:
    """This process's view of a run another process drives, and what cancelling it from here says."""
    async with RunManager.open(Settings()) as runs:
        status = await runs.status(run_id)
        with pytest.raises(InputError) as refused:
            await runs.cancel(run_id)
    return status, str(refused.value)


def test_killed_after_generate_resumes_in_a_new_process_without_regenerating(speedrun_env, fake_llm: FakeLLM, tmp_path):
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    contract = tmp_path / "contract.txt"
    contract.write_text(CONTRACT_TEXT)
    out = tmp_path / "ws"
    stderr_path = tmp_path / "turbo.stderr"
    with open(stderr_path, "w") as stderr:
        cli = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "speedrun",
                "turbo",
                "--contract",
                str(contract),
                "--out",
                str(out),
                "--test-cmd",
                HANG_ONCE,
            ],
            env=speedrun_env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        wait_for(lambda: (out / ".pid").is_file(), 30, "the first test run to start")
        run_id = stderr_path.read_text().splitlines()[0].removeprefix("run ")
        # While that process drives the run, others see it running and may not drive it a second time.
        listed = speedrun_cli("runs", env=speedrun_env)
        [row] = [line for line in listed.stdout.splitlines() if line.startswith(run_id)]
        assert row.split()[1] == "running"
        refused = speedrun_cli("resume", run_id, env=speedrun_env)
        assert refused.returncode == 2
        assert "running in another speedrun process" in refused.stderr
        status, cancel_error = asyncio.run(look_and_cancel(run_id))
        assert status.status == "running" and "another speedrun process" in status.next
        assert "stop it there" in cancel_error
    finally:
        os.killpg(cli.pid, signal.SIGKILL)
        cli.wait(10)
    test_group = int((out / ".pid").read_text())
    try:  # the sandbox takes the test run down with its parent; without one it could sleep on
        os.killpg(test_group, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_for(lambda: not group_alive(test_group), 10, "the orphaned test process group to die")
    assert [role_of(r) for r in fake_llm.chat_requests()] == ["generator"]
    assert run_id.startswith("turbo-")

    listed = speedrun_cli("runs", env=speedrun_env)
    assert listed.returncode == 0
    [row] = [line for line in listed.stdout.splitlines() if line.startswith(run_id)]
    assert row.split()[1] == "interrupted"  # the process died; nobody finished it

    resumed = speedrun_cli("resume", run_id, env=speedrun_env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"PASSED: 1 passed, 0 failed, 0 errors after 0 fix cycles; run {run_id}" in resumed.stdout
    assert "sk-test-not-a-real-key" not in resumed.stdout + resumed.stderr
    # The tests ran in the new process, and the generator was not asked again.
    assert [role_of(r) for r in fake_llm.chat_requests()] == ["generator"]
    assert (out / "calc.py").read_text() == FIXED_CALC
    # The key never lands in a checkpoint: the settings travel in the run context, not in the state.
    state_files = list(Path(speedrun_env["SPEEDRUN_HOME"]).rglob("*"))
    assert any(f.name == "runs.sqlite" for f in state_files)
    assert not any(b"sk-test-not-a-real-key" in f.read_bytes() for f in state_files if f.is_file())


@pytest.mark.anyio
async def test_wait_seconds_expires_then_run_status_returns_the_final_result(speedrun_env, fake_llm, tmp_path):
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    out = tmp_path / "ws"
    with anyio.fail_after(60):
        async with RunManager.open(Settings()) as runs:
            run_id = await runs.start(
                "turbo", {"contract": CONTRACT_TEXT, "output_dir": str(out), "test_command": f"sleep 2; {PYTEST}"}
            )
            early = await runs.wait(run_id, 0.5)
            assert early.status == "running"
            assert early.result is None
            assert any(line.startswith("generate:") for line in early.progress)

            seen: list[str] = []
            final = await runs.wait(run_id, 30, on_progress=seen.append)
    assert final.status == "passed" and final.run_id == run_id
    assert final.result["tests"]["passed"] == 1
    assert final.report_path and json.loads(Path(final.report_path).read_text())["run_id"] == run_id
    assert seen[-1].startswith("report: passed")
    assert final.progress == []  # over: the result says how it ended


@pytest.mark.anyio
async def test_cancel_marks_the_run_cancelled_and_continue_finishes_it(speedrun_env, fake_llm, tmp_path):
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    out = tmp_path / "ws"
    with anyio.fail_after(60):
        async with RunManager.open(Settings()) as runs:
            run_id = await runs.start(
                "turbo", {"contract": CONTRACT_TEXT, "output_dir": str(out), "test_command": HANG_ONCE}
            )
            while not (out / ".pid").is_file():
                await anyio.sleep(0.05)
            test_group = int((out / ".pid").read_text())

            cancelled = await runs.cancel(run_id)
            assert cancelled.status == "cancelled"
            assert "continue" in cancelled.next
            with anyio.fail_after(5):  # cancelling kills the hanging test run too
                while group_alive(test_group):
                    await anyio.sleep(0.05)
            assert (await runs.status(run_id)).status == "cancelled"
            assert [r.status for r in await runs.list()] == ["cancelled"]

            await runs.resume(run_id)
            final = await runs.wait(run_id, 30)
    assert final.status == "passed"
    assert final.result["tests"]["passed"] == 1
    assert [role_of(r) for r in fake_llm.chat_requests()] == ["generator"]


@pytest.mark.anyio
async def test_a_progress_watcher_that_fails_does_not_end_the_run(speedrun_env, fake_llm, tmp_path):
    # E.g. an MCP client that disconnected while its progress notifications were still being sent.
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    seen: list[str] = []

    def broken_watcher(line: str) -> None:
        seen.append(line)
        raise ConnectionResetError("client went away")

    with anyio.fail_after(60):
        async with RunManager.open(Settings()) as runs:
            run_id = await runs.start(
                "turbo", {"contract": CONTRACT_TEXT, "output_dir": str(tmp_path / "ws"), "test_command": PYTEST}
            )
            final = await runs.wait(run_id, 30, on_progress=broken_watcher)
    assert final.status == "passed", final.error
    assert len(seen) == 1  # dropped after its first failure
