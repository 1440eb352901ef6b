"""The LLM gateway: the only place that builds chat models, with shared rate budgets, retries, timeouts and a ledger."""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from speedrun.config import ModelSpec, ProviderLimits, Role, Settings
from speedrun.errors import ProviderError
from speedrun.state import LedgerEntry, Usage

if TYPE_CHECKING:  # langchain is imported lazily: the MCP server must start fast
    from langchain_openai import ChatOpenAI

T = TypeVar("T", bound=BaseModel)
Messages = Sequence[tuple[str, str]]  # (role, text) pairs: ("system", ...), ("user", ...), ("assistant", ...)
TextSink = Callable[[str], Awaitable[None]]  # receives answer text as it streams
WINDOW_S = 60.0


def estimate_tokens(text: str) -> int:
    """Rough token count (4 characters a token); used to charge budgets before a call."""
    return len(text) // 4 + 1


def size_max_tokens(prompt_tokens: int, settings: Settings, requested: int | None = None) -> int:
    """max_tokens sized to the task: Cerebras charges the whole budget up front, so never ask for more than needed."""
    if requested is not None:
        return max(1, requested)
    # The floor keeps small prompts from starving their answer; the cap is the user's and always wins.
    return min(settings.max_tokens_cap, max(4096, 3 * prompt_tokens + 2048))


# --- shared rate budget ---------------------------------------------------------------------------------
class RateBudget:
    """Concurrency + requests/min + tokens/min for one provider and key, shared by every runner in the process."""

    def __init__(self, limits: ProviderLimits):
        self.limits = limits
        self._slots = asyncio.Semaphore(limits.concurrency)
        self._lock = asyncio.Lock()
        self._window: deque[tuple[float, int]] = deque()  # (start time, tokens charged)
        self._blocked_until = 0.0

    @asynccontextmanager
    async def hold(self, tokens: int):
        """Wait for a concurrency slot and room in the per-minute windows, then charge `tokens`."""
        async with self._slots:
            async with self._lock:  # one waiter at a time keeps the order fair (FIFO on the lock)
                while (delay := self._delay(tokens)) > 0:
                    await asyncio.sleep(delay)
                self._window.append((time.monotonic(), tokens))
            yield

    def _delay(self, tokens: int) -> float:
        now = time.monotonic()
        while self._window and now - self._window[0][0] >= WINDOW_S:
            self._window.popleft()
        if now < self._blocked_until:
            return self._blocked_until - now
        used = sum(t for _, t in self._window)
        # A single request larger than the whole minute budget still goes, alone, once the window is empty.
        if len(self._window) < self.limits.rpm and (used + tokens <= self.limits.tpm or not self._window):
            return 0.0
        return max(0.01, WINDOW_S - (now - self._window[0][0]))

    def observe(self, headers: dict[str, str]) -> None:
        """Pause the budget when the provider says a per-minute allowance is spent (x-ratelimit-* headers)."""
        lower = {k.lower(): v for k, v in headers.items()}
        for kind in ("tokens", "requests"):
            for suffix in ("-minute", ""):
                remaining = lower.get(f"x-ratelimit-remaining-{kind}{suffix}")
                reset = lower.get(f"x-ratelimit-reset-{kind}{suffix}")
                if remaining is None or reset is None:
                    continue
                try:
                    left = float(remaining)
                except ValueError:
                    continue
                if left <= 0:
                    self._blocked_until = max(self._blocked_until, time.monotonic() + _parse_duration(reset))


def _parse_duration(text: str) -> float:
    """'12.5', '1m30s', '250ms' → seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(ms|h|m|s)", text):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


@dataclass
class _LoopResources:
    budgets: dict[str, RateBudget] = field(default_factory=dict)
    http_client: Any = None


# asyncio primitives and the openai async client belong to one event loop; keep one set per loop.
_per_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopResources]" = weakref.WeakKeyDictionary()


def _resources() -> _LoopResources:
    loop = asyncio.get_running_loop()
    res = _per_loop.get(loop)
    if res is None:
        res = _per_loop[loop] = _LoopResources()
    return res


def budget_for(spec: ModelSpec) -> RateBudget:
    """The shared budget for a spec's provider and key in this event loop."""
    budgets = _resources().budgets
    budget = budgets.get(spec.budget_key)
    if budget is None or budget.limits != spec.limits:
        budget = budgets[spec.budget_key] = RateBudget(spec.limits)
    return budget


