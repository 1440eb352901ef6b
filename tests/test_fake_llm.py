"""A few self-checks of the scripted OpenAI-compatible server the product tests rely on."""

from __future__ import annotations

import json
import time

import anyio
import httpx2
import openai
import pytest

from tests.fake_llm import FakeLLM, Reply


def _client(fake: FakeLLM, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.base_url, api_key="sk-test", **kw)


def _aclient(fake: FakeLLM, **kw) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", **kw)


MSGS = [{"role": "user", "content": "x" * 40}]


# Kept as fixture self-checks: the recorded requests, the SSE framing (content, reasoning, usage), the
# error shape and headers of a 429, bad bytes on the wire, the concurrency counter, and responder bugs.


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
async def test_stream_reasoning_before_content_and_length(fake_llm: FakeLLM) -> None:
    fake_llm.script(
        Reply(content="answer text", reasoning="let me think about it", finish_reason="length", chunk_size=5)
    )
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


def test_429_error_body_and_headers_without_retries(fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(status=429, error_message="slow down", headers={"x-ratelimit-reset-requests": "2s"}))
    with pytest.raises(openai.RateLimitError) as ei:
        _client(fake_llm, max_retries=0).chat.completions.create(model="fake-model", messages=MSGS)
    err = ei.value
    assert err.status_code == 429
    assert err.response.headers["x-ratelimit-reset-requests"] == "2s"
    assert err.body["message"] == "slow down"
    assert err.code == "rate_limit_exceeded"


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


def test_responder_exception_becomes_500_and_is_recorded(fake_llm: FakeLLM) -> None:
    def boom(body: dict) -> str:
        raise ValueError("responder bug")

    fake_llm.responder = boom
    with pytest.raises(openai.InternalServerError, match="responder bug"):
        _client(fake_llm, max_retries=0).chat.completions.create(model="fake-model", messages=MSGS)
    assert [type(e) for e in fake_llm.errors] == [ValueError]


@pytest.mark.parametrize("stream", [False, True])
def test_bad_bytes_go_out_raw_at_the_start_of_the_answer(fake_llm: FakeLLM, stream: bool) -> None:
    bad = b"\xff\xfe\xc3"  # not UTF-8: what a broken provider proxy sends
    fake_llm.script(Reply(content="x = 1\n", bad_bytes=bad, chunk_size=3))
    raw = httpx2.post(
        fake_llm.base_url + "/chat/completions", json={"model": "fake-model", "messages": MSGS, "stream": stream}
    ).content
    with pytest.raises(UnicodeDecodeError):
        raw.decode()
    assert raw.count(bad) == 1
    assert raw.split(bad, 1)[1].startswith(b"x =")
    if not stream:
        assert json.loads(raw.replace(bad, b""))["choices"][0]["message"]["content"] == "x = 1\n"
