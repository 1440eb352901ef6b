"""The LLM gateway: the only place that builds chat models, with shared rate budgets, retries, timeouts and a ledger."""

from __future__ import annotations

import asyncio
import codecs
import copy
import inspect
import logging
import math
import random
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import aclosing, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import BaseModel, SecretStr

from speedrun import prompts
from speedrun.config import ModelSpec, Role, Settings
from speedrun.config.providers import ProviderLimits
from speedrun.errors import InputError, ProviderError, SpeedRunError, describe_validation, echo
from speedrun.state import LedgerEntry, Usage

if TYPE_CHECKING:  # langchain is imported lazily: the MCP server must start fast
    from types import ModuleType

    from langchain_openai import ChatOpenAI

    from speedrun.budget_redis import SharedBudget

T = TypeVar("T", bound=BaseModel)
Messages = Sequence[tuple[str, str]]  # (role, text) pairs: ("system", ...), ("user", ...), ("assistant", ...)
TextSink = Callable[[str], Awaitable[None]]  # receives answer text as it streams
WINDOW_S = 60.0
log = logging.getLogger("speedrun.llm")


def estimate_tokens(text: str) -> int:
    """Rough token count (4 characters a token); used to charge budgets before a call."""
    return len(text) // 4 + 1


def size_max_tokens(prompt_tokens: int, settings: Settings, requested: int | None = None) -> int:
    """max_tokens sized to the task: Cerebras charges the whole budget up front, so never ask for more than needed."""
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested <= 0:
            raise InputError(
                f"max_tokens must be a positive whole number of tokens, got {echo(requested)}; "
                "leave it out to size it to the prompt, or give e.g. 4096."
            )
        return requested
    # The floor keeps small prompts from starving their answer; the cap is the user's and always wins.
    return min(settings.max_tokens_cap, max(4096, 3 * prompt_tokens + 2048))


# --- waits the user sees -------------------------------------------------------------------------------
WaitCallback = Callable[[str], "Awaitable[None] | None"]
ANNOUNCE_AFTER_S = 2.0  # a budget wait longer than this is announced ...
ANNOUNCE_EVERY_S = 5.0  # ... and re-announced this often while it lasts
_wait_reporter: ContextVar[WaitCallback | None] = ContextVar("speedrun_wait_reporter", default=None)


@contextmanager
def report_waits(callback: WaitCallback) -> Iterator[None]:
    """Within this context (and tasks created inside it), every rate-budget wait over 2 s calls `callback` with a
    message naming the provider, the limit and the seconds left: at the start, then at least every 5 s."""
    token = _wait_reporter.set(callback)
    try:
        yield
    finally:
        _wait_reporter.reset(token)


async def _announce(message: str) -> None:
    log.info("%s", message)
    callback = _wait_reporter.get()
    if callback is None:
        return
    try:
        result = callback(message)
        if inspect.isawaitable(result):
            await result
    except Exception:  # a broken progress channel must not fail the model call
        log.debug("wait callback failed", exc_info=True)


# --- shared rate budget ---------------------------------------------------------------------------------
class BudgetWaitTooLong(Exception):
    """The budget would make a call wait longer than the call may take (GENERATION_TIMEOUT)."""

    def __init__(self, why: str, wait_s: float):
        super().__init__(why)
        self.why, self.wait_s = why, wait_s


@dataclass
class _Charge:
    at: float
    tokens: int
    settled: bool = False
    lease: Any = None  # the shared budget's slot lease (budget_redis.Lease), when there is one


@dataclass
class _Bucket:
    """One x-ratelimit-* family (e.g. tokens per minute) as the provider last reported it."""

    kind: str  # "requests" | "tokens"
    period: str  # "minute", "day", ... or "" when the name has no period
    limit: float | None
    remaining: float
    reset_at: float
    observed_at: float
    spent: float = 0.0  # what this process charged since the observation

    def label(self) -> str:
        period = {"minute": "/min", "day": "/day", "hour": "/hour", "second": "/s"}.get(self.period, "")
        limit = f" {int(self.limit):,}" if self.limit is not None else ""
        return f"{self.kind}{period}{limit} (provider reports {max(0, int(self.remaining)):,} left)"


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event


_RATE_HEADER = re.compile(r"^x-ratelimit-(limit|remaining|reset)-(requests|tokens)(?:-([a-z]+))?$")


