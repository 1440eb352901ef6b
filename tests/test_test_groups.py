"""The test-group record: a group left running by a killed speed-run (and a killed watchdog) dies on the next start."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from speedrun import sandbox
from speedrun.config import Settings
from speedrun.nodes.run_tests import run_test_command
from speedrun.procs import process_tag
from speedrun.runs import RunManager
from speedrun.sandbox import run_tests, sweep_test_groups
from tests.helpers import wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the watchdog and the group record read /proc (Linux)"
)

# speed-run, as a child process: its test command leaves a sleeper in the group, waits until the group is
# recorded, freezes speed-run (so it cannot clean up after the watchdog in the moment before it is killed,
# exactly as if it were killed at that moment) and kills its own watchdog, the shell's parent.
SPEEDRUN_CHILD = r"""
import asyncio, os, shlex, sys
from pathlib import Path
from speedrun.sandbox import run_tests

workspace, records, mark = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
sleeper = shlex.join([sys.executable, "-c", "import time; time.sleep(300)", mark])
command = (f"{sleeper} >/dev/null 2>&1 & echo $! > marker.pid; "
           f"until [ -n \"$(ls {shlex.quote(str(records))})\" ]; do sleep 0.02; done; "
           f"kill -STOP {os.getpid()}; kill -KILL $PPID; sleep 300")
asyncio.run(run_tests(command, workspace, mode="none", timeout_s=600, record_dir=records))
"""


def state_of(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()[0]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def records_in(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def write_record(directory: Path, name: str, *, pgid: int, leader: str | None, owner: str | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"pgid": pgid, "leader": leader, "owner": owner}))
    return path


@pytest.fixture
def spawn() -> Iterator:
    """Start processes the test may leave running (each in its own session); all are killed at the end."""
    started: list[subprocess.Popen] = []

    def start(*argv: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            list(argv),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        for kill in (lambda proc=proc: os.killpg(proc.pid, signal.SIGKILL), proc.kill):
            try:
                kill()
            except OSError:
                pass
        proc.wait(5)


def sleeper(spawn, mark: str) -> subprocess.Popen:
    """A process group of its own (leader = the sleeper) whose command line carries ``mark``."""
    return spawn(sys.executable, "-c", "import time; time.sleep(300)", mark)


def dead_tag(spawn) -> str:
    """The process tag of a process that has exited."""
    gone = spawn("sleep", "60")
    tag = process_tag(gone.pid)
    gone.kill()
    gone.wait(5)
    assert tag and process_tag(gone.pid) != tag
    return tag


# --------------------------------------------------------------------------------------------------


def test_a_group_left_by_a_killed_speedrun_that_lost_its_watchdog_dies_on_the_sweep(tmp_path: Path, spawn) -> None:
    workspace, records = tmp_path / "ws", tmp_path / "test-groups"
    workspace.mkdir()
    mark = f"speedrun-marker-{os.getpid()}-{time.monotonic_ns()}"
    child = spawn(sys.executable, "-c", SPEEDRUN_CHILD, str(workspace), str(records), mark)
    marker_pid = 0
    try:
        wait_for(
            lambda: (workspace / "marker.pid").is_file() and (workspace / "marker.pid").read_text().strip(),
            30,
            "the test command to start its background process",
        )
        marker_pid = int((workspace / "marker.pid").read_text())
        wait_for(lambda: state_of(child.pid) == "T", 30, "the test command to freeze speed-run")
        [record_path] = records_in(records)
        record = json.loads(record_path.read_text())
        wait_for(lambda: process_tag(record["pgid"]) is None, 30, "the test command to kill its watchdog")
        child.send_signal(signal.SIGKILL)  # speed-run dies now, with its watchdog already gone
        assert child.wait(10) == -signal.SIGKILL

        # The gap: nothing is left to clean up after the test.
        time.sleep(0.3)
        assert process_tag(marker_pid) is not None and mark in cmdline(marker_pid)
        assert state_of(marker_pid) not in (None, "Z", "X")
        assert records_in(records) == [record_path]

        assert sweep_test_groups(records) == 1
        wait_for(lambda: process_tag(marker_pid) is None, 5, "the swept background process to die")
        assert records_in(records) == []
        assert sweep_test_groups(records) == 0
    finally:
        if marker_pid and mark in cmdline(marker_pid):
            os.kill(marker_pid, signal.SIGKILL)


@pytest.mark.parametrize("owner", ["another live process", "this process"])
def test_a_record_whose_owner_still_runs_is_left_alone(tmp_path: Path, spawn, owner: str) -> None:
    records = tmp_path / "test-groups"
    group = sleeper(spawn, "speedrun-owned-group")
    owner_tag = process_tag(spawn("sleep", "60").pid) if owner != "this process" else process_tag()
    path = write_record(records, "owned", pgid=group.pid, leader=process_tag(group.pid), owner=owner_tag)

    assert sweep_test_groups(records) == 0
    time.sleep(0.2)
    assert group.poll() is None, "a group whose owner still drives it was killed"
    assert path.is_file()


def test_a_recycled_pgid_kills_nothing(tmp_path: Path, spawn) -> None:
    """The recorded leader's pid now belongs to another process (another start time): that group is not ours."""
    records = tmp_path / "test-groups"
    stranger = sleeper(spawn, "speedrun-stranger")
    pid, start = process_tag(stranger.pid).split(":")
    path = write_record(records, "stale", pgid=stranger.pid, leader=f"{pid}:{int(start) - 1}", owner=dead_tag(spawn))

    assert sweep_test_groups(records) == 0
    time.sleep(0.2)
    assert stranger.poll() is None, "a process that merely reused the recorded pid was killed"
    assert not path.exists()