# --- chat model construction --------------------------------------------------------------------------
def _is_reasoning_model(model: str) -> bool:
    return bool(re.search(r"gpt-oss|(^|/)o\d|gpt-5", model))


def chat_model(spec: ModelSpec, settings: Settings, *, max_tokens: int, streaming: bool = False) -> "ChatOpenAI":
    """Build the ChatOpenAI for a spec. The only place in speed-run that constructs a chat model."""
    import openai
    from langchain_openai import ChatOpenAI

    res = _resources()
    if res.http_client is None:
        res.http_client = openai.DefaultAsyncHttpxClient()
    kwargs: dict[str, Any] = {}
    if settings.reasoning_effort and _is_reasoning_model(spec.model):
        kwargs["reasoning_effort"] = settings.reasoning_effort
    return ChatOpenAI(
        model=spec.model,
        base_url=spec.base_url,
        # A keyless local server still needs a non-empty string for the openai client.
        api_key=spec.api_key.get_secret_value() if spec.api_key else "not-needed",
        timeout=settings.generation_timeout_s,
        max_retries=settings.max_retries,  # the openai client retries 429/5xx/timeouts, honouring Retry-After
        max_tokens=max_tokens,
        streaming=streaming,
        stream_usage=True,
        include_response_headers=True,
        use_responses_api=False,
        http_async_client=res.http_client,
        **kwargs,
    )


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
        out = self._buf[end + len("</think>"):].lstrip("\n")
        self._state, self._buf = "pass", ""
        return out

    def flush(self) -> str:
        out = self._buf if self._state != "thinking" else ""
        self._buf = ""
        return out


def _to_messages(messages: Messages) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[role](content=text) for role, text in messages]


def _explain(exc: BaseException, spec: ModelSpec, settings: Settings) -> str:
    import openai

    who = f"{spec.describe()} at {spec.base_url}"
    role_var = f"SPEEDRUN_{spec.role.upper()}_FALLBACK"
    if isinstance(exc, openai.RateLimitError):
        msg = (f"{who} is rate-limiting requests (429) after {settings.max_retries} retries. Wait a minute, lower "
               f"SPEEDRUN_LIMITS__{spec.provider.upper().replace('-', '_')}__RPM / __TPM, or set {role_var}.")
    elif isinstance(exc, openai.AuthenticationError):
        msg = f"{who} rejected the API key (401). Check the key for provider {spec.provider!r}."
    elif isinstance(exc, openai.NotFoundError):
        msg = f"{who} does not know model {spec.model!r} (404). Check the model name (e.g. CEREBRAS_MODEL)."
    elif isinstance(exc, (openai.APITimeoutError, TimeoutError)):
        msg = (f"{who} did not answer within GENERATION_TIMEOUT={settings.generation_timeout_ms} ms. "
               "Raise GENERATION_TIMEOUT or ask for less output.")
    elif isinstance(exc, openai.APIConnectionError):
        msg = f"Could not connect to {who}. Check the URL setting and that the server is up."
    elif isinstance(exc, openai.APIStatusError):
        retried = exc.status_code >= 500 or exc.status_code in (408, 409)  # what the openai client retries
        after = f" after {settings.max_retries} retries" if retried else ""
        msg = f"{who} failed with HTTP {exc.status_code}{after}: {exc.message}"
    else:
        msg = f"{who} failed: {type(exc).__name__}: {exc}"
    return settings.redact(msg)


def _provider_errors() -> tuple[type[BaseException], ...]:
    import openai

    return (openai.APIError, TimeoutError)


