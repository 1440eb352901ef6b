"""Redaction: a key printed by a test or echoed by a model, and credentials in URLs, never leave speed-run; and
SPEEDRUN_HOME stays private (0700) and apart from every workspace."""

from __future__ import annotations

import itertools
import json
import socket
import stat
import sys
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mcp import ClientSession, stdio_client

from speedrun.config import Settings, StreamRedactor, load_settings, mask_url_credentials
from speedrun.errors import ConfigError
from speedrun.llm import complete, structured
from speedrun.sandbox import _bwrap_works
from tests.fake_llm import FakeLLM, Reply
from tests.helpers import (
    CONTRACT_TEXT,
    MCP_KEY,
    PYTEST,
    Caller,
    Transcript,
    error_text,
    file_blocks,
    fix_reply,
    mcp_session,
    role_of,
    run_cli,
    server_env,
    server_params,
)

BWRAP_OK, BWRAP_WHY = _bwrap_works()
MODES = [
    "none",
    pytest.param("bwrap", marks=pytest.mark.skipif(not BWRAP_OK, reason=f"bwrap unavailable: {BWRAP_WHY}")),
]
ENV_KEY = "sk-test-not-a-real-key"  # CEREBRAS_API_KEY of the speedrun_env fixture


def echo_authorization(fake: FakeLLM, template: str = "{}", **reply: object):
    """A responder that puts the Authorization header it received into its answer, like a misbehaving proxy."""

    def respond(body: dict) -> Reply:
        received = fake.chat_requests()[-1].headers.get("authorization", "")  # recorded before the reply is made
        return Reply(content=template.format(received), **reply)

    return respond


# --- credentials in URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://user:pass@host/v1", "https://user:***@host/v1"),
        (
            "postgres://app:s3cr3t@db.internal:5432/prod?sslmode=require",
            "postgres://app:***@db.internal:5432/prod?sslmode=require",
        ),
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),  # a password without a user name
        (
            "https://x-access-token:ghs_16C7e42F292c6912E7710c838347Ae178B4a@github.com/o/r.git",
            "https://x-access-token:***@github.com/o/r.git",
        ),
        (
            "https://__token__:pypi-AgEIcHlwaS5vcmc@upload.pypi.org/legacy/",
            "https://__token__:***@upload.pypi.org/legacy/",
        ),
        ("https://u:p@ss@host/v1", "https://u:***@host/v1"),  # an unencoded @ in the password: the last @ ends it
        (
            "Could not reach 'http://a:b%40c@127.0.0.1:1/v1': ConnectError",
            "Could not reach 'http://a:***@127.0.0.1:1/v1': ConnectError",
        ),
        (
            "two: amqp://guest:guest@mq:5672/ and http://me:pw@proxy:3128",
            "two: amqp://guest:***@mq:5672/ and http://me:***@proxy:3128",
        ),
        # An unencoded / as well as @ in the password (found by an outside trial: the tail used to show).
        (
            "at 'postgresql://speedrun:p@ss/w0rd@127.0.0.1:5432/db': refused",
            "at 'postgresql://speedrun:***@127.0.0.1:5432/db': refused",
        ),
        # The password as a query parameter, as libpq and redis-py accept it.
        (
            "postgresql://127.0.0.1:55432/speedrun?user=speedrun&password=QueryPw-9 failed",
            "postgresql://127.0.0.1:55432/speedrun?user=speedrun&password=*** failed",
        ),
        ("redis://127.0.0.1:56379/1?password=QueryRedisPw-1", "redis://127.0.0.1:56379/1?password=***"),
        ("redis://h/0?db=1&PassWd=x1;other", "redis://h/0?db=1&PassWd=***;other"),
        # Left as they are: no password in them, or the placeholder that docs and hints write.
        ("postgresql://USER:PASSWORD@HOST:5432/DB", "postgresql://USER:PASSWORD@HOST:5432/DB"),
        ("http://localhost:8080/v1", "http://localhost:8080/v1"),
        ("ssh://git@github.com/o/r.git", "ssh://git@github.com/o/r.git"),
        ("mailto:someone@example.com; ratio 3:4@home", "mailto:someone@example.com; ratio 3:4@home"),
    ],
)
def test_credentials_in_urls_are_masked(text: str, shown: str) -> None:
    assert mask_url_credentials(text) == shown
    assert Settings.model_construct(cerebras_url="https://api.cerebras.ai/v1").redact(text) == shown


