"""Shared pytest fixtures for the offline test suite."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_llm import FakeLLM


def _refuse_unless_loopback(address: object) -> None:
    host = address[0] if isinstance(address, tuple) and address else None
    try:
        if host is not None and not ipaddress.ip_address(str(host).split("%")[0]).is_loopback:
            raise ConnectionRefusedError(
                f"the test suite is offline: a connection to {host} was refused "
                "(loopback only; mark a test `live` to reach a real provider)"
            )
    except ValueError:  # not an IP address (e.g. a Unix socket path): not a network connection
        pass


@pytest.fixture(autouse=True)
def _settings_read_per_test() -> Iterator[None]:
    """The product reads settings once per process; each test sets its own environment, so each reads it afresh.

    Without this, code that falls back to `load_settings()` (a graph run without an edge) sees whichever test ran
    first: its SPEEDRUN_HOME, its scripted server."""
    from speedrun.config import load_settings

    load_settings.cache_clear()
    yield
    load_settings.cache_clear()


@pytest.fixture(autouse=True)
def _loopback_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches the network by accident: in-process connections go to 127.0.0.1/::1 or fail at once."""
    if request.node.get_closest_marker("live"):
        return
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            _refuse_unless_loopback(address)
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: object) -> int:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            _refuse_unless_loopback(address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture
def anyio_backend() -> str:
    """Async tests use ``@pytest.mark.anyio`` (anyio's pytest plugin); run them on asyncio only."""
    return "asyncio"


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A started scripted OpenAI-compatible server; ``fake_llm.base_url`` ends in ``/v1``."""
    server = FakeLLM().start()
    try:
        yield server
    finally:
        server.close()


# Variables speed-run's Settings reads; a developer's real key or overrides must never reach a test.
_SETTINGS_ENV_PREFIXES = ("CEREBRAS_", "SPEEDRUN_", "GROQ_", "OPENROUTER_", "OPENAI_")
_SETTINGS_ENV_NAMES = ("GENERATION_TIMEOUT", "XDG_STATE_HOME")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """Remove every settings variable from the environment and point SPEEDRUN_HOME at a temp dir."""
    for name in list(os.environ):
        if name.startswith(_SETTINGS_ENV_PREFIXES) or name in _SETTINGS_ENV_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("SPEEDRUN_HOME", str(tmp_path / "speedrun-home"))
    return monkeypatch


@pytest.fixture
def speedrun_env(fake_llm: FakeLLM, tmp_path: Path, clean_env: pytest.MonkeyPatch) -> dict[str, str]:
    """Point speed-run at ``fake_llm`` with its state under tmp_path, on top of ``clean_env``.

    Sets the variables in ``os.environ`` (for in-process graphs and RunManager) and returns the explicit
    environment to hand to subprocesses (CLI, MCP server).
    """
    values = {
        "CEREBRAS_API_KEY": "sk-test-not-a-real-key",
        "CEREBRAS_URL": fake_llm.base_url,
        "CEREBRAS_MODEL": "fake-model",
        "SPEEDRUN_HOME": str(tmp_path / "speedrun-home"),
        "SPEEDRUN_ROOTS": str(tmp_path),
    }
    for name, value in values.items():
        clean_env.setenv(name, value)
    return {**values, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", str(tmp_path))}


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """postgresql:// URL of a PostgreSQL server this test session started on loopback (tests/servers.py).

    One server per session (about 1 s to start); tests that need an empty database create their own in it."""
    from tests.servers import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """redis:// URL of a Redis server this test session started on loopback (tests/servers.py)."""
    from tests.servers import redis_server

    with redis_server() as url:
        yield url
