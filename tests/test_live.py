"""Smoke tests against the real provider. Skipped unless CEREBRAS_API_KEY is set (never in CI, never offline)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from speedrun.config import RunContext, Settings

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not os.environ.get("CEREBRAS_API_KEY"), reason="live provider: set CEREBRAS_API_KEY to run"),
]
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "token-bucket"


@pytest.mark.anyio
async def test_the_endpoint_lists_the_configured_model() -> None:
    from speedrun.llm import list_models

    settings = Settings()
    spec = settings.role("generator").primary
    assert spec.model in await list_models(spec, settings)


@pytest.mark.anyio
async def test_turbo_implements_the_token_bucket_example(tmp_path: Path) -> None:
    from speedrun.graphs.turbo import graph

    shutil.copytree(EXAMPLE / "tests", tmp_path / "tests")
    out = await graph.ainvoke(
        {
            "contract": (EXAMPLE / "contract.md").read_text(),
            "output_dir": str(tmp_path),
            "test_command": f"{sys.executable} -m pytest -q -p no:cacheprovider tests",
        },
        context=RunContext(Settings()),
    )
    result = out["result"]
    assert (tmp_path / "token_bucket.py").is_file()
    assert result.status == "passed", result.tests
