"""The LLM gateway (speedrun.llm) against the scripted server: answers, ledger, retries, budgets, secrets."""

from __future__ import annotations

import logging
import time

import anyio
import pytest
from pydantic import BaseModel

from speedrun import llm
from speedrun.errors import ProviderError
from speedrun.llm import complete, list_models, structured
from tests.fake_llm import FakeLLM, Reply
from tests.helpers import GATEWAY_KEY as KEY
from tests.helpers import make_settings

FAST_RETRY = {"retry-after-ms": "10"}  # the openai client honours it exactly, keeping retry tests fast


def sent_max_tokens(body: dict) -> int | None:
    return body.get("max_completion_tokens", body.get("max_tokens"))


USER = [("user", "say something")]


# --- answers and the ledger ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_non_stream_returns_content_and_records_ledger(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(
        Reply(content="hello world", delay=0.2, usage={"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16})
    )

    result = await complete(settings, "generator", [("system", "be brief"), ("user", "greet me")])

    assert result.text == "hello world"
    e = result.entry
    assert (e.role, e.provider, e.model) == ("generator", "cerebras", "fake-model")
    assert (e.prompt_tokens, e.completion_tokens) == (11, 5)
    assert e.finish_reason == "stop"
    assert e.fallback is False
    assert e.duration_ms >= 200  # the scripted delay is measured (no upper bound: timing belongs in bench/)
    assert result.usage.total_tokens == 16
    (req,) = fake_llm.chat_requests()
    assert req.body["model"] == "fake-model"
    assert not req.body.get("stream")
    assert [m["role"] for m in req.body["messages"]] == ["system", "user"]
    assert req.body["messages"][1]["content"] == "greet me"


@pytest.mark.anyio
async def test_stream_passes_pieces_to_sink_and_records_usage(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)
    text = "alpha beta gamma delta epsilon"
    fake_llm.script(
        Reply(
            content=text,
            chunk_size=4,
            finish_reason="length",
            usage={"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30},
        )
    )
    pieces: list[str] = []

    async def sink(piece: str) -> None:
        pieces.append(piece)

    result = await complete(settings, "generator", USER, on_text=sink)

    assert result.text == text
    assert "".join(pieces) == text
    assert len(pieces) > 3  # really streamed, not delivered in one piece at the end
    assert (result.entry.prompt_tokens, result.entry.completion_tokens) == (21, 9)
    assert result.finish_reason == "length"
    assert fake_llm.chat_requests()[0].body["stream"] is True


@pytest.mark.anyio
@pytest.mark.parametrize("streamed", [False, True])
async def test_reasoning_never_reaches_the_answer(clean_env, fake_llm: FakeLLM, streamed: bool) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(Reply(content="the answer is 42", reasoning="PRIVATE-CHAIN-OF-THOUGHT " * 5, chunk_size=7))
    pieces: list[str] = []

    async def sink(piece: str) -> None:
        pieces.append(piece)

    result = await complete(settings, "generator", USER, on_text=sink if streamed else None)

    assert result.text == "the answer is 42"
    assert "PRIVATE" not in "".join(pieces)
    assert "PRIVATE" not in repr(result)
    if streamed:
        assert "".join(pieces) == "the answer is 42"


@pytest.mark.anyio
@pytest.mark.parametrize("streamed", [False, True])
async def test_leading_think_block_is_stripped(clean_env, fake_llm: FakeLLM, streamed: bool) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(Reply(content="<think>hidden plan, step by step</think>\nfinal answer\n", chunk_size=3))
    pieces: list[str] = []

    async def sink(piece: str) -> None:
        pieces.append(piece)

    result = await complete(settings, "generator", USER, on_text=sink if streamed else None)

    assert result.text == "final answer\n"
    assert "hidden" not in "".join(pieces)
    if streamed:
        assert "".join(pieces) == "final answer\n"


@pytest.mark.anyio
async def test_think_tag_later_in_the_answer_is_kept(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script('print("<think>x</think>")\n')
    result = await complete(settings, "generator", USER)
    assert result.text == 'print("<think>x</think>")\n'


# --- retries, errors, fallback --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_429_with_retry_after_is_honoured_then_succeeds(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(Reply(status=429, headers={"Retry-After": "1"}), "after the wait")

    result = await complete(settings, "generator", USER)

    assert result.text == "after the wait"
    first, second = fake_llm.chat_requests()
    assert 0.9 <= second.started - first.started < 2.5


@pytest.mark.anyio
async def test_500_is_retried(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(Reply(status=500, headers=FAST_RETRY), "recovered")

    result = await complete(settings, "generator", USER)

    assert result.text == "recovered"
    assert len(fake_llm.chat_requests()) == 2


@pytest.mark.anyio
async def test_rate_limit_after_retries_is_a_clear_error(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm, SPEEDRUN_MAX_RETRIES=1)
    fake_llm.script(*[Reply(status=429, headers=FAST_RETRY)] * 3)

    with pytest.raises(ProviderError) as info:
        await complete(settings, "generator", USER)

    message = str(info.value)
    assert "rate-limit" in message and "429" in message
    assert "SPEEDRUN_LIMITS__CEREBRAS__RPM" in message  # how to fix it
    assert "SPEEDRUN_GENERATOR_FALLBACK" in message
    assert KEY not in message
    assert len(fake_llm.chat_requests()) == 2  # one try + SPEEDRUN_MAX_RETRIES=1
    assert fake_llm.pending == 1


@pytest.mark.anyio
async def test_fallback_answers_when_primary_keeps_failing(clean_env, fake_llm: FakeLLM) -> None:
    with FakeLLM() as backup:
        settings = make_settings(
            clean_env,
            fake_llm,
            SPEEDRUN_MAX_RETRIES=1,
            SPEEDRUN_GENERATOR_FALLBACK="openai-compatible:fake-model",
            SPEEDRUN_OPENAI_COMPATIBLE_URL=backup.base_url,
        )
        fake_llm.default = Reply(status=500, headers=FAST_RETRY)
        backup.script("from the fallback")

        result = await complete(settings, "generator", USER)

        assert result.text == "from the fallback"
        assert result.entry.fallback is True
        assert result.entry.provider == "openai-compatible"
        assert len(fake_llm.chat_requests()) == 2
        assert len(backup.chat_requests()) == 1
        # The fallback is another provider: the Cerebras key is not sent to it.
        assert KEY not in backup.chat_requests()[0].headers.get("authorization", "")


@pytest.mark.anyio
async def test_no_fallback_configured_gives_clear_error(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm, SPEEDRUN_MAX_RETRIES=1)
    fake_llm.default = Reply(status=500, headers=FAST_RETRY, error_message="upstream exploded")

    with pytest.raises(ProviderError) as info:
        await complete(settings, "generator", USER)

    message = str(info.value)
    assert "HTTP 500" in message
    assert "cerebras:fake-model" in message
    assert "upstream exploded" in message
    assert len(fake_llm.chat_requests()) == 2


@pytest.mark.anyio
async def test_generation_timeout_is_enforced(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm, GENERATION_TIMEOUT=1000, SPEEDRUN_MAX_RETRIES=0)
    fake_llm.script(Reply(content="too late", delay=4))

    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await complete(settings, "generator", USER)

    assert time.monotonic() - started < 2.5
    assert "GENERATION_TIMEOUT=1000" in str(info.value)


@pytest.mark.anyio
async def test_generation_timeout_bounds_a_trickling_stream(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm, GENERATION_TIMEOUT=1000, SPEEDRUN_MAX_RETRIES=0)
    # Each chunk arrives well within the timeout, but the whole reply would take ~6 s.
    fake_llm.script(Reply(content="x" * 60, chunk_size=1, chunk_delay=0.1))

    async def sink(piece: str) -> None:
        pass

    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await complete(settings, "generator", USER, on_text=sink)

    assert time.monotonic() - started < 3.0
    assert "GENERATION_TIMEOUT=1000" in str(info.value)


@pytest.mark.anyio
async def test_key_is_sent_but_never_returned(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm, SPEEDRUN_MAX_RETRIES=0)
    fake_llm.script("fine", Reply(status=401, error_message="bad key"), Reply(status=429))

    result = await complete(settings, "generator", USER)
    errors = []
    for _ in range(2):
        with pytest.raises(ProviderError) as info:
            await complete(settings, "generator", USER)
        errors.append(str(info.value))

    assert fake_llm.chat_requests()[0].headers["authorization"] == f"Bearer {KEY}"
    spec = settings.role("generator").primary
    shown = [repr(result), result.entry.model_dump_json(), *errors, repr(spec), spec.budget_key, spec.describe()]
    assert not [s for s in shown if KEY in s]
    assert "rejected the API key" in errors[0]


# --- shared rate budget ---------------------------------------------------------------------------------


async def _warm_up(env: pytest.MonkeyPatch, fake: FakeLLM) -> None:
    # The first call in an event loop builds the HTTP client; keep that out of the timings that follow.
    await complete(make_settings(env, fake), "generator", USER)


@pytest.mark.anyio
async def test_concurrency_is_held_to_the_shared_budget(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm, SPEEDRUN_LIMITS__CEREBRAS__CONCURRENCY=2)
    fake_llm.default = Reply(content="slow answer", delay=0.3)
    answers: list[str] = []

    async def one() -> None:
        answers.append((await complete(settings, "generator", USER)).text)

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(one)

    assert answers == ["slow answer"] * 6
    assert fake_llm.max_in_flight == 2
    assert time.monotonic() - started >= 0.85  # three waves of two


@pytest.mark.anyio
async def test_requests_per_minute_budget_queues_the_extra_call(clean_env, fake_llm: FakeLLM) -> None:
    await _warm_up(clean_env, fake_llm)
    settings = make_settings(clean_env, fake_llm, SPEEDRUN_LIMITS__CEREBRAS__RPM=2)
    clean_env.setattr(llm, "WINDOW_S", 0.5)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(complete, settings, "generator", USER)

    starts = sorted(r.started for r in fake_llm.chat_requests()[1:])
    assert len(starts) == 3
    assert starts[1] - starts[0] < 0.3  # two fit in the window at once
    assert starts[2] - starts[0] >= 0.4


@pytest.mark.anyio
async def test_tokens_per_minute_charge_is_max_tokens_up_front_then_settled(clean_env, fake_llm: FakeLLM) -> None:
    await _warm_up(clean_env, fake_llm)
    settings = make_settings(clean_env, fake_llm, SPEEDRUN_LIMITS__CEREBRAS__TPM=10_000)
    clean_env.setattr(llm, "WINDOW_S", 5.0)
    fake_llm.default = Reply(
        content="short", delay=0.4, usage={"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    )

    async with anyio.create_task_group() as tg:
        for _ in range(3):  # 3 x (prompt + 4000) do not fit in 10,000 tokens at once; 2 do
            tg.start_soon(lambda: complete(settings, "generator", USER, max_tokens=4000))

    first, second, third = sorted(fake_llm.chat_requests()[1:], key=lambda r: r.started)
    assert second.started - first.started < 0.3  # two reserved up front together
    # The third waits for a settled charge (8 tokens really used), not for the 5 s window to pass.
    assert min(first.finished, second.finished) - 0.05 <= third.started < first.started + 2.0


@pytest.mark.anyio
@pytest.mark.parametrize("streamed", [False, True])
async def test_exhausted_ratelimit_headers_pause_the_next_call(clean_env, fake_llm: FakeLLM, streamed: bool) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(
        Reply(
            content="first",
            headers={"x-ratelimit-remaining-tokens-minute": "0", "x-ratelimit-reset-tokens-minute": "0.5"},
        ),
        "second",
    )

    async def sink(piece: str) -> None:
        pass

    await complete(settings, "generator", USER, on_text=sink if streamed else None)
    result = await complete(settings, "generator", USER)

    first, second = fake_llm.chat_requests()
    assert second.started - first.finished >= 0.4
    assert result.text == "second"
    assert result.entry.queued_ms >= 350


# --- structured answers ---------------------------------------------------------------------------------


class Verdict(BaseModel):
    winner: str
    score: int


@pytest.mark.anyio
async def test_structured_parses_valid_json(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script('```json\n{"winner": "runner-2", "score": 4}\n```')

    answer, entries = await structured(settings, "judge", Verdict, [("user", "pick one")])

    assert answer == Verdict(winner="runner-2", score=4)
    assert len(entries) == 1
    (req,) = fake_llm.chat_requests()
    # Cerebras takes strict json_schema: the schema goes in response_format, closed and fully required.
    fmt = req.body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Verdict" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == ["score", "winner"]


@pytest.mark.anyio
async def test_structured_drops_json_mode_where_the_endpoint_rejects_it(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)

    def strict_server(body: dict) -> Reply:
        if "response_format" in body:
            return Reply(status=400, error_message="response_format is not supported")
        return Reply(content='{"winner": "runner-1", "score": 3}')

    fake_llm.responder = strict_server
    first, _ = await structured(settings, "judge", Verdict, [("user", "pick one")])
    second, _ = await structured(settings, "judge", Verdict, [("user", "pick again")])

    assert first == second == Verdict(winner="runner-1", score=3)
    sent = [(r.body.get("response_format") or {}).get("type") for r in fake_llm.chat_requests()]
    assert sent == ["json_schema", "json_object", None, None]  # each mode asked once, then remembered
    assert all('"winner"' in r.body["messages"][-1]["content"] for r in fake_llm.chat_requests()[2:])


@pytest.mark.anyio
async def test_structured_retries_once_on_malformed_json(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script('{"winner": "runner-1"}', '{"winner": "runner-1", "score": 5}')

    answer, entries = await structured(settings, "judge", Verdict, [("user", "pick one")])

    assert answer == Verdict(winner="runner-1", score=5)
    assert len(entries) == 2
    first, second = fake_llm.chat_requests()
    assert len(second.body["messages"]) == len(first.body["messages"]) + 2
    assert "score" in second.body["messages"][-1]["content"]  # the problem is named in the retry


@pytest.mark.anyio
async def test_structured_gives_up_after_two_malformed_answers(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script("I think runner-1 wins.", "{not json}", '{"winner": "late", "score": 1}')

    with pytest.raises(ProviderError) as info:
        await structured(settings, "judge", Verdict, [("user", "pick one")])

    assert "malformed Verdict twice" in str(info.value)
    assert len(fake_llm.chat_requests()) == 2
    assert fake_llm.pending == 1


# --- max_tokens -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_max_tokens_is_sized_under_the_cap_and_explicit_value_passes(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm, SPEEDRUN_MAX_TOKENS=1000)

    await complete(settings, "generator", USER)
    await complete(settings, "generator", [("user", "x" * 40_000)])
    await complete(settings, "generator", USER, max_tokens=123)

    sent = [sent_max_tokens(r.body) for r in fake_llm.chat_requests()]
    assert all(isinstance(n, int) and 0 < n <= 1000 for n in sent[:2]), sent
    assert sent[2] == 123


@pytest.mark.anyio
async def test_max_tokens_grows_with_the_prompt(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)  # default cap 16,384

    await complete(settings, "generator", USER)
    await complete(settings, "generator", [("user", "x" * 40_000)])

    small, large = (sent_max_tokens(r.body) for r in fake_llm.chat_requests())
    assert small < large <= settings.max_tokens_cap


# --- list_models ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_list_models_and_rejected_key(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.models = ["fake-model", "other-model"]
    spec = settings.role("generator").primary

    assert await list_models(spec, settings) == ["fake-model", "other-model"]
    assert fake_llm.requests[0].headers["authorization"] == f"Bearer {KEY}"

    fake_llm.models_status = 401
    with pytest.raises(ProviderError) as info:
        await list_models(spec, settings)
    assert "rejected the API key" in str(info.value)
    assert KEY not in str(info.value)


# --- honest 429s ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_429_asking_for_an_hour_fails_at_once_and_says_so(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)  # SPEEDRUN_MAX_RETRIES defaults to 4
    fake_llm.default = Reply(status=429, headers={"Retry-After": "3600"}, error_message="slow down")

    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await complete(settings, "generator", USER)

    assert time.monotonic() - started < 2
    message = str(info.value)
    assert len(fake_llm.chat_requests()) == 1
    assert "1 request (0 retries)" in message and "wait 3600 s" in message
    assert "4 retries" not in message and "wait a minute" not in message.lower()


@pytest.mark.anyio
async def test_429_asking_for_100_s_is_a_rate_limit_not_a_timeout(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.default = Reply(status=429, headers={"Retry-After": "100"})

    with pytest.raises(ProviderError) as info:
        await complete(settings, "generator", USER)

    message = str(info.value)
    assert "rate-limiting requests (429)" in message and "wait 100 s" in message
    assert "did not answer within" not in message
    assert len(fake_llm.chat_requests()) == 1


@pytest.mark.anyio
async def test_429_reports_the_retries_really_made(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm, SPEEDRUN_MAX_RETRIES=2)
    fake_llm.default = Reply(status=429, headers={"retry-after-ms": "20"})

    with pytest.raises(ProviderError) as info:
        await complete(settings, "generator", USER)

    assert len(fake_llm.chat_requests()) == 3
    assert "3 requests (2 retries)" in str(info.value)


@pytest.mark.anyio
async def test_429_wait_is_announced_and_held_by_the_shared_budget(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(Reply(status=429, headers={"Retry-After": "3"}), "after the wait")
    heard: list[str] = []

    with llm.report_waits(heard.append):
        result = await complete(settings, "generator", USER)

    assert result.text == "after the wait"
    first, second = fake_llm.chat_requests()
    assert second.started - first.started >= 2.8
    assert heard and "Retry-After 3 s" in heard[0] and "cerebras" in heard[0]


# --- max_tokens -----------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("bad", [0, -5])
async def test_max_tokens_zero_or_negative_is_an_input_error(clean_env, fake_llm: FakeLLM, bad: int) -> None:
    from speedrun.errors import InputError

    settings = make_settings(clean_env, fake_llm)
    with pytest.raises(InputError, match="max_tokens"):
        await complete(settings, "generator", USER, max_tokens=bad)
    assert fake_llm.chat_requests() == []


# --- odd bytes ------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("streamed", [False, True])
async def test_invalid_utf8_from_the_server_does_not_crash(clean_env, fake_llm: FakeLLM, streamed: bool) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(Reply(content="x = 1\n", bad_bytes=b"\xff\xfe\xc3", chunk_size=3))
    pieces: list[str] = []

    async def sink(piece: str) -> None:
        pieces.append(piece)

    result = await complete(settings, "generator", USER, on_text=sink if streamed else None)

    assert result.text.endswith("x = 1\n")
    assert "\ufffd" in result.text  # the bad bytes became replacement characters, nothing else was lost
    if streamed:
        assert "".join(pieces) == result.text


@pytest.mark.anyio
@pytest.mark.parametrize("streamed", [False, True])
async def test_lone_surrogates_never_leave_the_gateway(clean_env, fake_llm: FakeLLM, streamed: bool) -> None:
    settings = make_settings(clean_env, fake_llm)
    # JSON carries "\ud800" escapes; a pair split over two stream chunks must still join into one character.
    fake_llm.script(Reply(content="a\ud800b x\ud83d\ude00y", chunk_size=5))
    pieces: list[str] = []

    async def sink(piece: str) -> None:
        pieces.append(piece)

    result = await complete(settings, "generator", USER, on_text=sink if streamed else None)

    assert result.text == "a\ufffdb x\U0001f600y"
    result.text.encode("utf-8")  # strict: raises on any surrogate
    if streamed:
        assert "".join(pieces) == result.text


# --- structured answers: per preset ---------------------------------------------------------------------


class Inner(BaseModel):
    note: str = "none"


class Scores(BaseModel):
    a: int
    b: int | None = None
    inner: Inner


@pytest.mark.anyio
async def test_strict_schema_closes_every_object_including_defs(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script('{"a": 1, "b": null, "inner": {"note": "x"}}')

    answer, _ = await structured(settings, "judge", Scores, [("user", "score")])

    assert answer == Scores(a=1, b=None, inner=Inner(note="x"))
    schema = fake_llm.chat_requests()[0].body["response_format"]["json_schema"]["schema"]
    assert sorted(schema["required"]) == ["a", "b", "inner"]  # optional fields are required (nullable) in strict
    inner = schema["$defs"]["Inner"]
    assert inner["additionalProperties"] is False and inner["required"] == ["note"]
    assert "default" not in str(schema)


@pytest.mark.anyio
async def test_openai_compatible_gets_json_mode_with_the_schema_in_the_prompt(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(
        clean_env,
        fake_llm,
        SPEEDRUN_JUDGE="openai-compatible:fake-model",
        SPEEDRUN_OPENAI_COMPATIBLE_URL=fake_llm.base_url,
    )
    fake_llm.script('{"winner": "runner-1", "score": 2}')

    answer, _ = await structured(settings, "judge", Verdict, [("user", "pick one")])

    assert answer == Verdict(winner="runner-1", score=2)
    (req,) = fake_llm.chat_requests()
    assert req.body["response_format"] == {"type": "json_object"}
    assert '"winner"' in req.body["messages"][-1]["content"]


@pytest.mark.anyio
async def test_json_schema_refusal_falls_back_for_that_endpoint_only(clean_env, fake_llm: FakeLLM, caplog) -> None:
    with FakeLLM() as other:
        settings = make_settings(clean_env, fake_llm)
        other_settings = make_settings(clean_env, other)

        def no_schema(body: dict) -> Reply:
            if (body.get("response_format") or {}).get("type") == "json_schema":
                return Reply(status=400, error_message="json_schema is not supported for this model")
            return Reply(content='{"winner": "runner-1", "score": 3}')

        fake_llm.responder = no_schema
        other.default = Reply(content='{"winner": "runner-2", "score": 4}')
        caplog.set_level(logging.WARNING, logger="speedrun.llm")

        await structured(settings, "judge", Verdict, [("user", "pick one")])
        await structured(other_settings, "judge", Verdict, [("user", "pick one")])

        sent = [(r.body.get("response_format") or {}).get("type") for r in fake_llm.chat_requests()]
        assert sent == ["json_schema", "json_object"]
        # The schema moved into the prompt for the fallback request.
        assert '"winner"' in fake_llm.chat_requests()[1].body["messages"][-1]["content"]
        # Another endpoint still gets strict json_schema: no process-wide switch.
        assert other.chat_requests()[0].body["response_format"]["type"] == "json_schema"
        assert any("json_schema" in r.getMessage() and "400" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_retry_after_waits_add_up_to_one_generation_timeout(clean_env, fake_llm: FakeLLM) -> None:
    # Each wait alone fits GENERATION_TIMEOUT, but a call must not chain them past it: an MCP client's tool
    # timeout would run out while the call still looked busy.
    settings = make_settings(clean_env, fake_llm, GENERATION_TIMEOUT=2500)
    fake_llm.default = Reply(status=429, headers={"Retry-After": "1"})
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await complete(settings, "generator", USER)
    took = time.monotonic() - started
    assert len(fake_llm.chat_requests()) == 3  # waits of 1 s and 1 s fit 2.5 s; a third does not
    assert took < 3.5
    message = str(info.value)
    assert "after 3 requests (2 retries)" in message and "asks to wait 1 s" in message
    assert "GENERATION_TIMEOUT=2500 ms" in message


@pytest.mark.anyio
async def test_temperature_reaches_the_endpoint_only_when_asked(clean_env, fake_llm: FakeLLM) -> None:
    settings = make_settings(clean_env, fake_llm)
    fake_llm.script(Reply(content="plan a"), Reply(content="plan b"))

    await complete(settings, "planner", [("user", "plan it")], temperature=0.3)
    await complete(settings, "planner", [("user", "plan it")])

    first, second = (r.body or {} for r in fake_llm.requests)
    assert first["temperature"] == 0.3
    assert "temperature" not in second  # the provider's default stands