def test_errors_never_show_the_password_of_a_url(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """A 401 from the endpoint, then an endpoint that does not answer: the message names the URL, not its password."""
    password = "pa55-word-in-url"
    host = fake_llm.base_url.split("://", 1)[1]
    fake_llm.script(Reply(status=401, error_message="bad key"))
    env = {
        "CEREBRAS_API_KEY": "csk-redaction-key-0001",
        "CEREBRAS_MODEL": "fake-model",
        "CEREBRAS_URL": f"http://proxyuser:{password}@{host}",
    }
    rejected = run_cli(["generate", "write hello.py", "--out", "out"], tmp_path, **env)
    assert rejected.returncode != 0
    assert f"http://proxyuser:***@{host}" in rejected.stderr and "401" in rejected.stderr
    assert password not in rejected.stdout + rejected.stderr

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env["CEREBRAS_URL"] = f"http://proxyuser:{password}@127.0.0.1:{port}/v1"
    unreachable = run_cli(["generate", "write hello.py", "--out", "out"], tmp_path, **env, SPEEDRUN_MAX_RETRIES="0")
    assert unreachable.returncode != 0 and "Could not connect" in unreachable.stderr
    assert "proxyuser:***@127.0.0.1" in unreachable.stderr
    assert password not in unreachable.stdout + unreachable.stderr


@pytest.mark.parametrize("models_status", [200, 401])
def test_check_shows_the_endpoint_without_its_password(tmp_path: Path, fake_llm: FakeLLM, models_status: int) -> None:
    host = fake_llm.base_url.split("://", 1)[1]
    fake_llm.models_status = models_status
    proc = run_cli(
        ["check"],
        tmp_path,
        CEREBRAS_API_KEY="csk-redaction-key-0001",
        CEREBRAS_MODEL="fake-model",
        CEREBRAS_URL=f"http://proxyuser:pa55-word-in-url@{host}",
    )
    assert proc.returncode == (0 if models_status == 200 else 1), proc.stderr
    assert f"endpoint  http://proxyuser:***@{host}" in proc.stdout
    assert "pa55-word-in-url" not in proc.stdout + proc.stderr


# --- model replies --------------------------------------------------------------------------------------------


@given(
    text=st.text(alphabet="abK-ey*\n", max_size=60),
    cuts=st.lists(st.integers(0, 80), max_size=8),
    secrets=st.lists(st.sampled_from(["Key-abab-Key", "bKey-abab", "eeeeeeee"]), min_size=0, max_size=3),
)
def test_stream_redactor_matches_redacting_the_whole_text(text: str, cuts: list[int], secrets: list[str]) -> None:
    """However a reply is cut into pieces, the pieces passed on add up to the whole reply redacted at once."""
    whole = text + "".join(secrets) + text
    expected = whole
    for secret in sorted(set(secrets), key=len, reverse=True):
        expected = expected.replace(secret, "***")
    redactor = StreamRedactor(secrets)
    bounds = sorted({min(c, len(whole)) for c in cuts} | {0, len(whole)})
    out = "".join(redactor.feed(whole[a:b]) for a, b in itertools.pairwise(bounds)) + redactor.flush()
    if len(set(secrets)) <= 1:  # with overlapping secrets, which one wins may depend on the cut; none may leak
        assert out == expected
    for secret in secrets:
        assert secret not in out


@pytest.mark.anyio
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 50])
async def test_gateway_never_passes_an_echoed_key_on(
    clean_env: pytest.MonkeyPatch, fake_llm: FakeLLM, chunk_size: int
) -> None:
    """Streamed (the key split over pieces), non-streamed and structured answers alike."""
    key = "csk-echoed-0123456789abcdef"
    clean_env.setenv("CEREBRAS_API_KEY", key)
    clean_env.setenv("CEREBRAS_URL", fake_llm.base_url)
    clean_env.setenv("CEREBRAS_MODEL", "fake-model")
    settings = Settings()
    fake_llm.responder = echo_authorization(fake_llm, "proxy saw: {} (end)", chunk_size=chunk_size)

    pieces: list[str] = []

    async def on_text(piece: str) -> None:
        pieces.append(piece)

    streamed = await complete(settings, "generator", [("user", "hi")], on_text=on_text)
    assert streamed.text == "proxy saw: Bearer *** (end)"
    assert "".join(pieces) == streamed.text
    assert key not in "".join(pieces)

    plain = await complete(settings, "generator", [("user", "hi")])
    assert plain.text == "proxy saw: Bearer *** (end)"

    from pydantic import BaseModel

    class Note(BaseModel):
        note: str

    fake_llm.responder = echo_authorization(fake_llm, '{{"note": "header was {}"}}')
    answer, ledger = await structured(settings, "fixer", Note, [("user", "hi")])
    assert answer.note == "header was Bearer ***"
    assert key not in repr(ledger)


