"""The run database's own table (run liveness) and its numbered migrations, recorded in PRAGMA user_version."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from speedrun.errors import ConfigError
from speedrun.state.runs import META_CREATED, META_OUTPUT_DIR, META_WORKFLOW

if TYPE_CHECKING:
    import aiosqlite

__all__ = ["MIGRATIONS", "Liveness", "get_liveness", "migrate", "now", "set_liveness"]

TABLE = "speedrun_liveness"


class Liveness(BaseModel):
    """Who drives a run and how it last ended: the only run facts that are not checkpoint metadata."""

    state: str
    owner: str | None = None
    error: str | None = None


def now() -> str:
    """The time as runs record it: ISO 8601 in UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


async def get_liveness(conn: aiosqlite.Connection, run_id: str) -> Liveness | None:
    """The run's liveness row, or None when it has none (e.g. a run known only by its checkpoints)."""
    async with conn.execute(f"SELECT state, owner, error FROM {TABLE} WHERE run_id = ?", (run_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else Liveness(state=row[0], owner=row[1], error=row[2])


async def set_liveness(conn: aiosqlite.Connection, run_id: str, live: Liveness) -> None:
    """Record the run's state, owner and error (inserting its row if it has none), and commit."""
    await conn.execute(
        f"INSERT INTO {TABLE} (run_id, state, owner, error, updated) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(run_id) DO UPDATE SET state = excluded.state, owner = excluded.owner, "
        "error = excluded.error, updated = excluded.updated",
        (run_id, live.state, live.owner, live.error, now()),
    )
    await conn.commit()


# --- migrations: append only; step N runs once on a database at user_version N-1 ---------------------------


async def _create_liveness(conn: aiosqlite.Connection) -> None:
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (run_id TEXT PRIMARY KEY, state TEXT NOT NULL, owner TEXT, "
        "error TEXT, updated TEXT NOT NULL)"
    )


async def _adopt_speedrun_runs(conn: aiosqlite.Connection) -> None:
    """Move the previous release's `speedrun_runs` table (with or without its later `owner` column) into checkpoint
    metadata and the liveness table, then drop it.

    The metadata is written with SQL into the checkpointer's `checkpoints.metadata` JSON, which is where the saver
    keeps what a run config's `metadata` records and what `alist(filter=...)` reads: rewriting the checkpoints
    through the saver would re-serialize every one of them. A run that never reached a checkpoint holds nothing to
    show or resume, so only its liveness row is kept.
    """
    async with conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'speedrun_runs'") as cur:
        if await cur.fetchone() is None:
            return
    async with conn.execute("SELECT * FROM speedrun_runs") as cur:
        columns = [d[0] for d in cur.description]
        rows: list[dict[str, Any]] = [dict(zip(columns, r, strict=True)) for r in await cur.fetchall()]
    for row in rows:
        await conn.execute(
            f"INSERT OR REPLACE INTO {TABLE} (run_id, state, owner, error, updated) VALUES (?, ?, ?, ?, ?)",
            (
                row["run_id"],
                row.get("state") or "running",
                row.get("owner"),
                row.get("error"),
                row.get("created_at") or now(),
            ),
        )
        await conn.execute(
            f"UPDATE checkpoints SET metadata = json_set(COALESCE(CAST(metadata AS TEXT), '{{}}'), "
            f"'$.{META_WORKFLOW}', ?, '$.{META_CREATED}', ?, '$.{META_OUTPUT_DIR}', ?) WHERE thread_id = ?",
            (row.get("workflow") or "turbo", row.get("created_at") or now(), row.get("output_dir"), row["run_id"]),
        )
    await conn.execute("DROP TABLE speedrun_runs")


MIGRATIONS: list[Callable[[aiosqlite.Connection], Awaitable[None]]] = [_create_liveness, _adopt_speedrun_runs]


async def migrate(conn: aiosqlite.Connection, where: str) -> int:
    """Bring the database to the newest schema, each missing step in order, in one transaction; returns how many
    steps ran. Call after the checkpointer's own set-up (step 2 reads its table). `where` names the file in errors.
    """
    # IMMEDIATE takes the write lock before reading the version: two processes opening an old database at once
    # must not both run a step.
    await conn.execute("BEGIN IMMEDIATE")
    try:
        async with conn.execute("PRAGMA user_version") as cur:
            version = int((await cur.fetchone() or (0,))[0])
        if version > len(MIGRATIONS):
            raise ConfigError(
                f"the run database {where} was made by a newer speed-run (schema {version}, this one knows "
                f"{len(MIGRATIONS)}); upgrade speed-run, or set SPEEDRUN_HOME to another directory."
            )
        for step in MIGRATIONS[version:]:
            await step(conn)
        await conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")  # an int we own, never input
        await conn.commit()
    except BaseException:
        await conn.rollback()
        raise
    return len(MIGRATIONS) - version