class RateBudget:
    """Concurrency, requests/min and tokens/min for one provider and key, shared by every run in the process.

    Thread-safe and loop-agnostic: runs on different event loops (the sync bridge) share it. A call is charged
    prompt + max_tokens up front (Cerebras reserves that much) and settled to the real usage when it ends.
    The provider's x-ratelimit-* headers, when sent, override the local estimate. With `shared` (SPEEDRUN_REDIS_URL)
    the head of the local queue must also find room in Redis, so every process with the key shares one budget.
    """

    def __init__(self, limits: ProviderLimits, name: str = "provider", shared: SharedBudget | None = None):
        self.limits = limits
        self.name = name
        self.shared = shared  # the budget in Redis that every process with this key shares (SPEEDRUN_REDIS_URL)
        self.rpm, self.tpm = limits.rpm, limits.tpm  # the headers' limit-*-minute values replace these
        self.refused_formats: set[tuple[str, str]] = set()  # (model, response_format type) answered with 400
        self._lock = threading.Lock()
        self._in_flight = 0
        self._window: deque[_Charge] = deque()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._blocked_until = 0.0
        self._blocked_why = ""
        self._queue: deque[_Waiter] = deque()

    # -- taking and giving back ---------------------------------------------------------------------------
    async def acquire(self, tokens: int, max_wait_s: float = math.inf) -> _Charge:
        """Wait (FIFO) for a slot and room in every window, then charge `tokens`; announce long waits.

        Raises BudgetWaitTooLong at once when the time-based wait would exceed `max_wait_s`. With a shared budget
        (Redis), the head of this process's queue also needs room there: a slot lease and the shared windows.
        """
        me = _Waiter(asyncio.get_running_loop(), asyncio.Event())
        started = time.monotonic()
        next_note = started
        with self._lock:
            self._queue.append(me)
        try:
            while True:
                me.event.clear()
                with self._lock:
                    now = time.monotonic()
                    delay, why = self._local_wait(me, tokens, now)
                    if delay == 0 and self.shared is None:
                        self._queue.popleft()
                        return self._charge(tokens, now)
                poll = 1.0  # woken early when a slot frees or a charge settles here; the poll paces announcements
                if delay == 0:
                    charge, delay, why = await self._take_shared(tokens)
                    if charge is not None:
                        return charge
                    if delay is None:  # a slot another process holds: it cannot wake this one, so look again soon
                        poll = budget_redis().POLL_S
                if delay is not None and delay > max_wait_s:
                    raise BudgetWaitTooLong(why, delay)
                now = time.monotonic()
                waited = now - started
                if (
                    (delay is not None and delay > ANNOUNCE_AFTER_S) or waited >= ANNOUNCE_AFTER_S
                ) and now >= next_note:
                    left = f"{delay:.0f} s left" if delay is not None else f"waited {waited:.0f} s so far"
                    await _announce(f"{self.name}: waiting for the rate limit ({why}), {left}.")
                    next_note = now + ANNOUNCE_EVERY_S
                pause = poll if delay is None else min(delay, poll)
                try:
                    await asyncio.wait_for(me.event.wait(), max(0.005, pause))
                except TimeoutError:
                    pass
        finally:
            with self._lock:
                if me in self._queue:
                    self._queue.remove(me)
                self._wake_head()

    def _local_wait(self, me: _Waiter, tokens: int, now: float) -> tuple[float | None, str]:
        """This process's view (lock held): 0 when `me` may go, else seconds to wait (None: until a slot frees)."""
        head = self._queue[0] is me
        if head and self._in_flight < self.limits.concurrency:
            delay, why = self._delay(tokens, now)
            return (0.0, why) if delay is not None and delay <= 0 else (delay, why)
        if head:
            return None, f"concurrency {self.limits.concurrency}, all slots busy"
        return None, f"{self._queue.index(me)} calls queued ahead"

    async def _take_shared(self, tokens: int) -> tuple[_Charge | None, float | None, str]:
        """The head of the queue tries the shared budget once: a charge, or how long to wait and why."""
        assert self.shared is not None
        taken = await self.shared.take(tokens, self.limits.concurrency, self.rpm, self.tpm)
        if taken.lease is None:
            return None, taken.delay, taken.why
        with self._lock:  # still the head: only the head gets this far
            self._queue.popleft()
            charge = self._charge(tokens, time.monotonic())
        charge.lease = taken.lease
        return charge, 0.0, ""

    def settle(self, charge: _Charge, tokens: int) -> None:
        """Replace an up-front charge with what the call really used (prompt + completion tokens)."""
        with self._lock:
            delta = tokens - charge.tokens
            charge.tokens, charge.settled = tokens, True
            for bucket in self._buckets.values():
                if bucket.kind == "tokens" and charge.at >= bucket.observed_at:
                    bucket.spent += delta
            self._wake_head()

    def release(self, charge: _Charge) -> None:
        """Give the concurrency slot back."""
        with self._lock:
            self._in_flight -= 1
            self._wake_head()

    def block(self, seconds: float, why: str) -> None:
        """Hold every call on this budget for `seconds` (a 429's Retry-After)."""
        with self._lock:
            until = time.monotonic() + seconds
            if until > self._blocked_until:
                self._blocked_until, self._blocked_why = until, why

    async def finish(self, charge: _Charge, tokens: int) -> None:
        """settle() and release() a call's charge, here and in the shared budget (Redis) when there is one.

        The shared tokens/min cannot be refunded (limits has no refund): an over-charge expires with its window,
        a call that used more than it was charged adds the rest."""
        extra = tokens - charge.tokens
        self.settle(charge, tokens)
        self.release(charge)
        if self.shared is None or charge.lease is None:
            return
        await self.shared.release(charge.lease)
        try:
            await self.shared.charge_more(extra, self.tpm)
        except SpeedRunError as exc:  # the call itself is done; a later call will report Redis' state
            log.warning("%s", exc)

    async def pause_all(self, seconds: float, why: str) -> None:
        """block(), and in the shared budget too: one process's 429 pauses every process on this key."""
        self.block(seconds, why)
        if self.shared is not None:
            await self.shared.block(seconds, why)

    def observe(self, headers: Any) -> None:
        """Adopt the provider's x-ratelimit-* headers: limits, what remains, and when it resets."""
        found: dict[tuple[str, str], dict[str, str]] = {}
        for name, value in dict(headers or {}).items():
            match = _RATE_HEADER.match(str(name).lower())
            if match:
                what, kind, period = match.groups()
                found.setdefault((kind, period or ""), {})[what] = str(value)
        if not found:
            return
        now = time.monotonic()
        with self._lock:
            for (kind, period), values in found.items():
                limit = _number(values.get("limit"))
                if limit is not None and limit >= 1 and period == "minute":
                    if kind == "tokens":
                        self.tpm = int(limit)
                    else:
                        self.rpm = int(limit)
                remaining, reset = _number(values.get("remaining")), values.get("reset")
                if remaining is None or reset is None:
                    continue
                self._buckets[(kind, period)] = _Bucket(
                    kind, period, limit, remaining, now + _parse_duration(reset), now
                )
            self._wake_head()

    # -- bookkeeping (called with the lock held) ------------------------------------------------------------
    def _charge(self, tokens: int, now: float) -> _Charge:
        self._in_flight += 1
        charge = _Charge(now, tokens)
        self._window.append(charge)
        for bucket in self._buckets.values():
            bucket.spent += tokens if bucket.kind == "tokens" else 1
        self._wake_head()  # the next waiter may fit too
        return charge

    def _wake_head(self) -> None:
        if self._queue:
            waiter = self._queue[0]
            try:
                waiter.loop.call_soon_threadsafe(waiter.event.set)
            except RuntimeError:  # its loop has closed; the waiter is gone with it
                pass

    def _delay(self, tokens: int, now: float) -> tuple[float | None, str]:
        """Seconds until a call of `tokens` fits (None: unknown, until running calls end), and the limit."""
        while self._window and now - self._window[0].at >= WINDOW_S:
            self._window.popleft()
        if now < self._blocked_until:
            return self._blocked_until - now, self._blocked_why
        truth: set[str] = set()  # kinds whose per-minute state the provider reported
        for key, bucket in list(self._buckets.items()):
            if bucket.reset_at <= now:
                del self._buckets[key]
                continue
            if bucket.period == "minute" or (not bucket.period and bucket.reset_at - bucket.observed_at <= WINDOW_S):
                truth.add(bucket.kind)
            need: float = 1 if bucket.kind == "requests" else tokens
            if bucket.limit:  # a call larger than the whole allowance goes once the allowance is whole again
                need = min(need, bucket.limit)
            if bucket.remaining - bucket.spent < need:
                return bucket.reset_at - now, f"provider reset, {bucket.label()}"
        if self.rpm is not None and "requests" not in truth and len(self._window) >= self.rpm:
            return self._window[-self.rpm].at + WINDOW_S - now, f"requests/min {self.rpm:,}"
        if self.tpm is not None and "tokens" not in truth and self._window:
            used = sum(c.tokens for c in self._window)
            if used + tokens > self.tpm:
                settled = [c for c in self._window if c.settled]
                left = sum(c.tokens for c in settled)
                if left + tokens <= self.tpm or not settled:
                    # Only reservations of calls still running stand in the way: they settle when those end.
                    return None, f"tokens/min {self.tpm:,}, waiting for calls in flight to settle"
                # Wait until enough settled charges leave the window; a call larger than the budget goes alone.
                for charge in settled:
                    left -= charge.tokens
                    if left + tokens <= self.tpm or left <= 0:
                        return charge.at + WINDOW_S - now, f"tokens/min {self.tpm:,}"
        return 0.0, ""


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _parse_duration(text: str) -> float:
    """'12.5', '1m30s', '250ms', '6m0s' → seconds."""
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(ms|h|m|s)", text):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