@pytest.mark.anyio
async def test_echoed_key_reaches_neither_generate_nor_written_files(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """Over a real MCP session: `generate`'s response, and a file written from a streamed reply that splits the
    key over several chunks."""
    with anyio.fail_after(60):
        async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
            t = Transcript(session)
            fake_llm.responder = echo_authorization(fake_llm, "Your request carried `{}`.")
            out = (await t.call("generate", {"prompt": "what header did I send?"})).structured_content
            assert out["response"] == "Your request carried `Bearer ***`."

            fake_llm.responder = echo_authorization(
                fake_llm, '<FILE path="config.py">\nAUTH = "{}"\n</FILE>\n', chunk_size=4
            )
            written = await t.call("generate_and_write_files", {"prompt": "write config.py", "output_dir": "app"})
            assert not written.is_error, error_text(written) if written.is_error else ""
            assert written.structured_content["status"] == "ok"
            assert (tmp_path / "root" / "app" / "config.py").read_text() == 'AUTH = "Bearer ***"\n'
    assert MCP_KEY in fake_llm.chat_requests()[-1].headers["authorization"]  # the key really was echoed
    assert MCP_KEY not in t.text()
    assert MCP_KEY not in (tmp_path / "server-stderr.log").read_text()


# --- what tests print ---------------------------------------------------------------------------------------

LEAKY_TEST = """\
from calc import add


def test_add():
    key = open("secret.txt").read().strip()  # a key the test got hold of
    print("KEY=" + key)
    assert add(2, 3) == 5, "leaked " + key
"""
BUGGY = "def add(a, b):\n    return a - b\n"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_key_printed_by_a_test_reaches_no_result_checkpoint_prompt_or_report(
    speedrun_env: dict[str, str], fake_llm: FakeLLM, tmp_path: Path, mode: str
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "secret.txt").write_text(ENV_KEY + "\n")
    fake_llm.script(
        file_blocks({"calc.py": BUGGY, "test_calc.py": LEAKY_TEST}),
        fix_reply(("calc.py", "def add(a, b):\n", "def add(a, b):\n    # not it\n")),
    )
    env = {**speedrun_env, "SPEEDRUN_SANDBOX": mode}
    with anyio.fail_after(90):
        async with stdio_client(server_params(env, tmp_path)) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            caller = Caller(s)
            done = await caller.call(
                "turbo",
                output_dir=str(ws),
                contract=CONTRACT_TEXT,
                test_command=PYTEST,
                max_fix_cycles=1,
                wait_seconds=60,
            )
            status = await caller.call("run_status", run_id=done["run_id"])
    assert done["status"] == "failed", done

    fixer = [r for r in fake_llm.chat_requests() if role_of(r) == "fixer"]
    assert len(fixer) == 1
    prompt = json.dumps(fixer[0].body)
    assert "leaked ***" in prompt  # the test's failure reached the fixer, redacted
    report = Path(done["report_path"]).read_text()
    assert "KEY=***" in report and "leaked ***" in report  # its output and its failure, redacted
    home = Path(speedrun_env["SPEEDRUN_HOME"])
    stored = b"".join(p.read_bytes() for p in home.glob("runs.sqlite*"))
    assert b"leaked ***" in stored  # the checkpoint holds the report, redacted

    for place, text in [
        ("tool results", "".join(caller.texts) + json.dumps(status)),
        ("progress", "\n".join(caller.progress)),
        ("fixer prompt", prompt),
        ("report.json", report),
        ("every request body", b"".join(r.raw_body for r in fake_llm.chat_requests()).decode()),
    ]:
        assert ENV_KEY not in text, place
    assert ENV_KEY.encode() not in stored


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_judge_measurement_redacts_what_tests_print(
    speedrun_env: dict[str, str], tmp_path: Path, mode: str, clean_env: pytest.MonkeyPatch
) -> None:
    """The judge's measure node runs tests too: its report goes through the same redaction."""
    from types import SimpleNamespace

    from speedrun.config import RunContext
    from speedrun.nodes.measure import measure
    from speedrun.state.judge import MeasureTask

    impl = tmp_path / "impl"
    impl.mkdir()
    (impl / "secret.txt").write_text(ENV_KEY)
    (impl / "calc.py").write_text(BUGGY)
    (impl / "test_calc.py").write_text(LEAKY_TEST)
    clean_env.setenv("SPEEDRUN_SANDBOX", mode)
    task = MeasureTask.model_validate({"impl": {"name": "a", "path": str(impl), "test_command": PYTEST}})
    out = await measure(task, SimpleNamespace(context=RunContext(Settings()), stream_writer=None))
    [m] = out["measurements"]
    text = m.model_dump_json()
    assert m.tests is not None and m.tests.failed == 1
    assert "leaked ***" in text and ENV_KEY not in text


def key_fragments(key: str, size: int = 8) -> list[str]:
    return [key[i : i + size] for i in range(len(key) - size + 1)]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_key_cut_in_two_by_the_output_caps_is_masked_too(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, mode: str
) -> None:
    """Output is capped before it is redacted: the part of a key left at a cut (the tail's first line, a trimmed
    failure message's end) must not survive because it no longer matches the whole key."""
    from types import SimpleNamespace

    from speedrun.config import RunContext
    from speedrun.nodes.run_tests import run_test_command

    key = "csk-cut-in-two-0123456789abcdefghij"
    clean_env.setenv("CEREBRAS_API_KEY", key)
    clean_env.setenv("SPEEDRUN_SANDBOX", mode)
    runtime = SimpleNamespace(context=RunContext(Settings()), stream_writer=None)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "secret.txt").write_text(key)
    # One failing test per padding, so some trimmed message (1,500 characters) ends inside the key.
    tests = "".join(
        f"def test_pad_{n}():\n    assert False, 'x' * {n} + open('secret.txt').read()\n\n\n"
        for n in range(1440, 1500, 3)
    )
    (ws / "test_cut.py").write_text(tests)
    report = await run_test_command(PYTEST, ws, runtime, max_failures=40)
    assert report.failed == 20 and any(f.message.endswith("[trimmed]") for f in report.failures)
    # And the output tail's first line starting inside the key, for a range of cut points.
    for pad in range(0, 40, 4):
        command = f"{sys.executable} -c \"print('A' * 300 + open('secret.txt').read() + 'B' * {120 + pad})\""
        cut = await run_test_command(command, ws, runtime, output_cap=200)
        text = cut.model_dump_json() + report.model_dump_json()
        assert not [f for f in key_fragments(key) if f in text], (pad, text[:400])


