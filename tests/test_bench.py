"""The benchmarks' plumbing: the one command, its verdicts, the scripted server's send times, the default budget."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from speedrun.config import Settings
from speedrun.state.parallel import MAX_RUNNERS
from tests.fake_llm import FakeLLM, Reply

ROOT = Path(__file__).resolve().parents[1]


def test_bench_help_lists_every_benchmark() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    for name in ("startup", "overhead", "sustained", "streaming", "parallel", "turbo", "memory"):
        assert f"  {name} " in out.stdout


def test_bench_refuses_an_unknown_name_and_says_which_exist() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "startpu"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "unknown benchmark startpu" in out.stderr and "startup" in out.stderr


def test_a_miss_is_said_in_its_line_and_in_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import table
    from bench.common import Result, emit, parse_results

    emit(Result(name="startup", title="start-up", measured="1.30x", target="<= 1.15x", ok=False, note="why"))
    emit(Result(name="memory", title="RSS", measured="80 MB", target="—", ok=None))
    printed = capsys.readouterr().out
    assert "start-up: 1.30x (target <= 1.15x) MISS" in printed
    rows = table(parse_results(printed), quick=False).splitlines()
    assert "| start-up | 1.30x | <= 1.15x | MISS — why | `uv run python -m bench startup` |" in rows
    assert "| RSS | 80 MB | — | reading | `uv run python -m bench memory` |" in rows


def test_scripted_server_records_when_each_streamed_piece_left() -> None:
    text = '<FILE path="a.py">\nx = 1\n</FILE>\n<FILE path="b.py">\ny = 2\n</FILE>\n'
    with FakeLLM() as fake:
        fake.default = Reply(content=text, chunk_size=7, chunk_delay=0.01)
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "go"}]}
        with httpx.stream("POST", fake.base_url + "/chat/completions", json=body, timeout=10) as response:
            arrived = [line for line in response.iter_lines() if line.startswith("data: {")]
        (rec,) = fake.chat_requests()
    assert "".join(piece for _, piece in rec.sent) == text
    times = [t for t, _ in rec.sent]
    assert times == sorted(times) and rec.started <= times[0] and times[-1] <= (rec.finished or 0)
    assert times[-1] - times[0] >= 0.01 * (len(times) - 1) * 0.9  # one write per piece, chunk_delay apart
    assert len(arrived) >= len(rec.sent)

    from bench.streaming import tag_times

    first, second = tag_times(rec)
    assert first < second and first in times and second == times[-1]


def test_cerebras_default_lets_the_largest_showdown_generate_at_once(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CEREBRAS_API_KEY", "csk-test-not-a-key")
    limits = Settings().role("generator").primary.limits
    assert limits.concurrency >= MAX_RUNNERS
    assert (limits.rpm, limits.tpm) == (30, 60_000)  # the per-minute quota is unchanged
