"""Self-tests of the scripted fake OpenAI server, driven by the real clients."""

from __future__ import annotations

import json
import statistics
import threading
import time

import anyio
import httpx2
import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.fake_llm import FakeLLM, Reply


def _client(fake: FakeLLM, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key="sk-test", **kw)


def _aclient(fake: FakeLLM, **kw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", **kw)


MSGS = [{"role": "user", "content": "x" * 40}]


# -- basics -------------------------------------------------------------------------


def test_models_endpoint_and_status(fake_llm: FakeLLM) -> None:
    client = _client(fake_llm, max_retries=0)
    assert [m.id for m in client.models.list()] == ["fake-model"]
    fake_llm.models_status = 401
    with pytest.raises(openai.AuthenticationError):
        client.models.list()
    assert [r.path for r in fake_llm.requests] == ["/v1/models", "/v1/models"]
    assert fake_llm.chat_requests() == []


def test_non_stream_content_usage_and_recording(fake_llm: FakeLLM) -> None:
    fake_llm.script("hello there, world!")
    client = _client(fake_llm)
    resp = client.chat.completions.create(model="fake-model", messages=MSGS)
    assert resp.choices[0].message.content == "hello there, world!"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == "fake-model"
    assert resp.usage.prompt_tokens == 10  # 40 chars // 4
    assert resp.usage.completion_tokens == 4  # 19 chars // 4
    assert resp.usage.total_tokens == 14

    (req,) = fake_llm.chat_requests()
    assert req.method == "POST" and req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.body["messages"] == MSGS
    assert req.finished is not None and req.finished >= req.started

    # queue empty -> default, then responder
    assert client.chat.completions.create(model="m", messages=MSGS).choices[0].message.content == "ok"
    fake_llm.responder = lambda body: body["messages"][-1]["content"].upper()
    out = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "abc"}])
    assert out.choices[0].message.content == "ABC"
    assert out.usage.prompt_tokens == 1  # min 1


def test_non_stream_reasoning_length_and_usage_override(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(content="trunc", reasoning="think", finish_reason="length", usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}))
    resp = _client(fake_llm).chat.completions.create(model="fake-model", messages=MSGS)
    choice = resp.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.content == "trunc"
    assert choice.message.model_extra["reasoning"] == "think"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (7, 3)


def test_reset_and_404(fake_llm: FakeLLM) -> None:
    fake_llm.script("a", "b")
    fake_llm.responder = lambda body: "r"
    client = _client(fake_llm, max_retries=0)
    assert client.chat.completions.create(model="m", messages=MSGS).choices[0].message.content == "a"
    fake_llm.reset()
    assert fake_llm.requests == [] and fake_llm.responder is None
    assert fake_llm.max_in_flight == 0 and fake_llm.in_flight == 0
    assert client.chat.completions.create(model="m", messages=MSGS).choices[0].message.content == "ok"
    r = httpx2.get(fake_llm.base_url + "/nope")
    assert r.status_code == 404 and "error" in r.json()