async def complete(
    settings: Settings,
    role: Role,
    messages: Messages,
    *,
    max_tokens: int | None = None,
    on_text: TextSink | None = None,
    json_mode: bool = False,
) -> Completion:
    """One chat call for a role: queued on the shared budget, retried, timed, falling back if configured.

    With `on_text`, the reply is streamed and each piece of answer text is passed to it as it arrives.
    With `json_mode`, the provider is asked for a JSON object (response_format), where it supports that.
    """
    spec = settings.role(role)
    prompt_tokens = sum(estimate_tokens(text) for _, text in messages)
    budget_tokens = size_max_tokens(prompt_tokens, settings, max_tokens)
    candidates = [(spec.primary, False)] + ([(spec.fallback, True)] if spec.fallback else [])
    errors: list[str] = []
    streamed = False

    async def sink(piece: str) -> None:
        nonlocal streamed
        streamed = True
        await on_text(piece)

    for model_spec, is_fallback in candidates:
        try:
            return await _call(settings, model_spec, messages, budget_tokens, prompt_tokens,
                               sink if on_text else None, is_fallback, json_mode)
        except _provider_errors() as exc:
            errors.append(_explain(exc, model_spec, settings))
        if streamed:
            # on_text already holds part of this reply; a fallback's answer would be spliced onto it (half a file
            # from one model, the rest from another), so stop here and let the caller see the error.
            errors[-1] += " The reply broke off mid-stream, so the fallback was not tried."
            break
    raise ProviderError(" Then the fallback: ".join(errors))


# Endpoints (by budget key) that answered 400 to response_format=json_object; asked without it from then on.
_NO_JSON_MODE: set[str] = set()


async def _call(settings: Settings, spec: ModelSpec, messages: Messages, max_tokens: int, prompt_est: int,
                on_text: TextSink | None, is_fallback: bool, json_mode: bool = False) -> Completion:
    budget = budget_for(spec)
    queued = time.monotonic()
    async with budget.hold(prompt_est + max_tokens):
        model = chat_model(spec, settings, max_tokens=max_tokens, streaming=on_text is not None)
        lc_messages = _to_messages(messages)
        started = time.monotonic()
        async with asyncio.timeout(_wall_clock_limit(settings)):
            if on_text is None:
                message = await _invoke(model, lc_messages, spec, json_mode)
                text, meta, usage = message.content, message.response_metadata, message.usage_metadata
                text = _ThinkFilter().feed(text) if isinstance(text, str) else str(text)
            else:
                text, meta, usage = await _stream(model, lc_messages, on_text, settings.generation_timeout_s)
        budget.observe(dict(meta.get("headers") or {}))
    entry = LedgerEntry(
        role=spec.role, provider=spec.provider, model=spec.model,
        duration_ms=int((time.monotonic() - started) * 1000), queued_ms=int((started - queued) * 1000),
        prompt_tokens=(usage or {}).get("input_tokens") or prompt_est,
        completion_tokens=(usage or {}).get("output_tokens") or estimate_tokens(text),
        finish_reason=meta.get("finish_reason"), fallback=is_fallback,
    )
    return Completion(text=text, entry=entry)


async def _invoke(model: "ChatOpenAI", messages: list[Any], spec: ModelSpec, json_mode: bool) -> Any:
    """Non-streamed call; JSON mode where the endpoint accepts it (Cerebras, OpenAI, Groq, Ollama do)."""
    import openai

    if not json_mode or spec.budget_key in _NO_JSON_MODE:
        return await model.ainvoke(messages)
    try:
        return await model.bind(response_format={"type": "json_object"}).ainvoke(messages)
    except openai.BadRequestError:
        _NO_JSON_MODE.add(spec.budget_key)  # the schema is in the prompt too, so plain mode still works
        return await model.ainvoke(messages)


def _wall_clock_limit(settings: Settings) -> float:
    # Retries (with Retry-After waits) happen inside one call; give each attempt the full timeout.
    return settings.generation_timeout_s * (settings.max_retries + 1) + 5


