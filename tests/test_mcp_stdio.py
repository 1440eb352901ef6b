"""`speedrun mcp` driven through a real stdio session with the MCP SDK client, env passed explicitly."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import types

from tests.fake_llm import FakeLLM, Reply
from tests.helpers import CONTRACT_TEXT, PYTEST, TEST_CALC, Transcript, error_text, file_blocks, mcp_session, server_env
from tests.helpers import MCP_KEY as KEY


def assert_no_secret(tmp_path: Path, transcript: Transcript) -> None:
    assert KEY not in transcript.text()
    assert KEY not in (tmp_path / "server-stderr.log").read_text()


# --- tools, generate, check_status ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tools_generate_and_check_status(tmp_path: Path, fake_llm: FakeLLM) -> None:
    env = server_env(tmp_path, fake_llm, SPEEDRUN_LIMITS__CEREBRAS__CONCURRENCY="2")
    async with mcp_session(tmp_path, env) as session:
        t = Transcript(session)

        listed = [tool.name for tool in (await session.list_tools()).tools]
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert listed[:3] == ["generate", "generate_and_write_files", "check_status"]  # the seed's tools first
        assert set(listed[3:]) == {
            "turbo",
            "showdown",
            "any_percent",
            "judge",
            "run_status",
            "resume_run",
            "cancel_run",
            "list_runs",
            "clean",
        }
        for name in ("generate", "generate_and_write_files", "check_status"):
            assert tools[name].description
        gen_props = tools["generate"].input_schema["properties"]
        assert gen_props["prompt"]["description"] and gen_props["max_tokens"]["description"]
        write_props = tools["generate_and_write_files"].input_schema["properties"]
        assert write_props["output_dir"]["description"] and write_props["context_files"]["description"]
        assert tools["generate_and_write_files"].input_schema["required"] == ["prompt", "output_dir"]

        status = (await t.call("check_status")).structured_content
        assert status["status"] == "ok"
        assert status["url"] == fake_llm.base_url and status["model"] == "fake-model"
        assert status["available_models"] == ["fake-model"]

        fake_llm.script(
            Reply(
                content="the generated answer",
                reasoning="HIDDEN-REASONING",
                usage={"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
            )
        )
        result = await t.call("generate", {"prompt": "answer me", "system_prompt": "be terse", "max_tokens": 77})
        assert not result.is_error
        out = result.structured_content
        assert out["status"] == "ok"
        assert out["response"] == "the generated answer"
        assert (out["model"], out["provider"]) == ("fake-model", "cerebras")  # the bare name, as the seed's server
        assert isinstance(out["total_duration_ms"], int) and out["total_duration_ms"] >= 0
        assert out["usage"] == {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
        assert "HIDDEN" not in t.text()
        body = fake_llm.chat_requests()[-1].body
        assert body.get("max_completion_tokens", body.get("max_tokens")) == 77
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert fake_llm.chat_requests()[-1].headers["authorization"] == f"Bearer {KEY}"

        # Six calls at once over one session queue on the shared budget: never more than 2 in flight.
        fake_llm.default = Reply(content="slow", delay=0.3)
        fake_llm.max_in_flight = 0
        results: list[Any] = []

        async def one(i: int) -> None:
            results.append(await t.call("generate", {"prompt": f"call {i}"}))

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(one, i)
        assert [r.structured_content["response"] for r in results] == ["slow"] * 6
        assert fake_llm.max_in_flight == 2

        # A provider failure is a tool error with a clear text, and the server keeps serving.
        fake_llm.script(Reply(status=401, error_message="invalid key"))
        assert "rejected the API key" in error_text(await t.call("generate", {"prompt": "x"}))
        assert "empty" in error_text(await t.call("generate", {"prompt": "   "}))
        fake_llm.script("still alive")
        assert (await t.call("generate", {"prompt": "x"})).structured_content["response"] == "still alive"

        fake_llm.models_status = 401
        status = (await t.call("check_status")).structured_content
        assert status["status"] == "error" and "rejected the API key" in status["error"]
    assert_no_secret(tmp_path, t)


# --- generate_and_write_files ---------------------------------------------------------------------------

APP_V1 = 'def greet(name):\n    return f"hello {name} DISTINCTIVE_CODE_v1"\n'
APP_V2 = 'def greet(name):\n    return f"hi {name} DISTINCTIVE_CODE_v2"\n'
TEST_FILE = "from src.app import greet\n\n\ndef test_greet():\n    assert greet('x')\n"


def reply_for(app: str) -> Reply:
    files = f'<FILE path="src/app.py">\n{app}</FILE>\n<FILE path="tests/test_app.py">\n{TEST_FILE}</FILE>\n'
    return Reply(content=files, chunk_size=24, chunk_delay=0.005)


@pytest.mark.anyio
async def test_generate_and_write_files(tmp_path: Path, fake_llm: FakeLLM) -> None:
    root = tmp_path / "root"
    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
        t = Transcript(session)
        progress: list[tuple[float, str | None]] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, message))

        fake_llm.script(reply_for(APP_V1))
        result = await t.call(
            "generate_and_write_files", {"prompt": "greeter", "output_dir": "proj"}, progress_callback=on_progress
        )
        out = result.structured_content
        assert not result.is_error
        assert out["status"] == "ok"
        assert out["output_dir"] == str(root / "proj")  # relative output_dir resolves under SPEEDRUN_ROOTS
        assert (root / "proj" / "src" / "app.py").read_text() == APP_V1
        assert (root / "proj" / "tests" / "test_app.py").read_text() == TEST_FILE
        assert [(f["path"], f["filename"], f["lines"], f["action"]) for f in out["files_written"]] == [
            ("src/app.py", "app.py", 2, "created"),
            ("tests/test_app.py", "test_app.py", 5, "created"),
        ]
        assert (out["total_files"], out["total_lines"], out["errors"]) == (2, 7, [])
        assert (out["model"], out["provider"]) == ("fake-model", "cerebras")
        assert isinstance(out["generation_time_ms"], int)
        assert out["usage"]["total_tokens"] > 0
        assert "DISTINCTIVE_CODE" not in json.dumps(result.model_dump(mode="json"))  # never the code
        assert [m for _, m in progress] == ["created: src/app.py", "created: tests/test_app.py"]

        # Second pass: app.py changes (backed up), the test file is unchanged.
        fake_llm.script(reply_for(APP_V2))
        out = (
            await t.call("generate_and_write_files", {"prompt": "greeter v2", "output_dir": str(root / "proj")})
        ).structured_content
        app, test = out["files_written"]
        assert (app["action"], test["action"]) == ("modified", "unchanged")
        assert (root / "proj" / "src" / "app.py").read_text() == APP_V2
        assert Path(app["backup"]).read_text() == APP_V1
        assert test["backup"] is None
        assert "DISTINCTIVE_CODE" not in t.text()

        # Refused paths: partial, with the reason; nothing escapes the directory.
        fake_llm.script('<FILE path="../../escape.py">\nX = 1\n</FILE>\n<FILE path="ok.py">\nOK = 1\n</FILE>\n')
        out = (await t.call("generate_and_write_files", {"prompt": "x", "output_dir": "proj"})).structured_content
        assert out["status"] == "partial"
        assert [e["path"] for e in out["errors"]] == ["../../escape.py"]
        assert not (tmp_path / "escape.py").exists()

        # A reply with no files at all: a tool error that says so and quotes the reply's start.
        fake_llm.script("I cannot do that.")
        text = error_text(await t.call("generate_and_write_files", {"prompt": "x", "output_dir": "proj"}))
        assert "no file blocks" in text and "I cannot do that." in text

        # Context files: shown to the model from inside the root, refused from outside it.
        (tmp_path / "secret.txt").write_text("OUTSIDE-SECRET\n")
        fake_llm.script('<FILE path="more.py">\nM = 1\n</FILE>\n')
        out = (
            await t.call(
                "generate_and_write_files", {"prompt": "x", "output_dir": "proj", "context_files": ["src/app.py"]}
            )
        ).structured_content
        assert "DISTINCTIVE_CODE_v2" in fake_llm.chat_requests()[-1].body["messages"][-1]["content"]
        assert out["status"] == "ok"
        n_requests = len(fake_llm.chat_requests())
        text = error_text(
            await t.call(
                "generate_and_write_files",
                {"prompt": "x", "output_dir": "proj", "context_files": [str(tmp_path / "secret.txt")]},
            )
        )
        assert "outside the allowed roots" in text
        assert len(fake_llm.chat_requests()) == n_requests  # refused before any model call

        # An output_dir outside the allowed roots is refused, and the message says how to allow it.
        for outside in [str(tmp_path / "elsewhere"), "../elsewhere"]:
            text = error_text(await t.call("generate_and_write_files", {"prompt": "x", "output_dir": outside}))
            assert "outside the allowed roots" in text and "SPEEDRUN_ROOTS" in text
        assert not (tmp_path / "elsewhere").exists()
        assert len(fake_llm.chat_requests()) == n_requests
    assert "OUTSIDE-SECRET" not in t.text()
    assert_no_secret(tmp_path, t)


@pytest.mark.anyio
async def test_client_roots_take_precedence_over_speedrun_roots(tmp_path: Path, fake_llm: FakeLLM) -> None:
    client_root = tmp_path / "client-project"
    client_root.mkdir()
    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm), client_roots=[client_root]) as session:
        t = Transcript(session)
        # A relative output_dir resolves against the client's root; a missing context file shows where it looked
        # (and stops the call before any model request, which keeps this test cheap).
        text = error_text(
            await t.call("generate_and_write_files", {"prompt": "x", "output_dir": "app", "context_files": ["nope.py"]})
        )
        assert str(client_root / "app" / "nope.py") in text

        # SPEEDRUN_ROOTS is only the fallback: with client roots given, it is not an allowed root.
        text = error_text(
            await t.call("generate_and_write_files", {"prompt": "x", "output_dir": str(tmp_path / "root" / "app")})
        )
        assert "outside the allowed roots" in text and str(client_root) in text
    assert fake_llm.chat_requests() == []
    assert_no_secret(tmp_path, t)


# --- no key ---------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_without_a_key_the_server_starts_and_explains(tmp_path: Path) -> None:
    async with mcp_session(tmp_path, server_env(tmp_path, None)) as session:
        t = Transcript(session)

        status = (await t.call("check_status")).structured_content
        assert status["status"] == "error"
        for needle in ("CEREBRAS_API_KEY", "settings.json", "Ollama"):
            assert needle in status["setup_hint"]
        assert status["available_models"] == []

        text = error_text(await t.call("generate", {"prompt": "hello"}))
        assert "CEREBRAS_API_KEY" in text and "settings.json" in text
        text = error_text(await t.call("generate_and_write_files", {"prompt": "hello", "output_dir": "proj"}))
        assert "CEREBRAS_API_KEY" in text
        assert not (tmp_path / "root" / "proj").exists()
    assert "Traceback" not in (tmp_path / "server-stderr.log").read_text()


# --- start-up: what the server has imported when it answers initialize ----------------------------------

# What only a model call, a graph or a run needs; `speedrun mcp` must answer initialize without any of it.
# (The timing of spawn -> initialize is measured by bench/startup.py.)
HEAVY_PACKAGES = ("langgraph", "langchain_core", "langchain_openai", "openai", "aiosqlite")
HEAVY_MODULES = ("speedrun.llm", "speedrun.runs", "speedrun.graphs")

# `python -m speedrun mcp`, plus a test-side SIGUSR1 handler that writes the process's sys.modules to a file.
MODULE_DUMPING_SERVER = """
import json, runpy, signal, sys
from pathlib import Path

