"""The suite's own guard: no test reaches the network by accident, loopback still works."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from tests.fake_llm import FakeLLM


def test_a_connection_outside_loopback_is_refused_at_once() -> None:
    with pytest.raises(ConnectionRefusedError, match="offline"):
        socket.create_connection(("203.0.113.7", 443), timeout=5)  # TEST-NET-3: would hang, never answer


def test_loopback_still_works(fake_llm: FakeLLM) -> None:
    with urllib.request.urlopen(f"{fake_llm.base_url}/models", timeout=5) as response:
        assert response.status == 200
