"""One rate budget across processes, in a real Redis on loopback: concurrency, 429 pauses, dead holders, bad URLs."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from speedrun.config import load_settings
from speedrun.errors import ConfigError
from speedrun.llm import complete
from tests.fake_llm import FakeLLM, Reply
from tests.helpers import CONTRACT_TEXT, FIXED_CALC, TEST_CALC, fake_env, file_blocks, wait_for

USER = [("user", "say something short")]
# The generated code's check without a pytest start per process (three at once, twice, on a 2-core machine).
CHECK_CALC = f"{shlex.quote(sys.executable)} -S -c 'from calc import add; assert add(2, 3) == 5'"


def _password(url: str) -> str:
    return url.split("://:", 1)[1].split("@", 1)[0]


def _hold_until_three(fake: FakeLLM, within: float) -> None:
    """Each reply waits until 3 requests are in flight at the server (or `within` s): the overlap the test needs
    without betting on how fast 3 processes start on a busy machine."""

    def responder(body: dict) -> Reply:
        deadline = time.monotonic() + within
        while fake.in_flight < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        return Reply(content=file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))

    fake.responder = responder


def _three_turbos(tmp_path: Path, fake: FakeLLM, **extra: str) -> list[subprocess.CompletedProcess[str]]:
    """Three `speedrun turbo` processes at once, sharing one key and one scripted server."""
    (tmp_path / "contract.txt").write_text(CONTRACT_TEXT)
    procs = []
    for n in range(3):
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path / "home"),
            "SPEEDRUN_HOME": str(tmp_path / f"state{n}"),
            "SPEEDRUN_LIMITS__CEREBRAS__CONCURRENCY": "2",
            **fake_env(fake),
            **extra,
        }
        args = ["turbo", "--contract", "contract.txt", "--out", f"ws{n}", "--test-cmd", CHECK_CALC]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "speedrun", *args],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def test_three_turbo_processes_share_one_concurrency_budget_through_redis(
    tmp_path: Path, fake_llm: FakeLLM, redis_url: str
) -> None:
    # Without Redis each process believes the 2 slots are all its own: 3 requests run at once at the server.
    _hold_until_three(fake_llm, within=6)
    (tmp_path / "alone").mkdir()
    alone = _three_turbos(tmp_path / "alone", fake_llm)
    assert [p.returncode for p in alone] == [0, 0, 0], [p.stderr[-500:] for p in alone]
    assert fake_llm.max_in_flight == 3

    fake_llm.reset()
    _hold_until_three(fake_llm, within=1.5)  # never 3 here: each call holds its slot 1.5 s, so the others queue
    (tmp_path / "shared").mkdir()
    shared = _three_turbos(tmp_path / "shared", fake_llm, SPEEDRUN_REDIS_URL=redis_url)

    assert [p.returncode for p in shared] == [0, 0, 0], [p.stderr[-500:] for p in shared]
    assert fake_llm.max_in_flight == 2
    assert len(fake_llm.chat_requests()) == 3  # nobody was refused and retried: they queued
    for n in range(3):
        assert (tmp_path / "shared" / f"ws{n}" / "calc.py").read_text() == FIXED_CALC
    password = _password(redis_url)
    assert all(password not in p.stdout + p.stderr for p in shared)


_ONE_CALL = textwrap.dedent(
    """
    import asyncio
    from speedrun.config import load_settings
    from speedrun.llm import complete
    print(asyncio.run(complete(load_settings(), "generator", [("user", "hi")])).text, flush=True)
    """
)


@pytest.mark.anyio
async def test_a_429_in_one_process_pauses_the_other(
    tmp_path: Path, fake_llm: FakeLLM, redis_url: str, clean_env: pytest.MonkeyPatch
) -> None:
    env = {**fake_env(fake_llm), "SPEEDRUN_REDIS_URL": redis_url, "SPEEDRUN_HOME": str(tmp_path / "state")}
    fake_llm.script(Reply(status=429, headers={"Retry-After": "3"}), "first, after its pause", "second")
    other = subprocess.Popen(
        [sys.executable, "-c", _ONE_CALL],
        env={"PATH": os.environ.get("PATH", ""), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await asyncio.to_thread(wait_for, lambda: len(fake_llm.chat_requests()) == 1, 30, "the other process's call")
        rate_limited_at = time.monotonic()
        await asyncio.sleep(0.3)  # its 429 has been answered and the pause written
        for name, value in env.items():
            clean_env.setenv(name, value)
        result = await complete(load_settings(), "generator", USER)
        out, err = await asyncio.to_thread(other.communicate, timeout=30)
    finally:
        other.kill()
    assert other.returncode == 0, err
    served = fake_llm.chat_requests()
    assert len(served) == 3
    # This process had never seen a 429, yet it waited out the other's Retry-After before asking.
    assert served[1].started - rate_limited_at >= 2.5
    assert {result.text, out.strip()} == {"first, after its pause", "second"}


_HOLD_A_SLOT = textwrap.dedent(
    """
    import asyncio, sys, time
    import speedrun.budget_redis as shared
    shared.SLOT_LEASE_S = 2.0
    async def main():
        budget = shared.SharedBudget(sys.argv[1], "cerebras|http://x|k", "cerebras")
        taken = await budget.take(10, 1, None, None)
        print("held" if taken.lease else "busy", flush=True)
        await asyncio.sleep(60)
    asyncio.run(main())
    """
)


@pytest.mark.anyio
async def test_a_killed_process_gives_its_slot_back_within_its_lease(redis_url: str) -> None:
    from speedrun.budget_redis import SharedBudget

    holder = subprocess.Popen([sys.executable, "-c", _HOLD_A_SLOT, redis_url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert (await asyncio.to_thread(holder.stdout.readline)).strip() == "held"
        budget = SharedBudget(redis_url, "cerebras|http://x|k", "cerebras")
        assert (await budget.take(10, 1, None, None)).lease is None  # held by a live process: its lease is renewed
        await asyncio.sleep(2.5)
        busy = await budget.take(10, 1, None, None)
        assert busy.lease is None and busy.why == "concurrency 1 across processes, all slots busy"
        holder.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        while (taken := await budget.take(10, 1, None, None)).lease is None:
            assert time.monotonic() - killed_at < 4, "the dead process's slot was never freed"
            await asyncio.sleep(0.1)
        await budget.release(taken.lease)
    finally:
        holder.kill()
        holder.wait()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("case", ["down", "bad scheme", "wrong password"])
def test_redis_down_or_a_bad_url_is_one_clear_error_without_the_password(
    tmp_path: Path, fake_llm: FakeLLM, redis_url: str, case: str
) -> None:
    from tests.helpers import run_cli

    secret = "pw-SECRET-91c3e"
    url = {
        "down": f"redis://:{secret}@127.0.0.1:{_closed_port()}/0",
        "bad scheme": f"http://:{secret}@127.0.0.1:6379/0",
        "wrong password": redis_url.replace(_password(redis_url), secret),
    }[case]
    started = time.monotonic()
    proc = run_cli(
        ["generate", "write calc.py", "--out", "out"], tmp_path, **fake_env(fake_llm), SPEEDRUN_REDIS_URL=url
    )

    assert time.monotonic() - started < 20
    assert proc.returncode == 2, proc.stderr
    masked = url.replace(secret, "***")
    # A bad scheme is refused with the other settings at start; the others when the budget is first used.
    shown = f"SPEEDRUN_REDIS_URL: {masked!r}" if case == "bad scheme" else f"SPEEDRUN_REDIS_URL={masked}"
    assert shown in proc.stderr, proc.stderr
    assert ("leave the variable unset" if case == "bad scheme" else "unset SPEEDRUN_REDIS_URL") in proc.stderr
    assert {"down": "Start Redis", "bad scheme": "not a Redis URL", "wrong password": "refused the password"}[case] in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr and secret not in proc.stdout + proc.stderr
    assert fake_llm.chat_requests() == []  # nothing was sent without the budget's say-so
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.anyio
async def test_without_the_redis_extra_the_error_names_the_install_command(
    fake_llm: FakeLLM, redis_url: str, clean_env: pytest.MonkeyPatch
) -> None:
    for name, value in fake_env(fake_llm).items():
        clean_env.setenv(name, value)
    clean_env.setenv("SPEEDRUN_REDIS_URL", redis_url.rsplit("/", 1)[0] + "/7")  # a budget no other test made
    clean_env.setitem(sys.modules, "redis.asyncio", None)  # what a missing package looks like to import

    with pytest.raises(ConfigError) as caught:
        await complete(load_settings(), "generator", USER)
    assert "uv sync --inexact --extra redis" in str(caught.value)
    assert "pip install 'speed-run[redis]'" in str(caught.value)
    assert fake_llm.chat_requests() == []


@pytest.mark.anyio
async def test_requests_and_tokens_per_minute_are_counted_across_budgets_sharing_a_key(redis_url: str) -> None:
    import uuid

    from speedrun.budget_redis import SharedBudget
    from speedrun.config.providers import ProviderLimits
    from speedrun.llm import BudgetWaitTooLong, RateBudget

    def process(key: str, **limits: int) -> RateBudget:  # what another process builds for the same key
        return RateBudget(ProviderLimits(**limits), "cerebras", SharedBudget(redis_url, key, "cerebras"))

    key = f"cerebras|http://x|{uuid.uuid4().hex[:12]}"
    first, second = process(key, rpm=2, tpm=100_000), process(key, rpm=2, tpm=100_000)
    for _ in range(2):
        await first.finish(await first.acquire(10, max_wait_s=1), 10)
    with pytest.raises(BudgetWaitTooLong) as caught:
        await second.acquire(10, max_wait_s=5)  # its own window is empty; the shared one is full
    assert caught.value.why == "requests/min 2, shared through Redis" and caught.value.wait_s > 50

    key = f"cerebras|http://x|{uuid.uuid4().hex[:12]}"
    first, second = process(key, rpm=100, tpm=1_000), process(key, rpm=100, tpm=1_000)
    # Charged 800 up front, used 300: limits cannot refund, so the 800 stand until the window moves on.
    await first.finish(await first.acquire(800, max_wait_s=1), 300)
    with pytest.raises(BudgetWaitTooLong) as caught:
        await second.acquire(300, max_wait_s=5)
    assert caught.value.why == "tokens/min 1,000, shared through Redis"
    other_key = process(f"cerebras|http://x|{uuid.uuid4().hex[:12]}", rpm=100, tpm=1_000)
    await other_key.finish(await other_key.acquire(300, max_wait_s=1), 300)  # another key has its own budget


_UNDER_BLOCKBUSTER = textwrap.dedent(
    """
    import asyncio, os
    from blockbuster import blockbuster_ctx
    from speedrun.config import load_settings
    from speedrun.llm import complete

    async def main():
        settings = load_settings()
        # The chat client's own first use (SDK imports, HTTP client) is not what this checks: warm it without Redis.
        await complete(settings.model_copy(update={"redis_url": None}), "generator", [("user", "warm up")])
        with blockbuster_ctx():  # what `langgraph dev` runs nodes under: any blocking call raises
            texts = [(await complete(settings, "generator", [("user", "hi")])).text for _ in range(2)]
        print(*texts, flush=True)

    asyncio.run(main())
    os._exit(0)  # blockbuster's patches make the interpreter's own teardown crash; the answer is in by now
    """
)


def test_the_first_use_of_the_redis_budget_does_not_block_the_event_loop(
    tmp_path: Path, fake_llm: FakeLLM, redis_url: str
) -> None:
    # `langgraph dev` stopped a run at the budget's first connection: limits read its Lua scripts from disk and
    # redis-py looked its version up on disk for every connection, both on the event loop.
    pytest.importorskip("blockbuster")
    fake_llm.default = Reply(content="answered")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "SPEEDRUN_HOME": str(tmp_path / "state")}
    proc = subprocess.run(
        [sys.executable, "-c", _UNDER_BLOCKBUSTER],
        env={**env, **fake_env(fake_llm), "SPEEDRUN_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.split() == ["answered", "answered"], proc.stderr[-2000:]