# --- SPEEDRUN_HOME --------------------------------------------------------------------------------------------


def test_speedrun_home_is_created_private_and_a_loose_one_is_tightened(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh" / "state"
    proc = run_cli(["runs"], tmp_path, SPEEDRUN_HOME=str(fresh))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert (fresh / "runs.sqlite").exists()

    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o755)
    proc = run_cli(["runs"], tmp_path, SPEEDRUN_HOME=str(loose))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


@pytest.mark.anyio
async def test_a_workspace_that_holds_or_lies_in_speedrun_home_is_refused(tmp_path: Path, fake_llm: FakeLLM) -> None:
    root = tmp_path / "root"
    home = root / "proj" / ".state"  # SPEEDRUN_HOME inside a project the caller may write to
    env = server_env(tmp_path, fake_llm, SPEEDRUN_HOME=str(home))
    with anyio.fail_after(60):
        async with mcp_session(tmp_path, env) as session:
            t = Transcript(session)
            holds = await t.call("turbo", {"task": "add two numbers", "output_dir": "proj", "test_command": "true"})
            inside = await t.call("generate_and_write_files", {"prompt": "x", "output_dir": "proj/.state/runs"})
    for result, where in [(holds, "contains"), (inside, "lies inside")]:
        message = error_text(result)
        assert f"{where} speed-run's state directory (SPEEDRUN_HOME=" in message, message
        assert "outside" in message
    assert fake_llm.chat_requests() == []  # refused before any model call
    assert not (home / "runs").exists()

    cli = run_cli(
        ["generate", "write hello.py", "--out", "."],
        tmp_path,
        CEREBRAS_API_KEY="csk-redaction-key-0001",
        CEREBRAS_URL=fake_llm.base_url,
        CEREBRAS_MODEL="fake-model",
    )  # run_cli's SPEEDRUN_HOME is ./state
    assert cli.returncode != 0
    assert "contains speed-run's state directory" in cli.stderr and "Traceback" not in cli.stderr
    assert fake_llm.chat_requests() == []


