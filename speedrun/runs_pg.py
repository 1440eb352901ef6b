"""The PostgreSQL run store (SPEEDRUN_DATABASE_URL): checkpointer, liveness rows, numbered migrations, clear errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from speedrun.errors import ConfigError
from speedrun.runs_db import TABLE, Liveness, check_schema

if TYPE_CHECKING:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg import AsyncConnection
    from psycopg.rows import DictRow
    from psycopg_pool import AsyncConnectionPool

    from speedrun.config import Settings

__all__ = ["EXTRA_MISSING", "MIGRATIONS", "PostgresStore", "open_postgres"]

EXTRA_MISSING = (
    "SPEEDRUN_DATABASE_URL is set but the postgres extra is not installed: uv sync --inexact --extra postgres "
    "(or pip install 'speed-run[postgres]')"
)
CONNECT_SECONDS = 10  # a server that does not answer within this is reported, not waited on for minutes
SETUP_SECONDS = 120.0  # another process holding the set-up lock longer than this has hung
POOL_SIZE = 4  # the saver uses one connection at a time (it holds a lock); the rest serve liveness rows
URL_SHOWN = 200  # characters of the (masked) URL in an error
#: pg_advisory_lock key that serializes set-up (the saver's tables, then MIGRATIONS) across processes and hosts.
SETUP_LOCK = 0x5EED_2012
VERSIONS = "speedrun_migrations"

#: Append only: step N runs once, when the highest recorded version is N-1. The SQLite steps' Postgres twins;
#: SQLite's step 2 (adopting a pre-liveness table) has no twin, since no release wrote that table to Postgres.
MIGRATIONS: list[str] = [
    f"CREATE TABLE IF NOT EXISTS {TABLE} (run_id TEXT PRIMARY KEY, state TEXT NOT NULL, owner TEXT, "
    "error TEXT, updated TIMESTAMPTZ NOT NULL DEFAULT now())",
]


class PostgresStore:
    """The RunStore of a PostgreSQL run database: lease ages come from the server's clock, so hosts with skewed
    clocks agree on them."""

    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[DictRow]]):
        self.pool = pool

    async def get(self, run_id: str) -> Liveness | None:
        """The run's row, or None when it has none."""
        sql = f"SELECT state, owner, error, EXTRACT(EPOCH FROM now() - updated) AS age FROM {TABLE} WHERE run_id = %s"
        async with self.pool.connection() as conn:
            row = await (await conn.execute(sql, (run_id,))).fetchone()
        if row is None:
            return None
        return Liveness(state=row["state"], owner=row["owner"], error=row["error"], age_s=float(row["age"]))

    async def set(self, run_id: str, live: Liveness) -> None:
        """Record the run's state, owner and error, and renew its lease."""
        async with self.pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO {TABLE} (run_id, state, owner, error, updated) VALUES (%s, %s, %s, %s, now()) "
                "ON CONFLICT (run_id) DO UPDATE SET state = EXCLUDED.state, owner = EXCLUDED.owner, "
                "error = EXCLUDED.error, updated = EXCLUDED.updated",
                (run_id, live.state, live.owner, live.error),
            )

    async def renew(self, run_ids: list[str], owner: str) -> None:
        """Renew the lease of these runs where `owner` still drives them."""
        async with self.pool.connection() as conn:
            await conn.execute(
                f"UPDATE {TABLE} SET updated = now() WHERE owner = %s AND state = 'running' AND run_id = ANY(%s)",
                (owner, run_ids),
            )


def checked_url(settings: Settings) -> str:
    """SPEEDRUN_DATABASE_URL, as Settings checked it at load (its scheme and password: config owns that rule)."""
    if settings.database_url is None:
        raise ConfigError("SPEEDRUN_DATABASE_URL is not set; the PostgreSQL run store needs it.")
    return settings.database_url.get_secret_value()


def shown(settings: Settings, url: str) -> str:
    """The URL as an error may show it: password masked, at most URL_SHOWN characters."""
    text = settings.redact(url)
    return repr(text if len(text) <= URL_SHOWN else text[:URL_SHOWN] + "…")


