"""`speedrun status RUN_ID` polls a run from any process (or machine) without taking it over; --test-timeout."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speedrun.cli import TURBO_FLAGS
from speedrun.config import Settings
from speedrun.errors import InputError
from speedrun.preflight import turbo_input
from speedrun.procs import group_alive
from speedrun.runs import RunManager
from speedrun.state.records import RunStatus
from tests.fake_llm import FakeLLM
from tests.helpers import (
    CONTRACT_TEXT,
    FIXED_CALC,
    HANG_ONCE,
    PYTEST,
    TEST_CALC,
    file_blocks,
    processes_marked,
    run_cli,
    wait_for,
)


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(list(args), cwd, **env)


def turbo_args(tmp_path: Path, test_cmd: str, *extra: str) -> list[str]:
    (tmp_path / "contract.txt").write_text(CONTRACT_TEXT)
    return ["turbo", "--contract", "contract.txt", "--out", "ws", "--test-cmd", test_cmd, *extra]


def run_id_of(stderr: str) -> str:
    found = re.search(r"^run (\S+)$", stderr, re.M)
    assert found, stderr
    return found.group(1)


def field(stdout: str, label: str) -> str:
    """A `label    value` line of the status header."""
    found = re.search(rf"^{label} +(.*)$", stdout, re.M)
    assert found, stdout
    return found.group(1)


def listed_state(run_id: str, env: dict[str, str], cwd: Path) -> str:
    listed = cli("runs", env=env, cwd=cwd)
    [row] = [line for line in listed.stdout.splitlines() if line.startswith(run_id)]
    return row.split()[1]


async def in_process_status(run_id: str) -> RunStatus:
    """What MCP's run_status builds for the run (the same RunManager.status), read in this process."""
    async with RunManager.open(Settings()) as runs:
        return await runs.status(run_id)