OUT = Path({out!r})


def dump(signum, frame):
    OUT.with_suffix(".tmp").write_text(json.dumps(sorted(sys.modules)))
    OUT.with_suffix(".tmp").replace(OUT)


signal.signal(signal.SIGUSR1, dump)
sys.argv = ["speedrun", "mcp"]
runpy.run_module("speedrun", run_name="__main__", alter_sys=True)
"""


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in HEAVY_PACKAGES or m.startswith(HEAVY_MODULES)]


def _send(proc: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(message).encode() + b"\n")
    proc.stdin.flush()


def _read_reply(proc: subprocess.Popen[bytes], request_id: int, timeout: float) -> dict[str, Any]:
    """The JSON-RPC reply to `request_id` from the server's stdout (newline-delimited JSON)."""
    assert proc.stdout is not None
    deadline, buffer = time.monotonic() + timeout, b""
    while time.monotonic() < deadline:
        if not select.select([proc.stdout], [], [], 0.2)[0]:
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, "the server closed stdout before answering"
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            message = json.loads(line)
            if message.get("id") == request_id:
                return message
    raise AssertionError(f"no reply to request {request_id} within {timeout} s")


def _loaded_modules(proc: subprocess.Popen[bytes], out: Path) -> list[str]:
    out.unlink(missing_ok=True)
    proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not out.exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the server wrote no module list"
        time.sleep(0.05)
    return json.loads(out.read_text())