# One budget per provider and key for the whole process: every run, every event loop (the sync bridge runs
# graphs on their own loops). The HTTP client is bound to one loop, so that one is kept per loop.
_budgets: dict[str, RateBudget] = {}
_budgets_lock = threading.Lock()


@dataclass
class _LoopResources:
    http_client: Any = None
    # Chat models by everything they are built from: building one costs ~1 ms, and LangChain serializes each new
    # instance on its first call (~1 ms more), which a reused instance skips. Bounded: max_tokens varies by prompt.
    models: dict[tuple[Any, ...], Any] = field(default_factory=dict)


_MODELS_KEPT = 64


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopResources] = weakref.WeakKeyDictionary()


def _resources() -> _LoopResources:
    loop = asyncio.get_running_loop()
    res = _per_loop.get(loop)
    if res is None:
        res = _per_loop[loop] = _LoopResources()
    return res


def budget_for(spec: ModelSpec, settings: Settings | None = None) -> RateBudget:
    """The process-wide budget for a spec's provider and key; shared through Redis when settings.redis_url is set."""
    url = settings.redis_url.get_secret_value() if settings is not None and settings.redis_url is not None else None
    key = f"{spec.budget_key}|{url or ''}"
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None or budget.limits != spec.limits:
            shared = None
            if url:
                assert settings is not None  # the redis extra is imported (or found missing) at the first call
                shared = budget_redis().SharedBudget(url, spec.budget_key, spec.provider, settings.redact)
            budget = _budgets[key] = RateBudget(spec.limits, spec.provider, shared)
        return budget


def budget_redis() -> ModuleType:
    """speedrun.budget_redis, imported on first use (it is only needed with SPEEDRUN_REDIS_URL)."""
    import speedrun.budget_redis

    return speedrun.budget_redis


# --- chat model construction --------------------------------------------------------------------------
def _is_reasoning_model(model: str) -> bool:
    return bool(re.search(r"gpt-oss|(^|/)o\d|gpt-5", model))