def test_a_passed_turbo_shows_its_summary_and_exits_0_and_json_is_run_status(
    speedrun_env: dict[str, str], fake_llm: FakeLLM, tmp_path: Path
) -> None:
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    ran = cli(*turbo_args(tmp_path, PYTEST), env=speedrun_env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    run_id = run_id_of(ran.stderr)

    shown = cli("status", run_id, env=speedrun_env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert (field(shown.stdout, "run"), field(shown.stdout, "workflow")) == (run_id, "turbo")
    assert field(shown.stdout, "status") == "passed"
    # The same summary the turbo command printed when the run ended, down to its last line.
    assert f"PASSED: 1 passed, 0 failed, 0 errors after 0 fix cycles; run {run_id}" in shown.stdout
    assert shown.stdout.rstrip().splitlines()[-1] == f"output: {(tmp_path / 'ws').resolve()}  (run {run_id})"
    assert ran.stdout.strip() in shown.stdout
    assert len(fake_llm.chat_requests()) == 1  # polling calls no model

    as_json = cli("status", run_id, "--json", env=speedrun_env, cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    status = RunStatus.model_validate(json.loads(as_json.stdout))
    assert status.status == "passed" and status.run_id == run_id
    assert status.result is not None and status.result["tests"]["passed"] == 1
    assert json.loads(as_json.stdout) == asyncio.run(in_process_status(run_id)).model_dump(mode="json")


def test_a_run_killed_mid_way_is_polled_without_being_taken_over_then_resumed_by_its_next_action(
    speedrun_env: dict[str, str], fake_llm: FakeLLM, tmp_path: Path
) -> None:
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    out, stderr_path = tmp_path / "ws", tmp_path / "turbo.stderr"
    with open(stderr_path, "w") as stderr:
        driver = subprocess.Popen(
            [sys.executable, "-m", "speedrun", *turbo_args(tmp_path, HANG_ONCE)],
            cwd=tmp_path,
            env=speedrun_env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        wait_for(lambda: (out / ".pid").is_file(), 30, "the first test run to start")
        run_id = run_id_of(stderr_path.read_text())
        polled = cli("status", run_id, env=speedrun_env, cwd=tmp_path)
        assert polled.returncode == 4, polled.stderr  # still running
        assert field(polled.stdout, "status") == "running"
        assert field(polled.stdout, "step") == "run_tests"  # read from the checkpoint another process wrote
        assert field(polled.stdout, "output") == str(out.resolve())
        assert f"poll until it ends: speedrun status {run_id}" in polled.stderr
        # Polling took nothing over: the driver still runs it, and others still see it driven by that process.
        assert driver.poll() is None
        assert listed_state(run_id, speedrun_env, tmp_path) == "running"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(10)
    test_group = int((out / ".pid").read_text())
    try:  # without a sandbox the hung test run could sleep on after its parent died
        os.killpg(test_group, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_for(lambda: not group_alive(test_group), 10, "the orphaned test process group to die")

    stopped = cli("status", run_id, env=speedrun_env, cwd=tmp_path)
    assert stopped.returncode == 130, stopped.stderr  # resumable
    assert field(stopped.stdout, "status") == "interrupted"
    assert field(stopped.stdout, "step") == "run_tests"  # where it stopped
    [command] = re.findall(r"^pick it up where it stopped: (speedrun resume \S+)$", stopped.stderr, re.M)
    assert command == f"speedrun resume {run_id}"

    resumed = cli(*command.split()[1:], env=speedrun_env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    final = cli("status", run_id, env=speedrun_env, cwd=tmp_path)
    assert final.returncode == 0, final.stderr
    assert field(final.stdout, "status") == "passed"
    assert len(fake_llm.chat_requests()) == 1  # the generator was not asked again


def test_an_unknown_run_id_exits_2_naming_it_and_how_to_list_runs(speedrun_env: dict[str, str], tmp_path: Path) -> None:
    shown = cli("status", "turbo-20260101-000000-beef", env=speedrun_env, cwd=tmp_path)
    assert shown.returncode == 2
    assert "no run 'turbo-20260101-000000-beef'" in shown.stderr and "speedrun runs" in shown.stderr
    assert shown.stdout == ""
    huge = cli("status", "x" * 5000, "--json", env=speedrun_env, cwd=tmp_path)
    assert huge.returncode == 2 and "speedrun runs" in huge.stderr
    assert len(huge.stderr) < 400 and "Traceback" not in huge.stderr  # the id is echoed cut short


def test_test_timeout_ends_a_hanging_test_command_with_exit_1_and_nothing_left(
    speedrun_env: dict[str, str], fake_llm: FakeLLM, tmp_path: Path
) -> None:
    refused = cli(*turbo_args(tmp_path, PYTEST, "--test-timeout", "3601"), env=speedrun_env, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "--test-timeout '3601' must be over 0 and at most 3600 seconds" in refused.stderr, refused.stderr
    assert fake_llm.chat_requests() == [] and not (tmp_path / "ws").exists()
    for bad in (0.0, -1.0, float("nan"), float("inf")):  # the same check, without a process each
        with pytest.raises(InputError, match="--test-timeout .* at most 3600 seconds"):
            turbo_input(
                output_dir=tmp_path / "ws",
                task="t",
                contract=None,
                test_command=PYTEST,
                max_fix_cycles=0,
                test_timeout_s=bad,
                names=TURBO_FLAGS,
            )

    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    marker = f"302.{os.getpid()}{secrets.randbelow(1000)}"
    started = time.monotonic()
    ran = cli(
        *turbo_args(tmp_path, f"sleep {marker}", "--test-timeout", "2", "--max-fix-cycles", "0"),
        env=speedrun_env,
        cwd=tmp_path,
    )
    assert ran.returncode == 1, ran.stderr
    assert time.monotonic() - started < 30
    assert "Timed out after 2 s" in ran.stdout + ran.stderr, ran.stdout
    assert "FAILED:" in ran.stdout
    assert processes_marked(marker) == []


@pytest.fixture
def database_url(postgres_url: str) -> object:
    """A fresh, empty database on the session's PostgreSQL server, so the test sees only its own runs."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    from urllib.parse import urlsplit, urlunsplit

    yield urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_a_run_in_postgres_is_polled_from_another_machine(
    speedrun_env: dict[str, str], fake_llm: FakeLLM, tmp_path: Path, database_url: str
) -> None:
    first, second = (
        {**speedrun_env, "SPEEDRUN_HOME": str(tmp_path / name), "SPEEDRUN_DATABASE_URL": database_url}
        for name in ("first", "second")
    )
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    ran = cli(*turbo_args(tmp_path, PYTEST), env=first, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    run_id = run_id_of(ran.stderr)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shown = cli("status", run_id, env=second, cwd=elsewhere)
    assert shown.returncode == 0, shown.stderr
    assert field(shown.stdout, "status") == "passed"
    assert f"PASSED: 1 passed, 0 failed, 0 errors after 0 fix cycles; run {run_id}" in shown.stdout
    alone = cli("status", run_id, env=speedrun_env, cwd=elsewhere)  # SQLite on this machine: no such run
    assert alone.returncode == 2 and f"no run '{run_id}'" in alone.stderr


def test_showdown_and_any_percent_take_test_timeout_into_their_input(tmp_path: Path) -> None:
    from speedrun.cli import PARALLEL_FLAGS, build_parser
    from speedrun.preflight import parallel_input

    for command, extra in (("showdown", ["--runners", "2"]), ("any-percent", ["--approach", "a: one"] * 2)):
        args = build_parser().parse_args([command, "--design", "d", "--feature", "f", "--test-timeout", "7", *extra])
        assert args.test_timeout == 7.0
        inputs = parallel_input(
            command.replace("-", "_"),
            design="d",
            repo=tmp_path,
            feature="f",
            test_command=PYTEST,
            test_timeout_s=args.test_timeout,
            names=PARALLEL_FLAGS,
        )
        assert inputs.test_timeout_s == 7.0
    with pytest.raises(InputError, match="--test-timeout '5000' must be over 0 and at most 3600 seconds"):
        parallel_input("showdown", design="d", repo=tmp_path, feature="f", test_command=PYTEST, test_timeout_s=5000,
                       names=PARALLEL_FLAGS)  # fmt: skip
