"""Run liveness (who drives a run, its lease) and its numbered migrations; the SQLite store, versioned in PRAGMA."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field

from speedrun.errors import ConfigError
from speedrun.procs import host_id, owner_alive, split_owner
from speedrun.state.runs import META_CREATED, META_OUTPUT_DIR, META_WORKFLOW

if TYPE_CHECKING:
    import aiosqlite

__all__ = [
    "LEASE_REFRESH_SECONDS",
    "LEASE_SECONDS",
    "MIGRATIONS",
    "Liveness",
    "RunStore",
    "SqliteStore",
    "check_schema",
    "driven_elsewhere",
    "get_liveness",
    "migrate",
    "now",
    "set_liveness",
]

TABLE = "speedrun_liveness"
#: A driving process renews its runs' rows this often; an owner on another host counts as alive while its row is
#: younger than LEASE_SECONDS (three missed renewals), so a killed driver's run is resumable elsewhere after that.
LEASE_REFRESH_SECONDS = 10.0
LEASE_SECONDS = 30.0


class Liveness(BaseModel):
    """Who drives a run and how it last ended: the only run facts that are not checkpoint metadata."""

    state: str = Field(description="running, done, error, cancelled (interrupted when there is no row).")
    owner: str | None = Field(None, description="run_owner ('host/pid:start-time') of the driving process.")
    error: str | None = Field(None, description="Why it ended in an error, redacted.")
    age_s: float | None = Field(None, description="Seconds since the row was written or its lease renewed.")


def driven_elsewhere(live: Liveness | None) -> bool:
    """True when another live process drives the run: on this host, its owner's process still runs; on another
    host (a shared database), its owner renewed the lease within LEASE_SECONDS. This process never counts."""
    if live is None or live.state != "running" or not live.owner:
        return False
    host, _ = split_owner(live.owner)
    if host is None or host == host_id():
        return owner_alive(live.owner)
    return live.age_s is not None and live.age_s < LEASE_SECONDS


class RunStore(Protocol):
    """The liveness rows of one run database (SQLite here, PostgreSQL in runs_pg): same rules, own SQL."""

    async def get(self, run_id: str) -> Liveness | None:
        """The run's row, or None when it has none."""

    async def set(self, run_id: str, live: Liveness) -> None:
        """Record the run's state, owner and error, and renew its lease."""

    async def renew(self, run_ids: list[str], owner: str) -> None:
        """Renew the lease of these runs where `owner` still drives them."""


def now() -> str:
    """The time as runs record it: ISO 8601 in UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _age(updated: str | None) -> float | None:
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(updated or "")).total_seconds()
    except ValueError:
        return None


async def get_liveness(conn: aiosqlite.Connection, run_id: str) -> Liveness | None:
    """The run's liveness row, or None when it has none (e.g. a run known only by its checkpoints)."""
    sql = f"SELECT state, owner, error, updated FROM {TABLE} WHERE run_id = ?"
    async with conn.execute(sql, (run_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else Liveness(state=row[0], owner=row[1], error=row[2], age_s=_age(row[3]))


async def set_liveness(conn: aiosqlite.Connection, run_id: str, live: Liveness) -> None:
    """Record the run's state, owner and error (inserting its row if it has none), and commit."""
    await conn.execute(
        f"INSERT INTO {TABLE} (run_id, state, owner, error, updated) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(run_id) DO UPDATE SET state = excluded.state, owner = excluded.owner, "
        "error = excluded.error, updated = excluded.updated",
        (run_id, live.state, live.owner, live.error, now()),
    )
    await conn.commit()


class SqliteStore:
    """The RunStore of a SQLite run database (one host, or a SPEEDRUN_HOME that several share)."""

    def __init__(self, conn: aiosqlite.Connection):
        self.conn = conn

    async def get(self, run_id: str) -> Liveness | None:
        """The run's row, or None when it has none."""
        return await get_liveness(self.conn, run_id)

    async def set(self, run_id: str, live: Liveness) -> None:
        """Record the run's state, owner and error, and renew its lease."""
        await set_liveness(self.conn, run_id, live)

    async def renew(self, run_ids: list[str], owner: str) -> None:
        """Renew the lease of these runs where `owner` still drives them."""
        marks = ", ".join("?" for _ in run_ids)
        await self.conn.execute(
            f"UPDATE {TABLE} SET updated = ? WHERE owner = ? AND state = 'running' AND run_id IN ({marks})",
            (now(), owner, *run_ids),
        )
        await self.conn.commit()


def check_schema(version: int, known: int, where: str, elsewhere: str) -> None:
    """Refuse a run database made by a newer speed-run (schema `version` > the `known` steps), for every engine;
    `elsewhere` says how to use another database instead."""
    if version > known:
        raise ConfigError(
            f"the run database {where} was made by a newer speed-run (schema {version}, this one knows "
            f"{known}); upgrade speed-run, or {elsewhere}."
        )


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
        check_schema(version, len(MIGRATIONS), where, "set SPEEDRUN_HOME to another directory")
        for step in MIGRATIONS[version:]:
            await step(conn)
        await conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")  # an int we own, never input
        await conn.commit()
    except BaseException:
        await conn.rollback()
        raise
    return len(MIGRATIONS) - version