def _unreachable(settings: Settings, url: str, exc: BaseException) -> ConfigError:
    # libpq's first line says which: refused, no such host, password authentication failed, no such database.
    reason = settings.redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if "permission denied for schema" in reason:  # PostgreSQL 15+: only the database owner may create in public
        user = (urlsplit(url).username or "USER")[:63]  # PostgreSQL names are at most 63 bytes
        fix = f"The user needs CREATE there: `createdb -O {user}` or `GRANT CREATE ON SCHEMA public TO {user}`"
    else:
        fix = "Check that PostgreSQL runs there and that the user, password and database in the URL are right"
    return ConfigError(
        f"cannot open the run database at SPEEDRUN_DATABASE_URL {shown(settings, url)}: {reason[:300]}. "
        f"{fix}, or unset SPEEDRUN_DATABASE_URL to keep runs in SQLite under SPEEDRUN_HOME."
    )


def _import_extra() -> None:
    """Import the postgres extra's modules; ConfigError with the install command when they are missing."""
    try:
        import langgraph.checkpoint.postgres.aio  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        raise ConfigError(EXTRA_MISSING) from None


@asynccontextmanager
async def open_postgres(settings: Settings, serde: Any) -> AsyncIterator[tuple[AsyncPostgresSaver, PostgresStore]]:
    """The checkpointer and liveness store on SPEEDRUN_DATABASE_URL, set up and migrated; closed on exit."""
    url = checked_url(settings)
    await asyncio.to_thread(_import_extra)  # about a second of imports: not on the event loop of a serving process
    import psycopg
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool, PoolTimeout

    try:  # one plain connection first: its error says why (a pool's timeout would not), and it holds the set-up lock
        setup_conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=CONNECT_SECONDS)
    except psycopg.Error as exc:
        raise _unreachable(settings, url, exc) from None
    # The saver's documented connection settings: autocommit, no server-side prepared statements, dict rows.
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url, min_size=1, max_size=POOL_SIZE, kwargs=kwargs, open=False, check=AsyncConnectionPool.check_connection
    )
    try:
        try:
            async with setup_conn:
                await pool.open(wait=True, timeout=CONNECT_SECONDS)
                saver = AsyncPostgresSaver(pool, serde=serde)
                await _set_up(setup_conn, saver, shown(settings, url))
        except (psycopg.Error, PoolTimeout) as exc:  # e.g. no right to create the tables
            raise _unreachable(settings, url, exc) from None
        yield saver, PostgresStore(pool)
    finally:
        await pool.close()


async def _set_up(conn: AsyncConnection[Any], saver: AsyncPostgresSaver, where: str) -> int:
    """The saver's tables, then each missing step of MIGRATIONS in one transaction, under SETUP_LOCK so that two
    processes opening a fresh database at once do not both run a step; returns how many steps ran."""
    deadline = time.monotonic() + SETUP_SECONDS
    # Polled, not waited on: a session blocked in pg_advisory_lock holds a snapshot, and the saver's
    # CREATE INDEX CONCURRENTLY in the lock holder would wait for that snapshot: a deadlock.
    while not (await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (SETUP_LOCK,))).fetchone() or [0])[0]:
        if time.monotonic() > deadline:
            raise ConfigError(
                f"another process has been setting up the run database {where} for over {SETUP_SECONDS:.0f} s; "
                "stop it, or point SPEEDRUN_DATABASE_URL at another database."
            )
        await asyncio.sleep(0.1)
    try:
        await saver.setup()
        async with conn.transaction():
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {VERSIONS} (v INTEGER PRIMARY KEY)")
            version = int(
                (await (await conn.execute(f"SELECT COALESCE(MAX(v), 0) FROM {VERSIONS}")).fetchone() or [0])[0]
            )
            check_schema(version, len(MIGRATIONS), where, "point SPEEDRUN_DATABASE_URL at another database")
            for number, step in enumerate(MIGRATIONS[version:], version + 1):
                await conn.execute(step)
                await conn.execute(f"INSERT INTO {VERSIONS} (v) VALUES (%s)", (number,))
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK,))
    return len(MIGRATIONS) - version