def chat_model(
    spec: ModelSpec, settings: Settings, *, max_tokens: int, streaming: bool = False, temperature: float | None = None
) -> ChatOpenAI:
    """The ChatOpenAI for a spec. The only place in speed-run that builds chat models: one per event loop and set of
    parameters, reused by later calls (a model holds no per-call state; reuse saves ~2 ms per call).

    Retries are made by the gateway (complete), not by the client: so they are counted, go through the shared
    budget, and a provider's long Retry-After fails at once instead of being retried blindly.
    """
    res = _resources()
    if res.http_client is None:
        res.http_client = _http_client()
    kwargs: dict[str, Any] = {} if temperature is None else {"temperature": temperature}
    if settings.reasoning_effort and _is_reasoning_model(spec.model):
        kwargs["reasoning_effort"] = settings.reasoning_effort
    key = (
        spec.model,
        spec.base_url,
        spec.budget_key,  # the provider, URL and a hash of the key: never the key itself
        settings.generation_timeout_s,
        max_tokens,
        streaming,
        tuple(sorted(kwargs.items())),
    )
    model = res.models.get(key)
    if model is None:
        if len(res.models) >= _MODELS_KEPT:
            del res.models[next(iter(res.models))]  # the oldest
        model = res.models[key] = _new_chat_model(spec, settings, max_tokens, streaming, res.http_client, kwargs)
    return cast("ChatOpenAI", model)


def _new_chat_model(
    spec: ModelSpec, settings: Settings, max_tokens: int, streaming: bool, http_client: Any, kwargs: dict[str, Any]
) -> ChatOpenAI:
    """A ChatOpenAI as chat_model hands it out (see there)."""
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model_name=spec.model,
        openai_api_base=spec.base_url,
        # A keyless local server still needs a non-empty string for the openai client.
        openai_api_key=spec.api_key or SecretStr("not-needed"),
        request_timeout=settings.generation_timeout_s,
        max_retries=0,
        max_tokens=max_tokens,
        streaming=streaming,
        stream_usage=True,
        include_response_headers=True,
        use_responses_api=False,
        http_async_client=http_client,
        **kwargs,
    )


def _http_client() -> Any:
    """The openai SDK's async HTTP client, with response bodies repaired to valid UTF-8 on the way in."""
    import httpx2
    import openai

    inner = httpx2.AsyncHTTPTransport(limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=100))
    return openai.DefaultAsyncHttpxClient(transport=_Utf8Transport(inner))


def _utf8_transport_classes() -> tuple[type, type]:
    import httpx2

    class CleanStream(httpx2.AsyncByteStream):
        """Invalid UTF-8 bytes become U+FFFD, so the SDK's SSE decoder never raises UnicodeDecodeError mid-reply."""

        def __init__(self, inner: Any):
            self._inner = inner

        async def __aiter__(self) -> AsyncIterator[bytes]:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            async for chunk in self._inner:
                text = decoder.decode(chunk)
                if text:
                    yield text.encode("utf-8")
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail.encode("utf-8")

        async def aclose(self) -> None:
            await self._inner.aclose()

    class Transport(httpx2.AsyncBaseTransport):
        def __init__(self, inner: Any):
            self._inner = inner

        async def handle_async_request(self, request: Any) -> Any:
            response = await self._inner.handle_async_request(request)
            kind = response.headers.get("content-type", "")
            if "event-stream" not in kind and "json" not in kind:
                return response
            headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-length"]
            return httpx2.Response(
                response.status_code,
                headers=headers,
                stream=CleanStream(response.stream),
                extensions=response.extensions,
            )

        async def aclose(self) -> None:
            await self._inner.aclose()

    return CleanStream, Transport


def _Utf8Transport(inner: Any) -> Any:  # noqa: N802 - a class built lazily (httpx2 is imported on first use)
    return _utf8_transport_classes()[1](inner)


# --- calls ----------------------------------------------------------------------------------------------
@dataclass
class Completion:
    """The answer text of one logical call (reasoning removed) and its ledger entry."""

    text: str
    entry: LedgerEntry

    @property
    def finish_reason(self) -> str | None:
        """Why the model stopped: 'stop', 'length', ..."""
        return self.entry.finish_reason

    @property
    def usage(self) -> Usage:
        """Tokens of this call."""
        return Usage.of([self.entry])


@dataclass(frozen=True)
class JsonAnswer:
    """Ask for one JSON object following `schema` (a JSON schema); see structured()."""

    name: str
    schema: dict[str, Any]


class _ThinkFilter:
    """Drops a leading <think>…</think> block that some local reasoning models put in the answer text."""

    def __init__(self) -> None:
        self._buf = ""
        self._state = "start"  # start → (thinking →) pass

    def feed(self, text: str) -> str:
        if self._state == "pass":
            return text
        self._buf += text
        if self._state == "start":
            stripped = self._buf.lstrip()
            if len(stripped) < len("<think>") and "<think>".startswith(stripped):
                return ""  # too early to tell
            if not stripped.startswith("<think>"):
                self._state, out, self._buf = "pass", self._buf, ""
                return out
            self._state = "thinking"
        end = self._buf.find("</think>")
        if end < 0:
            return ""
        out = self._buf[end + len("</think>") :].lstrip("\n")
        self._state, self._buf = "pass", ""
        return out

    def flush(self) -> str:
        out = self._buf if self._state != "thinking" else ""
        self._buf = ""
        return out


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class _SurrogateFilter:
    """Answer text never leaves with a lone surrogate (a JSON "\\ud83d" escape without its pair): each becomes
    U+FFFD. A high surrogate at the end of a piece waits for the next one, where its pair may be."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._held + text
        self._held = ""
        if text and "\ud800" <= text[-1] <= "\udbff":
            text, self._held = text[:-1], text[-1]
        return _clean_surrogates(text)

    def flush(self) -> str:
        out, self._held = _clean_surrogates(self._held), ""
        return out


def _clean_surrogates(text: str) -> str:
    if not _LONE_SURROGATE.search(text):
        return text
    # Pairs written as two code points are joined into the real character; whatever is left alone is replaced.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _to_messages(messages: Messages) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[role](content=text) for role, text in messages]


class _Failed(Exception):
    """A provider call that failed for good, with the retries really made and the provider's own wait."""

    def __init__(
        self, cause: BaseException, retries: int, retry_after: float | None = None, gave_up_early: bool = False
    ):
        super().__init__(str(cause))
        self.cause, self.retries, self.retry_after, self.gave_up_early = cause, retries, retry_after, gave_up_early


