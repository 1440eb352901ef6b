"""Runs in PostgreSQL (SPEEDRUN_DATABASE_URL): one machine starts a run, another lists, polls and resumes it."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest

from speedrun.config import Settings
from speedrun.errors import InputError
from speedrun.procs import group_alive
from speedrun.runs import RunManager
from tests.fake_llm import FakeLLM
from tests.helpers import CONTRACT_TEXT, FIXED_CALC, HANG_ONCE, TEST_CALC, file_blocks, mcp_session, role_of, wait_for

FOREIGN_OWNER = "elsewhere~0badc0de/4242:123456"  # a driver on another host: judged by its lease alone


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _sql(url: str, query: str, *args: object) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, args or None)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def database_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's server, so a test sees only its own runs."""
    name = f"t_{secrets.token_hex(6)}"
    _sql(postgres_url, f"CREATE DATABASE {name}")
    yield _with_db(postgres_url, name)
    _sql(postgres_url, f"DROP DATABASE {name} WITH (FORCE)")


def machine(speedrun_env: dict[str, str], tmp_path: Path, name: str, database_url: str) -> dict[str, str]:
    """The environment of one 'machine': its own SPEEDRUN_HOME, the shared database."""
    return {**speedrun_env, "SPEEDRUN_HOME": str(tmp_path / name), "SPEEDRUN_DATABASE_URL": database_url}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "speedrun", *args], env=env, capture_output=True, text=True, check=False, timeout=60
    )


def listed_state(run_id: str, env: dict[str, str]) -> str:
    listed = cli("runs", env=env)
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if line.startswith(run_id)]
    return row.split()[1]


async def poll(tmp_path: Path, env: dict[str, str], run_id: str) -> dict[str, object]:
    """run_status over a real MCP session, from a server with this machine's environment."""
    async with mcp_session(tmp_path, env) as session:
        result = await session.call_tool("run_status", {"run_id": run_id})
    assert not result.is_error, result.content
    return dict(result.structured_content or {})


def start_turbo(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """`speedrun turbo` in the background, with a test command that hangs on its first run."""
    contract = tmp_path / "contract.txt"
    contract.write_text(CONTRACT_TEXT)
    out, stderr_path = tmp_path / "ws", tmp_path / "turbo.stderr"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "speedrun", "turbo", "--contract", str(contract), "--out", str(out),
             "--test-cmd", HANG_ONCE],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
        )  # fmt: skip
    return proc, out, stderr_path