def test_answering_initialize_imports_no_model_graph_or_run_library(tmp_path: Path, fake_llm: FakeLLM) -> None:
    out, script = tmp_path / "modules.json", tmp_path / "dumping_server.py"
    script.write_text(MODULE_DUMPING_SERVER.format(out=str(out)))
    (tmp_path / "root").mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=server_env(tmp_path, fake_llm),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "server-stderr.log", "wb"),
    )
    try:
        _send(
            proc,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": types.LATEST_PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "import-closure-test", "version": "0"},
                },
            },
        )
        reply = _read_reply(proc, 1, timeout=30)
        assert reply["result"]["serverInfo"]["name"] == "speed-run"
        # No `initialized` notification yet, so the deliberate background warm-up has not started either.
        modules = _loaded_modules(proc, out)
        assert "speedrun.mcp_bridge.server" in modules
        assert _heavy(modules) == []

        # Once initialized, the server warms the gateway's imports on purpose; the dump sees them, so the
        # assertion above would catch a heavy import at start-up.
        _send(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        deadline = time.monotonic() + 30
        while "openai" not in (modules := _loaded_modules(proc, out)):
            assert time.monotonic() < deadline, "the gateway warm-up never ran"
            time.sleep(0.2)
        assert "speedrun.llm" in modules
    finally:
        proc.kill()
        proc.wait(timeout=10)


# --- progress while a tool waits ------------------------------------------------------------------------

HEARTBEAT = 0.5  # seconds; the default (5 s) is what users get, this keeps the test short


@pytest.mark.anyio
async def test_a_quiet_run_still_sends_progress_naming_its_step_and_elapsed_time(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    from speedrun.mcp_bridge.progress import HEARTBEAT_S

    assert 0 < HEARTBEAT_S <= 10  # what every client gets without the test's setting
    calc = "def add(a, b):\n    return a + b\n"
    fake_llm.script(Reply(content=file_blocks({"calc.py": calc, "test_calc.py": TEST_CALC}), delay=4))
    env = server_env(tmp_path, fake_llm, SPEEDRUN_MCP_HEARTBEAT=str(HEARTBEAT))
    seen: list[tuple[float, float, str]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((time.monotonic(), done, message or ""))

    with anyio.fail_after(90):
        async with mcp_session(tmp_path, env) as session:
            args = {"contract": CONTRACT_TEXT, "output_dir": "ws", "test_command": PYTEST, "wait_seconds": 0}
            started = (await session.call_tool("turbo", args)).structured_content
            assert started["status"] == "running"
            await anyio.sleep(1)  # the run is now inside the 4 s model call, and silent
            begun = time.monotonic()
            status = await session.call_tool(
                "run_status", {"run_id": started["run_id"], "wait_seconds": 30}, progress_callback=on_progress
            )
            ended = time.monotonic()
    assert status.structured_content["status"] == "passed", status
    beats = [(at, message) for at, _, message in seen if message.startswith("still running")]
    assert len(beats) >= 3, seen
    # Never quiet for much longer than the interval while the model was thinking.
    times = [begun] + [at for at, _, _ in seen]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < HEARTBEAT + 1.0, seen
    assert [done for _, done, _ in seen] == sorted({done for _, done, _ in seen})  # strictly rising
    # A heartbeat names the step the run reached before this call began waiting, and how long the run has run.
    assert beats[0][1].startswith("still running (") and "): generate: " in beats[0][1], beats
    assert all(re.search(r"^still running \(\d+ s\): [a-z_]+: ", m) for _, m in beats), beats
    first, last = (int(re.search(r"\((\d+) s\)", m)[1]) for m in (beats[0][1], beats[-1][1]))  # type: ignore[index]
    assert first >= 1 and last > first
    assert any(m.startswith("run_tests:") for _, _, m in seen)  # the run's own lines still come through
    assert ended - begun < 20


def test_a_heartbeat_setting_outside_zero_to_ten_seconds_is_refused(tmp_path: Path) -> None:
    env = server_env(tmp_path, None, SPEEDRUN_MCP_HEARTBEAT="30")
    proc = subprocess.run(
        [sys.executable, "-m", "speedrun", "mcp"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2
    assert "SPEEDRUN_MCP_HEARTBEAT='30'" in proc.stderr and "(0, 10]" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.anyio
async def test_a_slow_generation_sends_heartbeats_then_its_file_lines(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(Reply(content=file_blocks({"a.py": "A = 1\n", "b.py": "B = 2\n"}), delay=2.5))
    env = server_env(tmp_path, fake_llm, SPEEDRUN_MCP_HEARTBEAT=str(HEARTBEAT))
    seen: list[tuple[float, str]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, message or ""))

    with anyio.fail_after(60):
        async with mcp_session(tmp_path, env) as session:
            result = await session.call_tool(
                "generate_and_write_files", {"prompt": "two files", "output_dir": "p"}, progress_callback=on_progress
            )
    assert not result.is_error and result.structured_content["total_files"] == 2
    messages = [m for _, m in seen]
    beats = [m for m in messages if m.startswith("generating (")]
    assert len(beats) >= 3 and re.fullmatch(r"generating \(\d+ s\)", beats[0]), messages
    assert messages[-2:] == ["created: a.py", "created: b.py"]
    assert [done for done, _ in seen] == list(range(1, len(seen) + 1))  # one rising count for beats and lines