def _limit_vars(spec: ModelSpec) -> str:
    return f"SPEEDRUN_LIMITS__{spec.provider.upper().replace('-', '_')}__"


def _explain(exc: BaseException, spec: ModelSpec, settings: Settings) -> str:
    import openai

    who = f"{spec.describe()} at {spec.base_url}"
    role_var = f"SPEEDRUN_{spec.role.upper()}_FALLBACK"
    timeout = f"GENERATION_TIMEOUT={settings.generation_timeout_ms} ms"
    retries, retry_after, early = 0, None, False
    if isinstance(exc, _Failed):
        retries, retry_after, early, exc = exc.retries, exc.retry_after, exc.gave_up_early, exc.cause
    tries = f"{retries + 1} request{'s' if retries else ''} ({retries} retr{'ies' if retries != 1 else 'y'})"
    if isinstance(exc, BudgetWaitTooLong):
        msg = (
            f"{who}: the shared rate budget would make this call wait {exc.wait_s:.0f} s ({exc.why}), longer "
            f"than {timeout} allows, so it failed at once instead of hanging. Try again in {exc.wait_s:.0f} s, "
            f"run fewer calls at once, raise GENERATION_TIMEOUT, or set {role_var}."
        )
    elif isinstance(exc, openai.RateLimitError):
        asked = f" The provider asks to wait {retry_after:.0f} s (Retry-After)." if retry_after is not None else ""
        if early:
            msg = (
                f"{who} is rate-limiting requests (429) after {tries}.{asked} That is longer than this call may "
                f"still wait ({timeout} covers all of a call's waits), so it failed at once. Try again later, "
                f"or set {role_var}."
            )
        else:
            msg = (
                f"{who} is still rate-limiting requests (429) after {tries}.{asked} Wait for the provider's "
                f"limit to reset, lower {_limit_vars(spec)}RPM / __TPM, or set {role_var}."
            )
    elif isinstance(exc, openai.AuthenticationError):
        msg = f"{who} rejected the API key (401). Check the key for provider {spec.provider!r}."
    elif isinstance(exc, openai.NotFoundError):
        msg = f"{who} does not know model {spec.model!r} (404). Check the model name (e.g. CEREBRAS_MODEL)."
    elif isinstance(exc, (openai.APITimeoutError, TimeoutError)):
        msg = f"{who} did not answer within {timeout} ({tries}). Raise GENERATION_TIMEOUT or ask for less output."
    elif isinstance(exc, openai.APIConnectionError):
        refused = ": connection refused" if _refused(exc) else ""
        msg = f"Could not connect to {who}{refused} ({tries}). Check the URL setting and that the server is up."
    elif isinstance(exc, openai.APIStatusError):
        # Redacted before it is cut short: a key cut in two would no longer be recognised.
        msg = f"{who} failed with HTTP {exc.status_code} after {tries}: {settings.redact(str(exc.message))[:300]}"
    else:
        msg = f"{who} failed: {type(exc).__name__}: {settings.redact(str(exc))[:300]}"
    return settings.redact(msg)


def _provider_errors() -> tuple[type[BaseException], ...]:
    import openai

    return (openai.APIError, TimeoutError, _Failed, BudgetWaitTooLong)


async def complete(
    settings: Settings,
    role: Role,
    messages: Messages,
    *,
    max_tokens: int | None = None,
    on_text: TextSink | None = None,
    json_answer: JsonAnswer | None = None,
    temperature: float | None = None,
) -> Completion:
    """One chat call for a role: queued on the shared budget, retried, timed, falling back if configured.

    With `on_text`, the reply is streamed and each piece of answer text is passed to it as it arrives.
    With `json_answer`, the provider is asked for JSON following that schema, in the best mode it supports.
    `temperature` overrides the provider's default (parallel planners vary it so their plans differ).
    max_tokens <= 0 is an InputError; a value beyond the model's output limit is capped (and charged capped).
    """
    spec = settings.role(role)
    prompt_tokens = sum(estimate_tokens(text) for _, text in messages)
    budget_tokens = size_max_tokens(prompt_tokens, settings, max_tokens)
    candidates = [(spec.primary, False)] + ([(spec.fallback, True)] if spec.fallback else [])
    errors: list[str] = []
    streamed = False
    # A proxy may echo the request's Authorization header (or the URL's password) into the reply: no configured
    # secret may leave through answer text, whether it ends up in a tool result, a written file or a ledger.
    # Streamed pieces pass a redactor that holds back a possible secret's start until its end has arrived.
    redactor = settings.stream_redactor()

    async def sink(piece: str) -> None:
        nonlocal streamed
        streamed = True
        safe = redactor.feed(piece)
        if safe and on_text is not None:
            await on_text(safe)

    for model_spec, is_fallback in candidates:
        try:
            result = await _call(
                settings, model_spec, messages, budget_tokens, prompt_tokens, sink if on_text else None, is_fallback,
                json_answer, temperature,
            )  # fmt: skip
        except _provider_errors() as exc:
            errors.append(_explain(exc, model_spec, settings))
            if not is_fallback and spec.fallback is not None and not streamed:
                await _announce(
                    f"{model_spec.describe()} failed ({_what_failed(exc, model_spec, settings)}); its fallback "
                    f"{spec.fallback.describe()} (SPEEDRUN_{role.upper()}_FALLBACK) answers instead."
                )
        else:
            if on_text is not None:
                tail = redactor.flush()
                if tail:
                    await on_text(tail)
            result.text = settings.redact_secrets(result.text)
            return result
        if streamed:
            # on_text already holds part of this reply; a fallback's answer would be spliced onto it (half a file
            # from one model, the rest from another), so stop here and let the caller see the error.
            errors[-1] += " The reply broke off mid-stream, so the fallback was not tried."
            break
    raise ProviderError(" Then the fallback: ".join(errors))


