"""The run database: run facts as checkpoint metadata, a liveness table, and an in-place upgrade of older databases."""

from __future__ import annotations

import importlib.util
import sqlite3
import subprocess
import sys
import types
from pathlib import Path

import anyio
import pytest

from speedrun.config import Settings
from speedrun.errors import ConfigError
from speedrun.runs import RunManager
from tests.fake_llm import FakeLLM
from tests.helpers import CONTRACT_TEXT, FIXED_CALC, PYTEST, TEST_CALC, file_blocks

REPO = Path(__file__).resolve().parents[1]
PREVIOUS_RELEASE = "943a49a"  # the last commit whose runs.py kept the hand-made speedrun_runs table
BUGGY_CALC = "def add(a, b):\n    return a - b\n"


def previous_runs_module() -> types.ModuleType:
    """The previous release's runs.py, loaded from git: it builds its database with its own SQL."""
    source = subprocess.run(
        ["git", "show", f"{PREVIOUS_RELEASE}:speedrun/runs.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "CREATE TABLE IF NOT EXISTS speedrun_runs" in source
    spec = importlib.util.spec_from_loader("previous_runs", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    try:
        exec(compile(source, "previous_runs.py", "exec"), module.__dict__)
    finally:
        del sys.modules[spec.name]
    return module


async def old_database(fake_llm: FakeLLM, tmp_path: Path) -> dict[str, str]:
    """Runs made by the previous release: one passed, one waiting for the caller's fix. Returns their ids."""
    old = previous_runs_module()
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    fake_llm.script(file_blocks({"calc.py": BUGGY_CALC, "test_calc.py": TEST_CALC}))
    async with old.RunManager.open(Settings()) as runs:
        passed = await runs.start(
            "turbo", {"contract": CONTRACT_TEXT, "output_dir": str(tmp_path / "ws1"), "test_command": PYTEST}
        )
        assert (await runs.wait(passed, 30)).status == "passed"
        waiting = await runs.start(
            "turbo",
            {
                "contract": CONTRACT_TEXT,
                "output_dir": str(tmp_path / "ws2"),
                "test_command": PYTEST,
                "roles": {"fixer": "client"},
            },
        )
        assert (await runs.wait(waiting, 30)).status == "needs_input"
    return {"passed": passed, "waiting": waiting}


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.anyio
async def test_a_database_of_the_previous_release_upgrades_in_place(speedrun_env, fake_llm: FakeLLM, tmp_path):
    db = Path(speedrun_env["SPEEDRUN_HOME"]) / "runs.sqlite"
    with anyio.fail_after(90):
        ids = await old_database(fake_llm, tmp_path)
        before = {r[0]: r[1:] for r in rows(db, "SELECT run_id, workflow, created_at, output_dir FROM speedrun_runs")}
        async with RunManager.open(Settings()) as runs:
            listed = await runs.list()
            metrics = await runs.metrics_for(str(tmp_path / "ws1"))
            # The paused run goes on under the new release with the caller's answer.
            (tmp_path / "ws2" / "calc.py").write_text(FIXED_CALC)  # the caller's fix
            await runs.resume(ids["waiting"], {"action": "retest"})
            final = await runs.wait(ids["waiting"], 30)
    assert [(r.run_id, r.workflow, r.created_at, r.output_dir) for r in listed] == [
        (run_id, *before[run_id]) for run_id in (ids["waiting"], ids["passed"])
    ]
    assert [r.status for r in listed] == ["needs_input", "passed"]
    assert metrics == {"llm_calls": 1, "fix_cycles": 0, "generation_ms": metrics["generation_ms"]}
    assert final.status == "passed"
    # The hand-made table is gone; the schema version says which steps ran.
    tables = {name for (name,) in rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "speedrun_runs" not in tables and "speedrun_liveness" in tables
    assert rows(db, "PRAGMA user_version") == [(2,)]


@pytest.mark.anyio
async def test_a_database_from_before_the_owner_column_upgrades_too(speedrun_env, fake_llm: FakeLLM, tmp_path):
    db = Path(speedrun_env["SPEEDRUN_HOME"]) / "runs.sqlite"
    with anyio.fail_after(90):
        ids = await old_database(fake_llm, tmp_path)
        with sqlite3.connect(db) as conn:  # the first release's table: no `owner`
            conn.executescript(
                "CREATE TABLE first (run_id TEXT PRIMARY KEY, workflow TEXT, created_at TEXT, output_dir TEXT, "
                "state TEXT, error TEXT);"
                "INSERT INTO first SELECT run_id, workflow, created_at, output_dir, state, error FROM speedrun_runs;"
                "DROP TABLE speedrun_runs; ALTER TABLE first RENAME TO speedrun_runs;"
            )
        async with RunManager.open(Settings()) as runs:
            statuses = {r.run_id: r.status for r in await runs.list()}
            result = await runs.full_result(ids["passed"])
    assert statuses == {ids["passed"]: "passed", ids["waiting"]: "needs_input"}
    assert result.tests.passed == 1


@pytest.mark.anyio
async def test_run_facts_are_metadata_of_every_checkpoint_and_listed_from_a_new_process(
    speedrun_env, fake_llm: FakeLLM, tmp_path
):
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    out = tmp_path / "ws"
    with anyio.fail_after(60):
        async with RunManager.open(Settings()) as runs:
            run_id = await runs.start(
                "turbo", {"contract": CONTRACT_TEXT, "output_dir": str(out), "test_command": PYTEST}
            )
            # Listed at once, before its first checkpoint may exist, and only once.
            assert [(r.run_id, r.status) for r in await runs.list()] == [(run_id, "running")]
            assert (await runs.wait(run_id, 30)).status == "passed"
    db = Path(speedrun_env["SPEEDRUN_HOME"]) / "runs.sqlite"
    metadata = rows(
        db,
        "SELECT json_extract(metadata, '$.speedrun_workflow'), json_extract(metadata, '$.speedrun_output_dir'), "
        f"json_extract(metadata, '$.speedrun_created_at') FROM checkpoints WHERE thread_id = '{run_id}'",
    )
    assert len(metadata) > 3 and {m[:2] for m in metadata} == {("turbo", str(out))}
    assert len({m[2] for m in metadata}) == 1
    assert rows(db, f"SELECT state, owner FROM speedrun_liveness WHERE run_id = '{run_id}'") == [("done", None)]
    listed = subprocess.run(
        [sys.executable, "-m", "speedrun", "runs"], env=speedrun_env, capture_output=True, text=True, timeout=60
    )
    [row] = [line.split() for line in listed.stdout.splitlines() if line.startswith(run_id)]
    assert row[1:] == ["passed", metadata[0][2], str(out)]


@pytest.mark.anyio
async def test_a_database_from_a_newer_release_is_refused_untouched(speedrun_env, tmp_path):
    home = Path(speedrun_env["SPEEDRUN_HOME"])
    async with RunManager.open(Settings()):
        pass
    db = home / "runs.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 7")
    with pytest.raises(ConfigError, match=r"made by a newer speed-run \(schema 7"):
        async with RunManager.open(Settings()):
            pass
    assert rows(db, "PRAGMA user_version") == [(7,)]
    cli = subprocess.run(
        [sys.executable, "-m", "speedrun", "runs"], env=speedrun_env, capture_output=True, text=True, timeout=60
    )
    assert cli.returncode == 2 and "upgrade speed-run, or set SPEEDRUN_HOME" in cli.stderr
    assert "Traceback" not in cli.stderr