async def _stream(model: "ChatOpenAI", messages: list[Any], on_text: TextSink, limit_s: float):
    think = _ThinkFilter()
    parts: list[str] = []
    meta: dict[str, Any] = {}
    usage: dict[str, Any] | None = None
    deadline: float | None = None
    # aclosing: a stream cut by the deadline closes its HTTP response now, not whenever it is collected.
    async with aclosing(model.astream(messages)) as stream:
        async for chunk in stream:
            # The HTTP timeout only bounds each read, so a trickling stream could run on for minutes. Retries end
            # once the stream is open: from its first chunk this attempt gets GENERATION_TIMEOUT in total. Checked
            # here rather than with asyncio.timeout, whose cancellation the anyio-based HTTP stack can swallow.
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
                piece = think.feed(chunk.content)
                if piece:
                    parts.append(piece)
                    await on_text(piece)
    tail = think.flush()
    if tail:
        parts.append(tail)
        await on_text(tail)
    return "".join(parts), meta, usage


async def structured(
    settings: Settings, role: Role, schema: type[T], messages: Messages, *, max_tokens: int | None = None,
    check: Callable[[T], str | None] | None = None,
) -> tuple[T, list[LedgerEntry]]:
    """Ask for a typed answer (JSON matching `schema`); one retry with the validation error, then ProviderError.

    `check` may reject a well-formed answer (e.g. wrong labels) by returning the problem; that counts as malformed.
    """
    import json

    from pydantic import ValidationError

    schema_json = json.dumps(schema.model_json_schema())
    instructions = ("Answer with ONE JSON object that matches this JSON schema, and nothing else "
                    f"(no prose, no markdown fence):\n{schema_json}")
    convo = [*messages[:-1], (messages[-1][0], f"{messages[-1][1]}\n\n{instructions}")]
    entries: list[LedgerEntry] = []
    problem: str | None = None
    for _attempt in range(2):
        result = await complete(settings, role, convo, max_tokens=max_tokens, json_mode=True)
        entries.append(result.entry)
        try:
            answer = schema.model_validate_json(_json_payload(result.text))
            problem = check(answer) if check else None
        except ValidationError as exc:
            problem = _short_validation(exc)
        if not problem:
            return answer, entries
        convo = [*convo, ("assistant", result.text),
                 ("user", f"That answer was not valid: {problem}. Reply again with only the corrected JSON.")]
    raise ProviderError(f"The {role} model returned malformed {schema.__name__} twice ({problem}). "
                        f"No result was made up; try again or use a stronger model for SPEEDRUN_{role.upper()}.")


def _json_payload(text: str) -> str:
    """The JSON object inside a reply, tolerating a markdown fence or surrounding prose."""
    fenced = re.search(r"```(?:json)?\s*\n(.*?)\n```", text, re.S)
    if fenced:
        text = fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    return text[start:end + 1] if 0 <= start < end else text


def _short_validation(exc: Exception) -> str:
    errors = getattr(exc, "errors", lambda: [])()
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ())) or '(root)'}: {e.get('msg')}" for e in errors[:5]]
    return "; ".join(parts) or str(exc)[:300]


async def list_models(spec: ModelSpec, settings: Settings) -> list[str]:
    """Ask the endpoint for its models (GET /models): proves the URL answers and the key is accepted."""
    import httpx

    headers = {"Authorization": f"Bearer {spec.api_key.get_secret_value()}"} if spec.api_key else {}
    timeout = min(settings.generation_timeout_s, 15.0)
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(f"{spec.base_url}/models", headers=headers)
    except httpx.HTTPError as exc:
        raise ProviderError(settings.redact(f"Could not reach {spec.base_url}: {type(exc).__name__} {exc}. "
                                    "Check the URL setting and your network.")) from None
    if response.status_code in (401, 403):
        raise ProviderError(f"{spec.base_url} rejected the API key (HTTP {response.status_code}); "
                            f"check the key for provider {spec.provider!r}.")
    if response.status_code >= 400:
        raise ProviderError(f"{spec.base_url}/models answered HTTP {response.status_code}.")
    try:
        return sorted(str(m.get("id")) for m in response.json().get("data", []))
    except (ValueError, AttributeError):
        raise ProviderError(f"{spec.base_url}/models did not return an OpenAI-style model list.") from None