def _retry_after(exc: BaseException) -> float | None:
    """The provider's own wait from a failed response (retry-after-ms, or Retry-After in seconds or as a date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after-ms")
    if value is not None and _number(value) is not None:
        return max(0.0, float(value) / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    if _number(value) is not None:
        return max(0.0, float(value))
    try:
        from email.utils import parsedate_to_datetime

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, TimeoutError))


def _cap_max_tokens(spec: ModelSpec, max_tokens: int) -> int:
    cap = spec.limits.max_output_tokens
    if max_tokens > cap:
        log.warning(
            "max_tokens %s is beyond %s's output limit; capped to %s (set %sMAX_OUTPUT_TOKENS to change it).",
            max_tokens,
            spec.describe(),
            cap,
            _limit_vars(spec),
        )
        return cap
    return max_tokens


async def _call(
    settings: Settings,
    spec: ModelSpec,
    messages: Messages,
    max_tokens: int,
    prompt_est: int,
    on_text: TextSink | None,
    is_fallback: bool,
    json_answer: JsonAnswer | None = None,
    temperature: float | None = None,
) -> Completion:
    """One model's answer, with the budget charged up front and settled after, and retries that share one deadline.

    Long because the charge, the request, the retry policy and their bookkeeping share one loop: split apart, each
    piece would have to hand the others half of its state."""
    import openai

    budget = budget_for(spec, settings)
    max_tokens = _cap_max_tokens(spec, max_tokens)
    limit_s = settings.generation_timeout_s
    queued = time.monotonic()
    retries = 0
    # Every wait of this call (the budget's queue, Retry-After, backoff) shares one GENERATION_TIMEOUT, so retries
    # cannot add up to minutes while an MCP client's tool timeout runs out.
    wait_left, waiting_since = limit_s, queued
    while True:
        charge = await budget.acquire(prompt_est + max_tokens, max(0.0, wait_left))
        started = time.monotonic()
        wait_left -= started - waiting_since
        sent = False
        used = 0  # a failed request is settled to nothing: it produced no answer

        async def forward(piece: str) -> None:
            nonlocal sent
            sent = True
            if on_text is not None:
                await on_text(piece)

        try:
            model = chat_model(
                spec, settings, max_tokens=max_tokens, streaming=on_text is not None, temperature=temperature
            )
            text, meta, usage = await _request(
                model, messages, spec, budget, json_answer, settings, None if on_text is None else forward
            )
            budget.observe(meta.get("headers"))
            prompt_tokens = (usage or {}).get("input_tokens") or prompt_est
            completion_tokens = (usage or {}).get("output_tokens") or estimate_tokens(text)
            used = prompt_tokens + completion_tokens
            break
        except (openai.APIError, TimeoutError) as exc:
            response = getattr(exc, "response", None)
            if response is not None:
                budget.observe(response.headers)
            # A 429 was not served; anything else may have been (a stream cut mid-way certainly was).
            used = 0 if isinstance(exc, openai.RateLimitError) else prompt_est
            if isinstance(exc, openai.APITimeoutError | TimeoutError):
                # A stalled attempt spent the call's time as surely as a wait did: retrying it would multiply
                # GENERATION_TIMEOUT (5 attempts of 30 s) while the caller's own timeout runs out.
                wait_left -= time.monotonic() - started
            wait = _retry_wait(exc, retries, sent, wait_left, settings.max_retries)
            retries += 1
            waiting_since = time.monotonic()  # the backoff below and the next acquire count as this call's waiting
            if isinstance(exc, openai.RateLimitError):
                # Everyone on this budget (every process, with Redis) holds off; announced like any budget wait.
                await budget.pause_all(wait, f"provider reset, 429 Retry-After {wait:.0f} s")
            else:
                # Said out loud: a dead endpoint must not look like a slow one while the retries run.
                await _announce(_retry_note(exc, spec, settings, retries, wait))
                await asyncio.sleep(wait)
            log.info("%s: retry %d of %d after %s", spec.describe(), retries, settings.max_retries, type(exc).__name__)
        finally:
            await budget.finish(charge, used)
    return Completion(
        text=text, entry=_ledger_entry(spec, queued, started, prompt_tokens, completion_tokens, meta, is_fallback)
    )


def _ledger_entry(
    spec: ModelSpec, queued: float, started: float, prompt: int, completion: int, meta: dict[str, Any], fallback: bool
) -> LedgerEntry:
    """The ledger's record of one answered call: who answered, how long it queued and ran, what it cost."""
    return LedgerEntry(
        role=spec.role,
        provider=spec.provider,
        model=spec.model,
        duration_ms=int((time.monotonic() - started) * 1000),
        queued_ms=int((started - queued) * 1000),
        prompt_tokens=prompt,
        completion_tokens=completion,
        finish_reason=meta.get("finish_reason"),
        fallback=fallback,
    )


