"""Benchmark: 25 small sequential `generate`-sized calls through the gateway with the default Cerebras limits.

Against the scripted server on loopback, with small replies that report their usage (12 + 8 tokens). Two
variants: as configured by default (loopback: concurrency only) and with the Cerebras preset's limits set
explicitly (30 req/min, 60K tokens/min), so the up-front charge and its settling are what is measured. Before
the settling fix, the 15th call of the second variant waited ~58 s. Prints total time, overhead per call over
raw openai client calls, and the ratios. Run: uv run python bench/generate_calls.py [CALLS]
"""

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fake_llm import FakeLLM, Reply  # noqa: E402  (test-only server; benchmarks are not product code)

USAGE = {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}
PROMPT = [("user", "Write a one-line Python function that adds two numbers.")]


async def raw_calls(fake: FakeLLM, n: int) -> float:
    import openai

    client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-bench", max_retries=0)
    started = time.perf_counter()
    for _ in range(n):
        await client.chat.completions.create(
            model="fake-model", max_tokens=4096, messages=[{"role": "user", "content": PROMPT[0][1]}]
        )
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


async def gateway_calls(settings, n: int) -> float:
    from speedrun.llm import complete

    started = time.perf_counter()
    for _ in range(n):
        await complete(settings, "generator", PROMPT)
    return time.perf_counter() - started


def settings_with(**env: str):
    from speedrun.config import Settings

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return Settings()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 25
    with FakeLLM() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.default = Reply(content="def add(a, b): return a + b\n", usage=USAGE)
        for name in [k for k in os.environ if k.startswith(("SPEEDRUN_LIMITS", "CEREBRAS_"))]:
            os.environ.pop(name)
        os.environ.update(
            CEREBRAS_API_KEY="sk-bench", CEREBRAS_URL=fake.base_url, CEREBRAS_MODEL="fake-model", SPEEDRUN_HOME=tmp
        )
        default = settings_with()
        explicit = settings_with(SPEEDRUN_LIMITS__CEREBRAS__RPM="30", SPEEDRUN_LIMITS__CEREBRAS__TPM="60000")

        async def go() -> tuple[float, float, float]:
            from speedrun.llm import complete

            # Warm-up: imports, the HTTP clients and the first connection stay out of the timings.
            await complete(default, "generator", PROMPT)
            await raw_calls(fake, 2)
            raw = await raw_calls(fake, n)
            ours_default = await gateway_calls(default, n)
            ours_explicit = await gateway_calls(explicit, n)
            return raw, ours_default, ours_explicit

        raw, ours_default, ours_explicit = asyncio.run(go())

    lim = default.role("generator").primary.limits
    print(f"{n} sequential small calls (reply 20 tokens, max_tokens sized to >= 4,096 as before)")
    print(f"  raw openai client                         total {raw:6.2f} s   {raw / n * 1000:7.1f} ms/call")
    for label, total in (
        (f"gateway, loopback defaults (rpm={lim.rpm}, tpm={lim.tpm})", ours_default),
        ("gateway, Cerebras limits set (30 rpm, 60K tpm)", ours_explicit),
    ):
        overhead = (total - raw) / n * 1000
        print(
            f"  {label:<42} total {total:6.2f} s   {total / n * 1000:7.1f} ms/call   "
            f"overhead {overhead:+6.1f} ms/call   ratio vs raw {total / raw:5.2f}"
        )
    print("  (before settling: the 15th call with the Cerebras limits waited ~58 s, so 25 calls took over a minute)")


if __name__ == "__main__":
    main()