def test_a_damaged_record_is_removed_and_the_rest_still_swept(tmp_path: Path, spawn) -> None:
    records = tmp_path / "test-groups"
    records.mkdir()
    (records / "broken.json").write_text('{"pgid": 1, "leader": ')
    group = sleeper(spawn, "speedrun-left-behind")
    write_record(records, "left", pgid=group.pid, leader=process_tag(group.pid), owner=dead_tag(spawn))

    assert sweep_test_groups(records) == 1
    assert group.wait(5) == -signal.SIGKILL
    assert records_in(records) == []
    assert sweep_test_groups(tmp_path / "never-created") == 0


@pytest.mark.anyio
async def test_the_record_names_the_running_group_and_is_removed_when_the_command_ends(tmp_path: Path) -> None:
    records = tmp_path / "test-groups"
    command = f"cat {shlex.quote(str(records))}/*.json; echo; echo pgid=$(cut -d' ' -f5 /proc/$$/stat)"
    report = await run_tests(command, tmp_path, mode="none", record_dir=records)

    assert report.ok, report.output_tail
    recorded_line, pgid_line = report.output_tail.strip().splitlines()
    recorded = json.loads(recorded_line)
    assert recorded["pgid"] == int(pgid_line.removeprefix("pgid="))
    assert recorded["owner"] == process_tag()
    assert recorded["leader"].startswith(f"{recorded['pgid']}:")
    assert records_in(records) == []
    assert os.stat(records).st_mode & 0o077 == 0


@pytest.mark.anyio
async def test_runs_record_their_groups_under_speedrun_home(
    speedrun_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPEEDRUN_SANDBOX", "none")  # bwrap hides SPEEDRUN_HOME from the tests, as it should
    records = Path(speedrun_env["SPEEDRUN_HOME"]) / "test-groups"
    workspace = tmp_path / "ws"
    workspace.mkdir()
    report = await run_test_command(f"ls {shlex.quote(str(records))}", workspace, None, timeout_s=30)

    assert report.ok, report.output_tail
    assert report.output_tail.strip().endswith(".json")
    assert records_in(records) == []
    assert os.stat(records.parent).st_mode & 0o077 == 0


@pytest.mark.anyio
async def test_opening_the_run_manager_kills_groups_left_by_a_dead_speedrun(speedrun_env, spawn) -> None:
    records = Path(speedrun_env["SPEEDRUN_HOME"]) / "test-groups"
    left = sleeper(spawn, "speedrun-left-by-a-dead-cli")
    write_record(records, "left", pgid=left.pid, leader=process_tag(left.pid), owner=dead_tag(spawn))

    async with RunManager.open(Settings()):
        assert left.poll() == -signal.SIGKILL, "the group was still running when the run manager was open"
    assert records_in(records) == []


@pytest.mark.anyio
async def test_a_resume_kills_groups_left_since_the_server_started(speedrun_env, spawn, tmp_path: Path) -> None:
    # A long-lived MCP server swept at its start; a CLI killed later leaves a group that the next resume must end
    # before the resumed run's tests start beside it.
    records = Path(speedrun_env["SPEEDRUN_HOME"]) / "test-groups"
    async with RunManager.open(Settings()) as runs:
        left = sleeper(spawn, "speedrun-left-while-the-server-ran")
        write_record(records, "later", pgid=left.pid, leader=process_tag(left.pid), owner=dead_tag(spawn))
        run_id = await runs.start(
            "turbo",
            {
                "contract": "RULES: nothing",
                "output_dir": str(tmp_path / "ws"),
                "test_command": "true",
                "max_fix_cycles": 0,
            },
        )
        await runs.cancel(run_id)
        assert left.poll() is None  # nothing swept it yet
        await runs.resume(run_id)
        assert left.poll() == -signal.SIGKILL, "the resume ran with the old group still alive"
        await runs.cancel(run_id)
    assert records_in(records) == []


@pytest.mark.anyio
async def test_no_test_code_runs_before_its_group_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A slow disk (or a loaded machine) must not let the command start ahead of its record: were speed-run and the
    # watchdog killed in that window, nothing would know to clean the group up.
    slow_record = sandbox._record_group

    def record_slowly(record_dir: Path, pgid: int) -> None:
        time.sleep(0.5)
        slow_record(record_dir, pgid)

    monkeypatch.setattr(sandbox, "_record_group", record_slowly)
    records = tmp_path / "test-groups"
    report = await run_tests(f"ls {shlex.quote(str(records))}", tmp_path, mode="none", record_dir=records)

    assert report.ok, report.output_tail
    assert report.output_tail.strip().endswith(".json")