def kill_driver(proc: subprocess.Popen[bytes], out: Path) -> None:
    """SIGKILL the CLI's whole session and wait until its hanging test group is gone too."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    test_group = int((out / ".pid").read_text())
    try:
        os.killpg(test_group, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_for(lambda: not group_alive(test_group), 10, "the orphaned test process group to die")


async def judge_metrics(out: Path) -> dict[str, int] | None:
    """What the judge would get for `out` from the run store (metadata filters on Postgres)."""
    async with RunManager.open(Settings()) as runs:
        return await runs.metrics_for(str(out))


def test_a_run_killed_on_one_machine_is_listed_polled_and_resumed_from_another(
    speedrun_env, fake_llm: FakeLLM, tmp_path, database_url, monkeypatch
):
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    first, second = (machine(speedrun_env, tmp_path, n, database_url) for n in ("first", "second"))
    proc, out, stderr_path = start_turbo(tmp_path, first)
    try:
        wait_for(lambda: (out / ".pid").is_file(), 30, "the first test run to start")
        run_id = stderr_path.read_text().splitlines()[0].removeprefix("run ")
        assert listed_state(run_id, second) == "running"  # its driver lives: nobody else may drive it
    finally:
        kill_driver(proc, out)
    assert [role_of(r) for r in fake_llm.chat_requests()] == ["generator"]

    # The second machine sees it interrupted, over the CLI and over MCP, and resumes it.
    assert listed_state(run_id, second) == "interrupted"
    status = asyncio.run(poll(tmp_path, second, run_id))
    assert status["status"] == "interrupted" and status["workflow"] == "turbo"
    resumed = cli("resume", run_id, env=second)
    assert resumed.returncode == 0, resumed.stderr
    assert f"PASSED: 1 passed, 0 failed, 0 errors after 0 fix cycles; run {run_id}" in resumed.stdout
    assert (out / "calc.py").read_text() == FIXED_CALC
    # The finished generate node's request was not sent again.
    assert [role_of(r) for r in fake_llm.chat_requests()] == ["generator"]
    monkeypatch.setenv("SPEEDRUN_DATABASE_URL", database_url)
    metrics = asyncio.run(judge_metrics(out)) or {}
    assert (metrics.get("llm_calls"), metrics.get("fix_cycles")) == (1, 0)
    # Nothing went to SQLite: both homes hold no run database; the checkpoints are in Postgres.
    assert not list(tmp_path.rglob("runs.sqlite"))
    [(count,)] = _sql(database_url, "SELECT count(*) FROM checkpoints WHERE thread_id = %s", run_id)
    assert count > 0
    password = urlsplit(database_url).password or ""
    assert password and password not in resumed.stdout + resumed.stderr


@pytest.mark.anyio
async def test_a_driver_on_another_host_holds_its_run_until_its_lease_runs_out(
    speedrun_env, fake_llm, tmp_path, database_url, monkeypatch
):
    monkeypatch.setenv("SPEEDRUN_DATABASE_URL", database_url)
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    out = tmp_path / "ws"
    async with RunManager.open(Settings()) as runs:
        run_id = await _start_held_at_its_tests(runs, out)
        await runs.cancel(run_id)
        # As if a process on another host drove it and renewed its lease a moment ago: pids here say nothing of it.
        set_owner = "UPDATE speedrun_liveness SET owner = %s, state = 'running', updated = now()"
        await asyncio.to_thread(_sql, database_url, set_owner, FOREIGN_OWNER)
        assert (await runs.status(run_id)).status == "running"
        with pytest.raises(InputError, match="running in another speedrun process"):
            await runs.resume(run_id)
        # Its host went down: no renewal for longer than the lease (30 s). The run is resumable here.
        await asyncio.to_thread(_sql, database_url, "UPDATE speedrun_liveness SET updated = now() - interval '31 s'")
        assert (await runs.status(run_id)).status == "interrupted"
        await runs.resume(run_id)
        assert (await runs.wait(run_id, 30)).status == "passed"
    assert [role_of(r) for r in fake_llm.chat_requests()] == ["generator"]


@pytest.mark.anyio
async def test_the_driving_process_renews_its_lease(speedrun_env, fake_llm, tmp_path, database_url, monkeypatch):
    import speedrun.runs

    monkeypatch.setattr(speedrun.runs, "LEASE_REFRESH_SECONDS", 0.1)
    monkeypatch.setenv("SPEEDRUN_DATABASE_URL", database_url)
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    out = tmp_path / "ws"
    async with RunManager.open(Settings()) as runs:
        run_id = await _start_held_at_its_tests(runs, out)
        await asyncio.to_thread(_sql, database_url, "UPDATE speedrun_liveness SET updated = now() - interval '1 hour'")
        await anyio.sleep(0.5)
        [(age,)] = await asyncio.to_thread(
            _sql,
            database_url,
            "SELECT extract(epoch FROM now() - updated) FROM speedrun_liveness WHERE run_id = %s",
            run_id,
        )
        assert float(age) < 5  # renewed since it was set back an hour
        await runs.cancel(run_id)


async def _start_held_at_its_tests(runs: RunManager, out: Path) -> str:
    """Start a turbo run whose first test run hangs (HANG_ONCE), and return its id once the tests are running."""
    run_id = await runs.start("turbo", {"contract": CONTRACT_TEXT, "output_dir": str(out), "test_command": HANG_ONCE})
    with anyio.fail_after(30):
        while not (out / ".pid").is_file():
            await anyio.sleep(0.05)
    return run_id


@pytest.mark.parametrize(
    ("mangle", "says"),
    [
        (lambda url: url.replace("postgresql://", "mysql://"), "is not a PostgreSQL URL"),
        (
            lambda url: urlunsplit(urlsplit(url)._replace(netloc=urlsplit(url).netloc.rsplit(":", 1)[0] + ":1")),
            "refused",
        ),
        (lambda url: url.replace("@", "WRONG@", 1), "password authentication failed"),
    ],
    ids=["not-postgres", "refused", "wrong-password"],
)
def test_a_bad_database_url_is_one_clear_error_without_the_password(speedrun_env, tmp_path, postgres_url, mangle, says):
    url = mangle(postgres_url)
    env = {**speedrun_env, "SPEEDRUN_DATABASE_URL": url}
    listed = cli("runs", env=env)
    assert listed.returncode == 2
    assert says in listed.stderr and "SPEEDRUN_DATABASE_URL" in listed.stderr
    assert "Traceback" not in listed.stderr and len(listed.stderr) < 1000
    password = urlsplit(url).password or ""
    assert password and password not in listed.stdout + listed.stderr
    assert urlsplit(url).password[:4] not in listed.stderr  # not even its start (e.g. the real one before WRONG)


def test_without_the_postgres_extra_the_error_says_how_to_install_it(speedrun_env, postgres_url):
    env = {**speedrun_env, "SPEEDRUN_DATABASE_URL": postgres_url}
    # The extra's packages made unimportable, as in an install without it.
    hide = "import sys, runpy; sys.modules['psycopg'] = None; sys.argv = ['speedrun', 'runs']; "
    ran = subprocess.run(
        [sys.executable, "-c", hide + "runpy.run_module('speedrun', run_name='__main__')"],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 2
    assert "the postgres extra is not installed: `uv sync --inexact --extra postgres`" in ran.stderr
    assert "Traceback" not in ran.stderr


#: Opens the run store once `go` exists: imports (the slow part) happen before, so the set-ups really overlap.
OPEN_AT_GO = """
import asyncio, sys, time
from pathlib import Path
from speedrun.config import Settings
from speedrun.runs import RunManager

async def main():
    async with RunManager.open(Settings()) as runs:
        print(len(await runs.list()))

Path(sys.argv[2]).touch()
while not Path(sys.argv[1]).exists():
    time.sleep(0.005)
asyncio.run(main())
"""


def test_processes_opening_a_fresh_database_at_once_all_succeed(speedrun_env, tmp_path, database_url):
    env = {**speedrun_env, "SPEEDRUN_DATABASE_URL": database_url}
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT_GO, str(go), str(tmp_path / f"ready{n}")],
            env={**env, "SPEEDRUN_HOME": str(tmp_path / f"h{n}")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    wait_for(lambda: all((tmp_path / f"ready{n}").exists() for n in range(3)), 30, "the processes to be ready")
    go.touch()
    results = [(p.wait(60), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in results] == [0] * 3, results
    # Each set-up step ran once: the versions are recorded once each, the liveness table is there.
    assert _sql(database_url, "SELECT v FROM speedrun_migrations ORDER BY v") == [(1,)]
    assert _sql(database_url, "SELECT count(*), count(DISTINCT v) FROM checkpoint_migrations")[0][0] > 0
    assert _sql(database_url, "SELECT count(*) FROM speedrun_liveness") == [(0,)]