# -- streaming ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_stream_reassembles_content_and_usage(fake_llm: FakeLLM) -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 3
    fake_llm.script(Reply(content=text, chunk_size=7))
    async with _aclient(fake_llm) as client:
        stream = await client.chat.completions.create(
            model="fake-model", messages=MSGS, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(c.choices[0].delta.content for c in content_chunks) == text
    assert len(content_chunks) == -(-len(text) // 7)
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens == 10 and last.usage.completion_tokens == len(text) // 4
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.anyio
async def test_stream_without_include_usage_has_no_usage_chunk(fake_llm: FakeLLM) -> None:
    fake_llm.script("abc")
    async with _aclient(fake_llm) as client:
        stream = await client.chat.completions.create(model="fake-model", messages=MSGS, stream=True)
        chunks = [c async for c in stream]
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


@pytest.mark.anyio
async def test_stream_reasoning_before_content_and_length(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(content="answer text", reasoning="let me think about it", finish_reason="length", chunk_size=5))
    async with _aclient(fake_llm) as client:
        stream = await client.chat.completions.create(
            model="fake-model", messages=MSGS, stream=True, stream_options={"include_usage": True}
        )
        kinds: list[tuple[str, str]] = []
        finish = None
        async for c in stream:
            if not c.choices:
                continue
            d = c.choices[0].delta
            r = (d.model_extra or {}).get("reasoning")
            if r:
                assert not d.content  # reasoning and content never share a delta
                kinds.append(("reasoning", r))
            if d.content:
                kinds.append(("content", d.content))
            finish = c.choices[0].finish_reason or finish
    reasoning = "".join(t for k, t in kinds if k == "reasoning")
    content = "".join(t for k, t in kinds if k == "content")
    assert reasoning == "let me think about it"
    assert content == "answer text"
    first_content = next(i for i, (k, _) in enumerate(kinds) if k == "content")
    assert all(k == "reasoning" for k, _ in kinds[:first_content])
    assert all(k == "content" for k, _ in kinds[first_content:])
    assert finish == "length"


def test_stream_chunk_delay_is_observable(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(content="a" * 50, chunk_size=10, chunk_delay=0.03))
    t0 = time.monotonic()
    arrivals = []
    with _client(fake_llm) as client:
        for c in client.chat.completions.create(model="fake-model", messages=MSGS, stream=True):
            if c.choices and c.choices[0].delta.content:
                arrivals.append(time.monotonic() - t0)
    assert len(arrivals) == 5
    # 5 content chunks spaced by 30 ms: the first arrives well before the last
    assert arrivals[-1] - arrivals[0] >= 0.1
    assert arrivals[0] < 0.1
    assert all(b > a for a, b in zip(arrivals, arrivals[1:]))


# -- errors and retries -------------------------------------------------------------


def test_429_retry_after_then_success(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(status=429, headers={"Retry-After": "1", "x-ratelimit-remaining-requests": "0"}), "after wait")
    resp = _client(fake_llm, max_retries=2).chat.completions.create(model="fake-model", messages=MSGS)
    assert resp.choices[0].message.content == "after wait"
    first, second = fake_llm.chat_requests()
    gap = second.started - first.started
    assert 0.9 <= gap < 1.6, gap


def test_429_error_body_and_headers_without_retries(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(status=429, error_message="slow down", headers={"x-ratelimit-reset-requests": "2s"}))
    with pytest.raises(openai.RateLimitError) as ei:
        _client(fake_llm, max_retries=0).chat.completions.create(model="fake-model", messages=MSGS)
    err = ei.value
    assert err.status_code == 429
    assert err.response.headers["x-ratelimit-reset-requests"] == "2s"
    assert err.body["message"] == "slow down"
    assert err.code == "rate_limit_exceeded"


def test_500_then_success(fake_llm: FakeLLM) -> None:
    # retry-after-ms keeps the client's backoff short (default would be ~0.5 s)
    fake_llm.script(Reply(status=500, headers={"retry-after-ms": "10"}), "recovered")
    resp = _client(fake_llm, max_retries=2).chat.completions.create(model="fake-model", messages=MSGS)
    assert resp.choices[0].message.content == "recovered"
    assert len(fake_llm.chat_requests()) == 2


def test_401_is_not_retried(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(status=401, error_message="bad key"))
    with pytest.raises(openai.AuthenticationError):
        _client(fake_llm, max_retries=2).chat.completions.create(model="fake-model", messages=MSGS)
    assert len(fake_llm.chat_requests()) == 1


# -- concurrency and latency --------------------------------------------------------


@pytest.mark.anyio
async def test_max_in_flight_counts_concurrent_requests(fake_llm: FakeLLM) -> None:
    fake_llm.default = Reply(content="slow", delay=0.2)
    results: list[str] = []
    async with _aclient(fake_llm) as client:

        async def one() -> None:
            r = await client.chat.completions.create(model="fake-model", messages=MSGS)
            results.append(r.choices[0].message.content)

        t0 = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
        elapsed = time.monotonic() - t0
    assert results == ["slow"] * 3
    assert fake_llm.max_in_flight == 3
    assert fake_llm.in_flight == 0
    assert elapsed < 0.5  # served in parallel, not 3 x 0.2 s


def test_keepalive_round_trip_is_fast(fake_llm: FakeLLM) -> None:
    """Nagle off + single write: a non-stream reply must not stall on delayed ACK (~40 ms)."""
    with _client(fake_llm) as client:
        client.chat.completions.create(model="fake-model", messages=MSGS)  # warm up the connection
        times = []
        for _ in range(10):
            t0 = time.perf_counter()
            client.chat.completions.create(model="fake-model", messages=MSGS)
            times.append(time.perf_counter() - t0)
    assert statistics.median(times) < 0.03, times


def test_context_manager_and_idempotent_close() -> None:
    with FakeLLM(models=["a", "b"]) as fake:
        url = fake.base_url
        assert [m.id for m in _client(fake).models.list()] == ["a", "b"]
    fake.close()  # second close is a no-op
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=url, api_key="k", max_retries=0).models.list()


def test_close_does_not_hang_on_slow_reply() -> None:
    fake = FakeLLM().start()
    fake.default = Reply(delay=30)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            _client(fake, max_retries=0, timeout=10).chat.completions.create(model="m", messages=MSGS)
        except BaseException as e:  # noqa: BLE001 - expected connection error
            errors.append(e)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    deadline = time.monotonic() + 2
    while fake.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.in_flight == 1
    t0 = time.monotonic()
    fake.close()
    assert time.monotonic() - t0 < 1.0
    t.join(timeout=2)
    assert not t.is_alive()
    assert errors and isinstance(errors[0], openai.APIConnectionError)


# -- LangChain ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_langchain_astream_with_usage(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(content="streamed via langchain", chunk_size=4))
    async with httpx2.AsyncClient() as http:
        llm = ChatOpenAI(
            base_url=fake_llm.base_url,
            api_key="sk-test",
            model="fake-model",
            stream_usage=True,
            http_async_client=http,
        )
        full = None
        n = 0
        async for chunk in llm.astream("hi there"):
            n += 1
            full = chunk if full is None else full + chunk
    assert full is not None and full.content == "streamed via langchain"
    assert n >= 6
    assert full.usage_metadata is not None
    assert full.usage_metadata["output_tokens"] == len("streamed via langchain") // 4
    assert full.usage_metadata["input_tokens"] == 2  # "hi there" -> 8 chars // 4
    (req,) = fake_llm.chat_requests()
    assert req.body["stream"] is True
    assert req.body["stream_options"] == {"include_usage": True}


class Verdict(BaseModel):
    winner: int
    reason: str


def test_langchain_structured_output_function_calling(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(tool_call=("Verdict", json.dumps({"winner": 2, "reason": "tests pass"}))))
    llm = ChatOpenAI(base_url=fake_llm.base_url, api_key="sk-test", model="fake-model")
    out = llm.with_structured_output(Verdict, method="function_calling").invoke("judge")
    assert out == Verdict(winner=2, reason="tests pass")
    (req,) = fake_llm.chat_requests()
    assert [t["function"]["name"] for t in req.body["tools"]] == ["Verdict"]


def test_openai_tool_call_stream(fake_llm: FakeLLM) -> None:
    args = json.dumps({"winner": 1, "reason": "x" * 30})
    fake_llm.script(Reply(tool_call=("Verdict", args), chunk_size=8))
    with _client(fake_llm) as client:
        parts, name, finish = [], None, None
        for c in client.chat.completions.create(model="fake-model", messages=MSGS, stream=True):
            if not c.choices:
                continue
            for tc in c.choices[0].delta.tool_calls or []:
                name = tc.function.name or name
                parts.append(tc.function.arguments or "")
            finish = c.choices[0].finish_reason or finish
    assert name == "Verdict" and "".join(parts) == args and finish == "tool_calls"


def test_responder_exception_becomes_500_and_is_recorded(fake_llm: FakeLLM) -> None:
    def boom(body: dict) -> str:
        raise ValueError("responder bug")

    fake_llm.responder = boom
    with pytest.raises(openai.InternalServerError, match="responder bug"):
        _client(fake_llm, max_retries=0).chat.completions.create(model="fake-model", messages=MSGS)
    assert [type(e) for e in fake_llm.errors] == [ValueError]
