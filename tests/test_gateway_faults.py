"""Slow and dead endpoints as a user of `speedrun turbo` sees them: a stalled stream, a closed port, a fallback."""

from __future__ import annotations

import json
import re
import shlex
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.fake_llm import FakeLLM, Reply
from tests.helpers import CONTRACT_TEXT, FIXED_CALC, TEST_CALC, fake_env, file_blocks, run_cli

# The generated code's check, without a pytest start: these tests are about the model calls.
CHECK_CALC = f"{shlex.quote(sys.executable)} -S -c 'from calc import add; assert add(2, 3) == 5'"
REPLY = file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC})


def _turbo(tmp_path: Path, **env: str) -> tuple[float, str, str, int]:
    (tmp_path / "contract.txt").write_text(CONTRACT_TEXT)
    started = time.monotonic()
    proc = run_cli(["turbo", "--contract", "contract.txt", "--out", "ws", "--test-cmd", CHECK_CALC], tmp_path, **env)
    return time.monotonic() - started, proc.stdout, proc.stderr, proc.returncode


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("stall", ["before any text", "mid-stream"])
def test_a_stream_stalling_past_generation_timeout_ends_the_run_with_a_timeout_error(
    tmp_path: Path, fake_llm: FakeLLM, stall: str
) -> None:
    if stall == "mid-stream":
        # calc.py's closing tag and the first bytes of test_calc.py arrive, then the stream runs past the 2 s limit.
        first = REPLY.index("</FILE>") + len("</FILE>\n") + 12
        fake_llm.default = Reply(content=REPLY, chunk_size=first, chunk_delay=1.4)
    else:  # the response starts, then nothing for longer than the limit
        fake_llm.default = Reply(content=REPLY, chunk_delay=6)

    took, out, err, code = _turbo(tmp_path, **fake_env(fake_llm), GENERATION_TIMEOUT="2000")

    assert code == 1, err
    ended = re.search(r"^run (\S+) is error: (.*)$", err, re.M)
    assert ended, err
    assert "did not answer within GENERATION_TIMEOUT=2000 ms (1 request (0 retries))" in ended.group(2)
    if stall == "mid-stream":
        assert "broke off mid-stream" in ended.group(2)
    # One attempt: a retry would splice two replies (mid-stream) or spend the limit again (a stalled endpoint).
    assert len(fake_llm.chat_requests()) == 1
    # Nothing half-written: no test_calc.py cut after its first bytes, no temp file; calc.py whole if there at all.
    ws = tmp_path / "ws"
    assert not (ws / "test_calc.py").exists()
    assert {p.name for p in ws.iterdir()} <= {"calc.py"} if ws.exists() else True
    if (ws / "calc.py").exists():
        assert (ws / "calc.py").read_text() == FIXED_CALC
    # The run records it: the list of runs says error.
    listed = run_cli(["runs"], tmp_path, **fake_env(fake_llm))
    assert re.search(rf"^{re.escape(ended.group(1))}\s+error\s", listed.stdout, re.M), listed.stdout


def test_a_refused_connection_says_it_is_retrying_and_ends_within_generation_timeout(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    secret = "pw-SECRET-4417"
    url = f"http://user:{secret}@127.0.0.1:{_closed_port()}/v1"
    masked = url.replace(secret, "***")
    env = {**fake_env(fake_llm), "CEREBRAS_URL": url, "GENERATION_TIMEOUT": "3000"}

    took, out, err, code = _turbo(tmp_path, **env)

    assert code == 1, err
    # Said while it happens (the CLI's line for budget waits), not only at the end.
    notes = re.findall(r"waiting: cerebras: connection refused by (\S+); retry (\d) of 4 in [\d.]+ m?s\.", err)
    assert notes and notes[0] == (masked, "1"), err
    final = re.search(r"^run \S+ is error: (.*)$", err, re.M)
    assert final and f"Could not connect to cerebras:fake-model at {masked}: connection refused" in final.group(1), err
    assert f"({len(notes) + 1} requests ({len(notes)} retries))" in final.group(1)
    # The retries' backoff shares the 3 s GENERATION_TIMEOUT: 4 retries would have taken 0.5+1+2+4 s.
    assert len(notes) < 4
    assert took < 3 + 12  # 3 s of retries plus the CLI's start and its run bookkeeping on a busy machine
    assert secret not in out + err
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").iterdir())


def test_a_configured_fallback_takes_over_when_the_primary_keeps_failing(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.default = Reply(status=500, headers={"retry-after-ms": "10"}, error_message="upstream exploded")
    with FakeLLM() as backup:
        backup.default = Reply(
            content=file_blocks({"calc.py": "# from the fallback\n" + FIXED_CALC, "test_calc.py": TEST_CALC})
        )
        env = {
            **fake_env(fake_llm),
            "SPEEDRUN_MAX_RETRIES": "2",
            "SPEEDRUN_GENERATOR_FALLBACK": "openai-compatible:backup-model",
            "SPEEDRUN_OPENAI_COMPATIBLE_URL": backup.base_url,
        }
        took, out, err, code = _turbo(tmp_path, **env)

        assert code == 0, err
        assert (tmp_path / "ws" / "calc.py").read_text() == "# from the fallback\n" + FIXED_CALC
        assert len(fake_llm.chat_requests()) == 3  # the first try and its 2 retries
        [request] = backup.chat_requests()
        assert request.body["model"] == "backup-model"
    assert re.search(r"waiting: cerebras: HTTP 500 from \S+; retry 2 of 2 in \d+ ms\.", err), err
    assert (
        "waiting: cerebras:fake-model failed (HTTP 500 from "
        f"{fake_llm.base_url}); its fallback openai-compatible:backup-model (SPEEDRUN_GENERATOR_FALLBACK) answers "
        "instead." in err
    ), err
    report = json.loads(Path(re.search(r"^report: (.*)$", out, re.M).group(1)).read_text())  # type: ignore[union-attr]
    assert report["status"] == "passed" and report["ledger"]["generator"]["calls"] == 1
    # The result says so too, not only the progress lines.
    assert (
        "the generator's fallback openai-compatible:backup-model answered 1 call: its primary provider kept failing"
        in (report["warnings"])
    ), report["warnings"]
