"""Shared pytest fixtures for the offline test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_llm import FakeLLM


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
