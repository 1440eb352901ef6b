"""Benchmark: N turbo runs in parallel versus one after another, against the scripted server with slow replies.

The runs share one rate budget (concurrency from SPEEDRUN_LIMITS__CEREBRAS__CONCURRENCY, default 4), so the
ratio shows how much of the model latency parallel runners hide. Also reports the gateway's overhead per call.
Run: uv run python bench/parallel.py [N] [REPLY_DELAY_S]
"""

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fake_llm import FakeLLM, Reply  # noqa: E402  (test-only server; benchmarks are not product code)

FILES = '<FILE path="calc.py">\ndef add(a, b):\n    return a + b\n</FILE>\n'
CONTRACT = "DATA CONTRACT: ints\nAPI CONTRACT: add(a, b)\nALGORITHM: sum\nRULES: calc.py"


async def run_many(n: int, parallel: bool, settings, workdir: Path) -> float:
    from speedrun.config import RunContext
    from speedrun.graphs.turbo import graph

    async def one(i: int) -> None:
        out = workdir / f"{'p' if parallel else 's'}{i}"
        result = await graph.ainvoke(
            {"contract": CONTRACT, "output_dir": str(out), "test_command": "true"}, context=RunContext(settings)
        )
        assert result["result"].status == "passed", result["result"]

    started = time.perf_counter()
    if parallel:
        await asyncio.gather(*(one(i) for i in range(n)))
    else:
        for i in range(n):
            await one(i)
    return time.perf_counter() - started


async def gateway_overhead(settings, fake: FakeLLM, calls: int = 20) -> tuple[float, float]:
    import openai

    from speedrun.llm import complete

    fake.default = Reply(content="ok")
    raw = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-bench")
    t = time.perf_counter()
    for _ in range(calls):
        await raw.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}])
    raw_s = (time.perf_counter() - t) / calls
    t = time.perf_counter()
    for _ in range(calls):
        await complete(settings, "generator", [("user", "hi")])
    ours_s = (time.perf_counter() - t) / calls
    return raw_s, ours_s


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    with FakeLLM() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.default = Reply(content=FILES, delay=delay)
        # Per-minute budgets off: this measures latency hiding and overhead, not the provider's quota.
        os.environ.update(
            CEREBRAS_API_KEY="sk-bench",
            CEREBRAS_URL=fake.base_url,
            CEREBRAS_MODEL="fake-model",
            SPEEDRUN_HOME=tmp,
            SPEEDRUN_LIMITS__CEREBRAS__RPM="1000000",
            SPEEDRUN_LIMITS__CEREBRAS__TPM="1000000000",
        )
        from speedrun.config import Settings

        settings = Settings()

        async def go():
            await run_many(1, False, settings, Path(tmp) / "warmup")  # imports and first connection
            seq = await run_many(n, False, settings, Path(tmp))
            par = await run_many(n, True, settings, Path(tmp))
            raw, ours = await gateway_overhead(settings, fake)
            return seq, par, raw, ours

        seq, par, raw, ours = asyncio.run(go())
    print(f"{n} turbo runs, model reply delay {delay}s: sequential {seq:.2f}s, parallel {par:.2f}s")
    ideal = min(n, settings.role("generator").primary.limits.concurrency)
    print(f"ratio sequential/parallel: {seq / par:.2f} (ideal {ideal})")
    print(f"gateway per call: {ours * 1000:.1f} ms vs raw openai client {raw * 1000:.1f} ms (ratio {ours / raw:.2f})")


if __name__ == "__main__":
    main()
