"""One rate budget per provider and key across processes and machines, kept in Redis (SPEEDRUN_REDIS_URL)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

from speedrun.errors import ConfigError

log = logging.getLogger("speedrun.budget_redis")

KEY_PREFIX = "speedrun:budget"  # every key this module writes starts with it
SLOT_LEASE_S = 10.0  # a concurrency slot of a process that died (SIGKILL) frees within this
CONNECT_TIMEOUT_S = 3.0  # Redis down must fail the call, never hang it
OP_TIMEOUT_S = 5.0
POLL_S = 0.05  # how often a call waiting on another process's slot looks again (others cannot wake it)
INSTALL_HINT = "install the redis extra: `uv sync --inexact --extra redis` or `pip install 'speed-run[redis]'`"


def require_extra() -> None:
    """ConfigError naming the install command when SPEEDRUN_REDIS_URL is set without the redis extra."""
    try:
        import limits.aio.storage  # noqa: F401
        import redis.asyncio  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"SPEEDRUN_REDIS_URL is set, but the libraries that share the rate budget through Redis are missing: "
            f"{INSTALL_HINT}, or unset SPEEDRUN_REDIS_URL to keep a budget per process."
        ) from None


@dataclass
class Taken:
    """What a try at the shared budget gave: a slot lease, or how long to wait (None: until a slot frees) and why."""

    lease: Lease | None
    delay: float | None = None
    why: str = ""


class Lease:
    """One concurrency slot held in Redis: a redis-py Lock with a TTL, renewed while the call runs."""

    def __init__(self, lock: Any, renew: asyncio.Task[None]):
        self.lock, self.renew = lock, renew


@dataclass
class _Conn:
    """Redis clients bound to one event loop (redis.asyncio connections cannot cross loops)."""

    redis: Any
    storage: Any
    moving: Any  # requests/min: a moving window (one list entry per request: exact)
    sliding: Any  # tokens/min: a sliding-window counter (a moving window would store one entry per token)


class SharedBudget:
    """Requests/min, tokens/min, concurrency slots and the 429 pause of one budget key, in Redis.

    Keys (all under `speedrun:budget:<provider>:<sha256(budget key)[:16]>`, never the API key or the URL):
    `...:slot:<i>` (a lease per call in flight), `...:block` (a 429 pause, with a TTL; its value says why), and
    the `limits` library's window keys for `...:requests` and `...:tokens`.
    """

    def __init__(self, url: str, budget_key: str, provider: str, redact: Callable[[str], str] = str):
        self.url = url
        self.where = redact(url)  # the URL as shown to users: password masked
        self.ns = f"{KEY_PREFIX}:{provider}:{hashlib.sha256(budget_key.encode()).hexdigest()[:16]}"
        self._conns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Conn] = weakref.WeakKeyDictionary()

    # -- connections and errors ---------------------------------------------------------------------------
    async def _conn(self) -> _Conn:
        loop = asyncio.get_running_loop()
        conn = self._conns.get(loop)
        if conn is None:
            # In a thread: the first import of limits reads its Lua scripts from disk, and `langgraph dev` stops a
            # run that blocks the event loop. Building the clients opens no connection yet.
            conn = self._conns.setdefault(loop, await asyncio.to_thread(self._connect))
        return conn

    def _connect(self) -> _Conn:
        require_extra()
        import redis.asyncio
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
        from redis.backoff import NoBackoff
        from redis.driver_info import DriverInfo
        from redis.retry import Retry

        try:
            # No retries inside redis-py: a refused connection is reported at once instead of after its backoff.
            pool = redis.asyncio.ConnectionPool.from_url(
                self.url,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=OP_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
                # Named here, in a thread: by default each new connection looks its version up on disk, on the loop.
                driver_info=DriverInfo(),
            )
        except ValueError as exc:
            raise ConfigError(
                f"SPEEDRUN_REDIS_URL={self.where} is not a Redis URL ({self._said(exc)}); give one like "
                "redis://:PASSWORD@HOST:6379/0, or unset SPEEDRUN_REDIS_URL to keep a budget per process."
            ) from None
        client = redis.asyncio.Redis(connection_pool=pool)
        storage = RedisStorage(
            "async+" + self.url,
            implementation="redispy",
            key_prefix=f"{self.ns}:limits",
            connection_pool=cast(Any, pool),
        )
        return _Conn(client, storage, MovingWindowRateLimiter(storage), SlidingWindowCounterRateLimiter(storage))

    def _said(self, exc: BaseException) -> str:
        return self.where.join(str(exc).replace(self.url, "\0").split("\0"))[:200]

    @contextlib.asynccontextmanager
    async def _talking(self) -> AsyncIterator[_Conn]:
        """Redis errors become one ConfigError naming the (masked) URL and the fix."""
        conn = await self._conn()
        import redis.exceptions  # imported with the clients, off the event loop

        try:
            yield conn
        except redis.exceptions.AuthenticationError:
            raise ConfigError(
                f"The Redis at SPEEDRUN_REDIS_URL={self.where} refused the password or user. Fix the URL "
                "(redis://:PASSWORD@HOST:PORT/DB), or unset SPEEDRUN_REDIS_URL to keep a budget per process."
            ) from None
        except (redis.exceptions.RedisError, OSError) as exc:
            raise ConfigError(
                f"Could not use the shared rate budget in Redis at SPEEDRUN_REDIS_URL={self.where} "
                f"({type(exc).__name__}: {self._said(exc)}). Start Redis there, fix the URL, or unset "
                "SPEEDRUN_REDIS_URL to keep a budget per process."
            ) from None

    async def ping(self) -> None:
        """Log in to the Redis and ask it for a PONG; the same ConfigError as any budget call when that fails."""
        async with self._talking() as conn:
            await conn.redis.ping()

    # -- the budget -----------------------------------------------------------------------------------------
    async def take(self, tokens: int, concurrency: int, rpm: int | None, tpm: int | None) -> Taken:
        """Try once, without waiting: the 429 pause, then requests/min and tokens/min, then a slot, then charge.

        A call larger than the whole tokens/min is charged as the whole (it goes once the window is empty)."""
        async with self._talking() as conn:
            pause = await self._pause(conn)
            if pause is not None:
                return Taken(None, *pause)
            limits = self._items(conn, tokens, rpm, tpm)
            for limiter, item, cost, label in limits:
                if not await limiter.test(item, self.ns, cost=cost):
                    stats = await limiter.get_window_stats(item, self.ns)
                    return Taken(None, max(POLL_S, stats.reset_time - time.time()), f"{label}, shared through Redis")
            lease = await self._lease(conn, concurrency)
            if lease is None:
                return Taken(None, None, f"concurrency {concurrency} across processes, all slots busy")
            # test-then-hit is not atomic: two processes may both pass the test. A hit that loses that race is not
            # charged; the call then gives its slot back and waits like any other.
            try:
                for limiter, item, cost, label in limits:
                    if not await limiter.hit(item, self.ns, cost=cost):
                        await self.release(lease)
                        return Taken(None, POLL_S, f"{label}, shared through Redis")
            except BaseException:  # cancelled or Redis gone: stop renewing, so the slot frees within its lease
                lease.renew.cancel()
                raise
            return Taken(lease)

    def _items(self, conn: _Conn, tokens: int, rpm: int | None, tpm: int | None) -> list[tuple[Any, Any, int, str]]:
        from limits import RateLimitItemPerMinute

        found: list[tuple[Any, Any, int, str]] = []
        if rpm is not None:
            found.append((conn.moving, RateLimitItemPerMinute(rpm, namespace="requests"), 1, f"requests/min {rpm:,}"))
        if tpm is not None:
            item = RateLimitItemPerMinute(tpm, namespace="tokens")
            found.append((conn.sliding, item, max(1, min(tokens, tpm)), f"tokens/min {tpm:,}"))
        return found

    async def charge_more(self, tokens: int, tpm: int | None) -> None:
        """Add tokens a call used beyond its up-front charge. (limits cannot refund: an over-charge expires with
        the window instead.) Refused when the window is full: the provider has counted them either way."""
        if tpm is None or tokens <= 0:
            return
        from limits import RateLimitItemPerMinute

        async with self._talking() as conn:
            await conn.sliding.hit(RateLimitItemPerMinute(tpm, namespace="tokens"), self.ns, cost=min(tokens, tpm))

    async def _pause(self, conn: _Conn) -> tuple[float, str] | None:
        # Two plain commands, not a pipeline: redis-py looks its version up on disk for each pipeline it builds.
        ms = await conn.redis.pttl(f"{self.ns}:block")
        why = await conn.redis.get(f"{self.ns}:block") if ms is not None and ms > 0 else None
        if why is None:
            return None
        return ms / 1000, f"{why.decode(errors='replace')}, shared through Redis"

    async def block(self, seconds: float, why: str) -> None:
        """Pause every process on this budget for `seconds` (a 429's Retry-After); a longer pause already set wins."""
        ms = max(1, math.ceil(seconds * 1000))
        async with self._talking() as conn:
            key = f"{self.ns}:block"
            if not await conn.redis.set(key, why, px=ms, nx=True) and await conn.redis.pexpire(key, ms, gt=True):
                await conn.redis.set(key, why, xx=True, keepttl=True)  # lengthened (PEXPIRE GT, Redis 7): say why

    async def _lease(self, conn: _Conn, concurrency: int) -> Lease | None:
        for slot in range(concurrency):
            lock = conn.redis.lock(f"{self.ns}:slot:{slot}", timeout=SLOT_LEASE_S, blocking=False, thread_local=False)
            if await lock.acquire():
                return Lease(lock, asyncio.get_running_loop().create_task(_renew(lock)))
        return None

    async def release(self, lease: Lease) -> None:
        """Give a slot back; a slot that cannot be given back (Redis gone) frees itself within SLOT_LEASE_S."""
        import redis.exceptions

        lease.renew.cancel()
        try:
            await lease.lock.release()
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("could not give a rate-budget slot back to %s (%s); it frees within %.0f s",
                        self.where, type(exc).__name__, SLOT_LEASE_S)  # fmt: skip


async def _renew(lock: Any) -> None:
    """Keep a slot's lease alive while its call runs: the call may outlast SLOT_LEASE_S, a dead process may not."""
    import redis.exceptions

    while True:
        await asyncio.sleep(SLOT_LEASE_S / 3)
        try:
            await lock.reacquire()
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("a rate-budget slot lease could not be renewed (%s)", type(exc).__name__)
            return