async def _request(
    model: ChatOpenAI,
    messages: Messages,
    spec: ModelSpec,
    budget: RateBudget,
    json_answer: JsonAnswer | None,
    settings: Settings,
    on_text: TextSink | None,
) -> tuple[str, dict[str, Any], Any]:
    """One request: (answer text, response metadata, usage). Streamed to on_text when given."""
    if on_text is not None:
        return await _stream(model, _to_messages(messages), on_text, settings.generation_timeout_s)
    async with asyncio.timeout(settings.generation_timeout_s + 1):
        message = await _invoke(model, messages, spec, budget, json_answer, settings.redact)
    text = message.content
    text = _ThinkFilter().feed(text) if isinstance(text, str) else str(text)
    return _clean_surrogates(text), message.response_metadata, message.usage_metadata


def _retry_wait(exc: BaseException, retries: int, sent: bool, wait_left: float, max_retries: int) -> float:
    """How long to wait before retrying a failed request; raises _Failed when it must not be retried."""
    if not _retryable(exc) or sent:
        raise _Failed(exc, retries) from None
    wait = _retry_after(exc)
    if wait is not None and wait > wait_left:
        raise _Failed(exc, retries, wait, gave_up_early=True) from None
    if retries >= max_retries:
        raise _Failed(exc, retries, wait) from None
    if wait is None:  # the openai client's backoff: 0.5 s doubling to 8 s, with jitter
        wait = min(8.0, 0.5 * 2**retries) * (1 - 0.25 * random.random())
        if wait > wait_left:  # backoffs share GENERATION_TIMEOUT too: no minutes of retries against a dead server
            raise _Failed(exc, retries) from None
    return wait


def _retry_note(exc: BaseException, spec: ModelSpec, settings: Settings, retries: int, wait: float) -> str:
    """What the user is told before a retry: what failed, where, which retry of how many and when."""
    when = f"{wait:.1f} s" if wait >= 0.1 else f"{wait * 1000:.0f} ms"
    return f"{spec.provider}: {_what_failed(exc, spec, settings)}; retry {retries} of {settings.max_retries} in {when}."


def _what_failed(exc: BaseException, spec: ModelSpec, settings: Settings) -> str:
    """A failed request in a few words, naming the endpoint (password masked): 'connection refused by URL'."""
    import openai

    if isinstance(exc, _Failed):
        exc = exc.cause
    where = settings.redact(spec.base_url)
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return f"no answer within GENERATION_TIMEOUT={settings.generation_timeout_ms} ms from {where}"
    if isinstance(exc, openai.APIConnectionError):
        return f"{'connection refused by' if _refused(exc) else 'could not connect to'} {where}"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code} from {where}"
    if isinstance(exc, BudgetWaitTooLong):
        return f"the rate budget would wait {exc.wait_s:.0f} s for {where}"
    return f"{type(exc).__name__} from {where}"