@pytest.mark.parametrize(
    ("variable", "url", "password"),
    [
        ("SPEEDRUN_REDIS_URL", "redis://127.0.0.1:56379/1?password=QueryRedisPw-1", "QueryRedisPw-1"),
        ("SPEEDRUN_DATABASE_URL", "postgresql://h:5432/db?user=u&password=QueryPw-9", "QueryPw-9"),
        ("SPEEDRUN_DATABASE_URL", "postgresql://u:Sec%40ret-77@h:5432/db", "Sec@ret-77"),
    ],
)
def test_a_shared_service_password_is_a_secret_wherever_it_appears(
    clean_env: pytest.MonkeyPatch, variable: str, url: str, password: str
) -> None:
    clean_env.setenv(variable, url)
    settings = Settings()
    assert password in settings.secrets()
    # Masked even where it appears without its URL (a server quoting it back, a traceback).
    assert password not in settings.redact(f"auth failed for {password!r}")


@pytest.mark.parametrize(
    ("variable", "url", "said"),
    [
        ("SPEEDRUN_DATABASE_URL", "mysql://u:TopSecret-1@h/db", "'mysql://u:***@h/db' is not a PostgreSQL URL"),
        ("SPEEDRUN_REDIS_URL", "http://:TopSecret-1@h:6379/0", "'http://:***@h:6379/0' is not a Redis URL"),
        ("SPEEDRUN_DATABASE_URL", "postgresql://u:p@ss/TopSecret-1@h/db", "holds @, /, ? or # unencoded"),
    ],
)
def test_a_bad_shared_service_url_stops_the_cli_at_start_without_its_password(
    tmp_path: Path, variable: str, url: str, said: str
) -> None:
    done = run_cli(["runs"], tmp_path, **{variable: url})
    assert done.returncode == 2, done.stderr
    assert f"Invalid speed-run settings: {variable}: " in done.stderr and said in done.stderr, done.stderr
    assert "TopSecret-1" not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_an_empty_shared_service_url_means_unset(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SPEEDRUN_DATABASE_URL", "")
    clean_env.setenv("SPEEDRUN_REDIS_URL", "  ")
    settings = Settings()
    assert settings.database_url is None and settings.redis_url is None


def test_a_shared_service_without_its_extra_names_the_install_command(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    clean_env.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "limits" else real(name, *a))
    clean_env.setenv("SPEEDRUN_REDIS_URL", "redis://:pw-123456@127.0.0.1:6379/0")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    said = str(refused.value)
    assert "SPEEDRUN_REDIS_URL: the redis extra is not installed: `uv sync --inexact --extra redis`" in said, said
    assert "pw-123456" not in said
