"""Every MCP tool declares an output schema, and what it returns over a real stdio session follows that schema."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import jsonschema
import pytest

from tests.fake_llm import FakeLLM, Reply
from tests.helpers import (
    CONTRACT_TEXT,
    FIXED_CALC,
    PYTEST,
    TEST_CALC,
    RunnerScript,
    Script,
    file_blocks,
    make_repo,
    mcp_session,
    server_env,
)
from tests.schema_answers import follow_schema, request_schema

TOOLS = {
    "generate",
    "generate_and_write_files",
    "check_status",
    "turbo",
    "judge",
    "run_status",
    "resume_run",
    "cancel_run",
    "list_runs",
    "showdown",
    "any_percent",
    "clean",
}
#: The parallel workflows' tools, checked by their own test below (each run builds a git repo's worktrees).
PARALLEL_TOOLS = {"showdown", "any_percent", "clean"}


async def validating_caller(session, seen: set[str]):
    """A tool caller that validates every result against the tool's declared output schema."""
    schemas = {t.name: t.output_schema for t in (await session.list_tools()).tools}
    assert set(schemas) == TOOLS
    for name, schema in schemas.items():
        assert schema and schema.get("type") == "object" and schema.get("properties"), name

    async def call(tool: str, **args: object) -> dict:
        result = await session.call_tool(tool, args)
        text = "".join(getattr(c, "text", "") for c in result.content)
        assert not result.is_error, f"{tool}: {text}"
        jsonschema.validate(result.structured_content, schemas[tool])  # raises with the offending field
        seen.add(tool)
        return result.structured_content

    return call


@pytest.mark.anyio
async def test_every_tool_result_follows_its_declared_output_schema(fake_llm: FakeLLM, tmp_path: Path) -> None:
    root = tmp_path / "root"
    with anyio.fail_after(120):
        async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
            seen: set[str] = set()
            call = await validating_caller(session, seen)

            fake_llm.script("hello")
            await call("generate", prompt="say hello")
            fake_llm.script(file_blocks({"a.py": "x = 1\n"}))
            await call("generate_and_write_files", prompt="write a.py", output_dir="gen")
            await call("check_status")

            fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
            done = await call("turbo", output_dir="ws", contract=CONTRACT_TEXT, test_command=PYTEST, wait_seconds=60)
            assert done["status"] == "passed"
            await call("run_status", run_id=done["run_id"])

            # A run that is still running when it is cancelled, then picked up again.
            fake_llm.script(Reply(content=file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}), delay=3))
            slow = await call("turbo", output_dir="ws2", contract=CONTRACT_TEXT, test_command=PYTEST, wait_seconds=0)
            assert slow["status"] == "running"
            assert (await call("cancel_run", run_id=slow["run_id"]))["status"] == "cancelled"
            fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
            resumed = await call("resume_run", run_id=slow["run_id"], action="continue", wait_seconds=60)
            assert resumed["status"] == "passed"
            await call("list_runs")

            for name in ("alpha", "beta"):
                (root / name).mkdir()
                (root / name / "calc.py").write_text(FIXED_CALC)
                (root / name / "test_calc.py").write_text(TEST_CALC)
            fake_llm.responder = lambda body: json.dumps(follow_schema(request_schema(body)))
            verdict = await call(
                "judge",
                design="add two integers",
                wait_seconds=60,
                implementations=[{"name": n, "path": n, "test_command": PYTEST} for n in ("alpha", "beta")],
            )
            assert {c["name"] for c in verdict["result"]["scorecards"]} == {"alpha", "beta"}
    assert seen == TOOLS - PARALLEL_TOOLS


@pytest.mark.anyio
async def test_the_parallel_tools_results_follow_their_declared_output_schemas(fake_llm: FakeLLM, tmp_path: Path):
    repo = make_repo(tmp_path / "root" / "repo")
    best = FIXED_CALC.replace("return a + b", "return a + b  # BEST")
    sums = {"runner-1": FIXED_CALC, "runner-2": best, "variant-plain": FIXED_CALC, "variant-sum": best}
    fake_llm.responder = RunnerScript(sums, judge=Script("# BEST"))
    seen: set[str] = set()
    with anyio.fail_after(150):
        async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
            call = await validating_caller(session, seen)
            common = {"design": "add two integers", "repo": "repo", "test_command": PYTEST, "wait_seconds": 60}
            first = await call("showdown", feature="calc", runners=2, **common)
            assert first["status"] == "done", first
            approaches = [{"slug": "plain", "summary": "a + b"}, "sum: the builtin sum"]
            second = await call("any_percent", feature="calc2", approaches=approaches, promote="ask", **common)
            assert second["status"] == "done" and second["result"]["status"] == "awaiting_choice", second
            assert "calc2/speed-run/variant-plain" in second["result"]["choose"]
            assert (await call("clean"))["note"]
    kept = [b for b in (repo / ".git/refs/heads/calc2/speed-run").iterdir()]
    assert sorted(b.name for b in kept) == ["variant-plain", "variant-sum"]  # ask keeps both; clean leaves them
    assert seen == PARALLEL_TOOLS