def _refused(exc: BaseException) -> bool:
    """True when a connection error comes from a closed port (the SDK wraps the OS error three levels deep)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _json_instructions(schema: dict[str, Any]) -> str:
    import json

    return prompts.JSON_INSTRUCTIONS.format(schema=json.dumps(schema))


def _with_instructions(messages: Messages, text: str) -> list[tuple[str, str]]:
    """Messages with `text` appended to the first user message (where the request is)."""
    out = list(messages)
    for i, (role, content) in enumerate(out):
        if role == "user":
            out[i] = (role, f"{content}\n\n{text}")
            return out
    return [*out, ("user", text)]


async def _invoke(
    model: ChatOpenAI,
    messages: Messages,
    spec: ModelSpec,
    budget: RateBudget,
    json_answer: JsonAnswer | None,
    redact: Callable[[str], str] = str,
) -> Any:
    """Non-streamed call, in the best JSON mode the endpoint takes: json_schema (strict where supported), else
    json_object with the schema in the prompt, else plain text with the schema in the prompt. A mode that
    answers 400 is not asked again for this provider, key and model in this process."""
    import openai

    if json_answer is None:
        return await model.ainvoke(_to_messages(messages))
    modes: list[tuple[str, dict[str, Any] | None, str]] = []
    if spec.json_schema:
        schema = strict_json_schema(json_answer.schema) if spec.strict else json_answer.schema
        schema_format = {
            "type": "json_schema",
            "json_schema": {"name": json_answer.name, "schema": schema, "strict": spec.strict},
        }
        modes.append(("json_schema", schema_format, prompts.JSON_SCHEMA_HINT))
    prompt = _json_instructions(json_answer.schema)
    modes += [("json_object", {"type": "json_object"}, prompt), ("text", None, prompt)]
    for mode, fmt, instructions in modes:
        if fmt is not None and (spec.model, mode) in budget.refused_formats:
            continue
        lc_messages = _to_messages(_with_instructions(messages, instructions))
        if fmt is None:
            return await model.ainvoke(lc_messages)
        try:
            return await model.bind(response_format=fmt).ainvoke(lc_messages)
        except openai.BadRequestError as exc:
            budget.refused_formats.add((spec.model, mode))
            log.warning(
                "%s answered 400 to response_format %s (%s); asking in the next mode from now on.",
                spec.describe(),
                mode,
                redact(str(exc.message))[:200],
            )  # the CLI logs unfiltered
    raise AssertionError("unreachable: the plain-text mode always returns")


async def _stream(
    model: ChatOpenAI, messages: list[Any], on_text: TextSink, limit_s: float
) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    think = _ThinkFilter()
    surrogates = _SurrogateFilter()
    parts: list[str] = []
    meta: dict[str, Any] = {}
    usage: dict[str, Any] | None = None
    deadline: float | None = None
    # aclosing: a stream cut by the deadline closes its HTTP response now, not whenever it is collected.
    # astream is typed as an AsyncIterator but is an async generator, which is what aclosing needs.
    async with aclosing(cast("AsyncGenerator[Any, None]", model.astream(messages))) as stream:
        async for chunk in stream:
            # The HTTP timeout only bounds each read, so a trickling stream could run on for minutes. From its
            # first chunk this attempt gets GENERATION_TIMEOUT in total. Checked here rather than with
            # asyncio.timeout, whose cancellation the anyio-based HTTP stack can swallow.
            now = time.monotonic()
            if deadline is None:
                deadline = now + limit_s
            elif now > deadline:
                raise TimeoutError("the stream outlasted GENERATION_TIMEOUT")
            for key, value in (chunk.response_metadata or {}).items():
                meta.setdefault(key, value) if key == "headers" else meta.__setitem__(key, value)
            if chunk.usage_metadata:
                usage = dict(chunk.usage_metadata)
            if isinstance(chunk.content, str) and chunk.content:
                piece = surrogates.feed(think.feed(chunk.content))
                if piece:
                    parts.append(piece)
                    await on_text(piece)
    tail = surrogates.feed(think.flush()) + surrogates.flush()
    if tail:
        parts.append(tail)
        await on_text(tail)
    return "".join(parts), meta, usage


def strict_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema made acceptable to strict structured outputs: every object closed (additionalProperties
    false) with every property required, in $defs too; `default`s dropped and a $ref stands alone."""
    out = copy.deepcopy(schema)

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return {"$ref": node["$ref"]}
        node = {k: walk(v) if k not in ("enum", "const", "required") else v for k, v in node.items() if k != "default"}
        if node.get("type") == "object" or "properties" in node:
            props = node.get("properties") or {}
            node["properties"] = props
            node["required"] = list(props)
            node["additionalProperties"] = False
        return node

    return dict(walk(out))


async def structured(
    settings: Settings,
    role: Role,
    schema: type[T],
    messages: Messages,
    *,
    max_tokens: int | None = None,
    check: Callable[[T], str | None] | None = None,
) -> tuple[T, list[LedgerEntry]]:
    """Ask for a typed answer (JSON matching `schema`); one retry with the validation error, then ProviderError.

    The provider's JSON-schema mode is used where its preset supports it (strict where it can), else JSON mode
    with the schema in the prompt. `check` may reject a well-formed answer (e.g. wrong labels) by returning the
    problem; that counts as malformed.
    """
    from pydantic import ValidationError

    answer_spec = JsonAnswer(name=_schema_name(schema.__name__), schema=schema.model_json_schema())
    convo = list(messages)
    entries: list[LedgerEntry] = []
    problem: str | None = None
    for _attempt in range(2):
        result = await complete(settings, role, convo, max_tokens=max_tokens, json_answer=answer_spec)
        entries.append(result.entry)
        try:
            answer = schema.model_validate_json(_json_payload(result.text))
            problem = check(answer) if check else None
        except ValidationError as exc:
            problem = describe_validation(exc)
        if not problem:
            return answer, entries
        convo = [*convo, ("assistant", result.text), ("user", prompts.JSON_RETRY.format(problem=problem))]
    raise ProviderError(
        f"The {role} model returned malformed {schema.__name__} twice ({problem}). "
        f"No result was made up; try again or use a stronger model for SPEEDRUN_{role.upper()}."
    )


def _schema_name(name: str) -> str:
    # OpenAI-style names: letters, digits, _ and -, at most 64.
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "answer"


def _json_payload(text: str) -> str:
    """The JSON object inside a reply, tolerating a markdown fence or surrounding prose."""
    fenced = re.search(r"```(?:json)?\s*\n(.*?)\n```", text, re.S)
    if fenced:
        text = fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


async def list_models(spec: ModelSpec, settings: Settings) -> list[str]:
    """Ask the endpoint for its models (GET /models): proves the URL answers and the key is accepted."""
    import httpx

    headers = {"Authorization": f"Bearer {spec.api_key.get_secret_value()}"} if spec.api_key else {}
    timeout = min(settings.generation_timeout_s, 15.0)
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(f"{spec.base_url}/models", headers=headers)
    except httpx.HTTPError as exc:
        raise ProviderError(
            settings.redact(
                f"Could not reach {spec.base_url}: {type(exc).__name__} {exc}. Check the URL setting and your network."
            )
        ) from None
    where = settings.redact(spec.base_url)  # a URL may carry user:password@
    if response.status_code in (401, 403):
        raise ProviderError(
            f"{where} rejected the API key (HTTP {response.status_code}); check the key for provider {spec.provider!r}."
        )
    if response.status_code >= 400:
        raise ProviderError(f"{where}/models answered HTTP {response.status_code}.")
    try:
        return sorted(str(m.get("id")) for m in response.json().get("data", []))
    except (ValueError, AttributeError):
        raise ProviderError(f"{where}/models did not return an OpenAI-style model list.") from None
