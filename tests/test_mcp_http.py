"""`speedrun mcp --http` as a remote client meets it: a server subprocess on a free port, the SDK's HTTP client."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

from tests.fake_llm import FakeLLM
from tests.helpers import MCP_KEY, error_text, server_env

TOKEN = "team-token-0123456789-abcdef"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "curl", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def http_server(tmp_path: Path, env: dict[str, str], *args: str) -> Iterator[str]:
    """`speedrun mcp --http` as a subprocess on a free loopback port; yields its /mcp URL; stopped by its PID."""
    port = free_port()
    (tmp_path / "root").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "speedrun", "mcp", "--http", "--port", str(port), *args]
    with open(tmp_path / "server-stderr.log", "ab") as errlog:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=errlog, stderr=errlog)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "server-stderr.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the HTTP server did not start listening in 30 s"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def http_session(url: str, token: str | None, **session_kw: Any) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write, **session_kw) as session,
    ):
        await session.initialize()
        yield session


async def post(url: str, headers: dict[str, str]) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=10) as client:
        return await client.post(url, headers={**MCP_HEADERS, **headers}, content=json.dumps(INIT))


@pytest.mark.anyio
async def test_with_a_token_tools_answer_only_with_it_and_host_origin_and_roots_are_enforced(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    outside = tmp_path / "outside"
    env = server_env(tmp_path, fake_llm, SPEEDRUN_MCP_TOKEN=TOKEN)
    with http_server(tmp_path, env) as url, anyio.fail_after(90):
        port = url.split(":")[2].split("/")[0]

        # No token, a wrong one, another scheme: 401 with a Bearer challenge, before any MCP handling.
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}):
            answer = await post(url, headers)
            assert answer.status_code == 401, answer.text
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in answer.text
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert (await post(url, auth)).status_code == 200
        # DNS rebinding: a page on another name that resolves here sends its own Host and Origin.
        assert (await post(url, {**auth, "Host": f"evil.example:{port}"})).status_code == 421
        assert (await post(url, {**auth, "Origin": "http://evil.example"})).status_code == 403
        assert (await post(url, {**auth, "Origin": f"http://localhost:{port}"})).status_code == 200

        async def client_roots(context: Any) -> types.ListRootsResult:  # a client claiming a root outside ours
            return types.ListRootsResult(roots=[types.Root(uri=outside.as_uri())])

        async with http_session(url, TOKEN, list_roots_callback=client_roots) as session:
            names = [t.name for t in (await session.list_tools()).tools]
            assert names[:3] == ["generate", "generate_and_write_files", "check_status"] and "turbo" in names
            status = await session.call_tool("check_status", {})
            assert not status.is_error and status.structured_content["status"] == "ok"
            assert status.structured_content["model"] == "fake-model"

            refused = await session.call_tool(
                "generate_and_write_files", {"prompt": "write a greeter", "output_dir": str(outside / "proj")}
            )
            assert "outside the allowed roots" in error_text(refused) and "SPEEDRUN_ROOTS" in error_text(refused)
            written = await session.call_tool(
                "generate_and_write_files", {"prompt": "write a greeter", "output_dir": "../outside/proj"}
            )
            assert "outside the allowed roots" in error_text(written)
    assert not outside.exists()  # nothing was written there
    assert [r.path for r in fake_llm.chat_requests()] == []  # refused before the model was asked
    log = (tmp_path / "server-stderr.log").read_text()
    assert TOKEN not in log and MCP_KEY not in log


@pytest.mark.anyio
async def test_on_loopback_without_a_token_it_serves_and_writes_inside_the_roots(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script('<FILE path="hello.py">\nprint("hi")\n</FILE>\n')
    env = server_env(tmp_path, fake_llm, SPEEDRUN_MCP_ALLOWED_HOSTS="speedrun.internal")
    with http_server(tmp_path, env) as url, anyio.fail_after(90):
        port = url.split(":")[2].split("/")[0]
        assert (await post(url, {"Host": f"speedrun.internal:{port}"})).status_code == 200  # a listed name
        assert (await post(url, {"Host": f"other.internal:{port}"})).status_code == 421
        async with http_session(url, None) as session:
            result = await session.call_tool("generate_and_write_files", {"prompt": "hello", "output_dir": "proj"})
    assert not result.is_error, error_text(result)
    assert result.structured_content["total_files"] == 1
    assert (tmp_path / "root" / "proj" / "hello.py").read_text() == 'print("hi")\n'


@pytest.mark.parametrize(
    ("args", "token", "expected"),
    [
        (["--host", "0.0.0.0"], None, ["--host '0.0.0.0'", "not a loopback address", "SPEEDRUN_MCP_TOKEN"]),
        (["--host", "192.0.2.7"], None, ["SPEEDRUN_MCP_TOKEN", "127.0.0.1"]),
        (["--host", "0.0.0.0"], "short", ["SPEEDRUN_MCP_TOKEN is 5 characters", "at least 16"]),
        (["--port", "70000"], None, ["--port 70000", "1-65535"]),
    ],
)
def test_an_exposed_or_bad_binding_is_refused_before_serving(
    tmp_path: Path, args: list[str], token: str | None, expected: list[str]
) -> None:
    env = server_env(tmp_path, None, **({"SPEEDRUN_MCP_TOKEN": token} if token else {}))
    cmd = [sys.executable, "-m", "speedrun", "mcp", "--http", "--port", str(free_port()), *args]
    if "--port" in args:
        cmd = [sys.executable, "-m", "speedrun", "mcp", "--http", *args]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    for words in expected:
        assert words in proc.stderr
    assert "Traceback" not in proc.stderr and (token is None or token not in proc.stderr)
