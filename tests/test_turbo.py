"""The turbo graph end to end against the scripted server: files on disk, requests sent, the compact result."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from speedrun.config import RunContext, Settings
from speedrun.graphs.turbo import graph
from speedrun.state.turbo import TurboResult
from tests.fake_llm import FakeLLM
from tests.helpers import FIXED_CALC, PYTEST, TEST_CALC, file_blocks, fix_reply, last_user_text, role_of

CONTRACT = """\
DATA CONTRACT:
Integers in, an integer out.

API CONTRACT:
add(a: int, b: int) -> int in calc.py

ALGORITHM:
Return the sum of a and b.

RULES:
Write calc.py and test_calc.py (pytest).
"""

BUGGY_CALC = "def add(a, b):\n    return a - b\n"


def inputs(out: Path, **extra) -> dict:
    return {"contract": CONTRACT, "output_dir": str(out), "test_command": PYTEST, **extra}


async def run(out: Path, **extra) -> TurboResult:
    with anyio.fail_after(60):
        final = await graph.ainvoke(inputs(out, **extra), context=RunContext(Settings()))
    return final["result"]


def assert_fixed_once(fake: FakeLLM, out: Path, result: TurboResult) -> None:
    requests = fake.chat_requests()
    assert [role_of(r) for r in requests] == ["generator", "fixer"]
    # The fixer saw the failure and the line-numbered code, not a request to start over.
    fixer_prompt = last_user_text(requests[1])
    assert "test_add" in fixer_prompt and "   2|     return a - b" in fixer_prompt
    assert (out / "calc.py").read_text() == FIXED_CALC
    assert (out / "test_calc.py").read_text() == TEST_CALC
    assert result.status == "passed"
    assert sorted(f.path for f in result.files) == ["calc.py", "test_calc.py"]
    assert result.tests.passed == 1 and result.tests.failed == 0
    assert len(result.cycles) == 1
    assert [(e.path, e.status) for e in result.cycles[0].edits] == [("calc.py", "applied")]
    assert result.cycles[0].diagnosis == "add subtracts instead of adding"
    assert result.cycles[0].failures_before == 1
    assert {role: usage.calls for role, usage in result.ledger.items()} == {"generator": 1, "fixer": 1}
    assert all(u.prompt_tokens > 0 and u.completion_tokens > 0 for u in result.ledger.values())
    assert result.warnings == []


@pytest.mark.anyio
async def test_buggy_first_pass_one_fix_edit_then_green(speedrun_env, fake_llm, tmp_path):
    fake_llm.script(
        file_blocks({"calc.py": BUGGY_CALC, "test_calc.py": TEST_CALC}),
        fix_reply(("calc.py", "    return a - b", "    return a + b")),
    )
    result = await run(tmp_path / "ws")
    assert_fixed_once(fake_llm, tmp_path / "ws", result)


def test_sync_invoke_runs_the_same_loop(speedrun_env, fake_llm, tmp_path):
    fake_llm.script(
        file_blocks({"calc.py": BUGGY_CALC, "test_calc.py": TEST_CALC}),
        fix_reply(("calc.py", "    return a - b", "    return a + b")),
    )
    out = tmp_path / "ws"
    final = graph.invoke(inputs(out), context=RunContext(Settings()))
    assert_fixed_once(fake_llm, out, final["result"])


@pytest.mark.anyio
async def test_fixer_that_never_fixes_stops_at_max_fix_cycles(speedrun_env, fake_llm, tmp_path):
    fake_llm.script(file_blocks({"calc.py": BUGGY_CALC, "test_calc.py": TEST_CALC}))
    attempts = iter(range(1, 100))
    # Every answer applies cleanly and changes the file, but never touches the bug.
    fake_llm.responder = lambda body: fix_reply(
        ("calc.py", "def add(a, b):\n", f"def add(a, b):\n    # attempt {next(attempts)}\n"), diagnosis="no idea"
    )
    out = tmp_path / "ws"
    result = await run(out, max_fix_cycles=2)

    assert [role_of(r) for r in fake_llm.chat_requests()] == ["generator", "fixer", "fixer"]
    assert result.status == "failed"
    assert [c.cycle for c in result.cycles] == [1, 2]
    assert all([e.status for e in c.edits] == ["applied"] for c in result.cycles)
    assert result.tests.failed == 1
    [failure] = result.tests.failures
    assert failure.name == "test_calc.py::test_add"
    assert "assert -1 == 5" in failure.message
    assert "return a - b" in (out / "calc.py").read_text()
    assert result.ledger["fixer"].calls == 2


@pytest.mark.anyio
async def test_edit_not_found_gets_one_retry_with_the_closest_match(speedrun_env, fake_llm, tmp_path):
    fake_llm.script(
        file_blocks({"calc.py": BUGGY_CALC, "test_calc.py": TEST_CALC}),
        fix_reply(("calc.py", "    return a-b", "    return a+b")),  # not what the file says
        fix_reply(("calc.py", "    return a - b", "    return a + b")),
    )
    out = tmp_path / "ws"
    result = await run(out)

    requests = fake_llm.chat_requests()
    assert [role_of(r) for r in requests] == ["generator", "fixer", "fixer"]
    retry = last_user_text(requests[2])
    assert "not found" in retry
    assert "   2|     return a - b" in retry  # the closest match, with its line number
    assert (out / "calc.py").read_text() == FIXED_CALC
    assert result.status == "passed"
    assert len(result.cycles) == 1
    assert [e.status for e in result.cycles[0].edits] == ["applied"]
    assert result.ledger["fixer"].calls == 2


@pytest.mark.anyio
async def test_edit_that_rewrites_most_of_a_file_is_refused(speedrun_env, fake_llm, tmp_path):
    body = "".join(f"    step{i} = {i}\n" for i in range(10))
    buggy = f"def add(a, b):\n{body}    return a - b\n"
    fake_llm.script(
        file_blocks({"calc.py": buggy, "test_calc.py": TEST_CALC}),
        fix_reply(("calc.py", buggy, "def add(a, b):\n    return a + b\n"), diagnosis="rewrite it"),
    )
    out = tmp_path / "ws"
    result = await run(out, max_fix_cycles=1)

    assert (out / "calc.py").read_text() == buggy
    assert result.status == "failed"
    [edit] = result.cycles[0].edits
    assert edit.status == "refused"
    assert "most of calc.py" in edit.message
    assert len(fake_llm.chat_requests()) == 2  # a refusal is final for the cycle: no retry


@pytest.mark.anyio
async def test_task_only_the_planner_writes_the_contract_the_generator_uses(speedrun_env, fake_llm, tmp_path):
    planned = {
        "data_contract": "Amounts are integer cents (PLANNED-DATA-7Q).",
        "api_contract": "add(a: int, b: int) -> int in calc.py",
        "algorithm": "Return a + b.",
        "rules": "Write calc.py and test_calc.py.",
    }
    fake_llm.script(json.dumps(planned), file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    out = tmp_path / "ws"
    with anyio.fail_after(60):
        final = await graph.ainvoke(
            {"task": "an add function for cents", "output_dir": str(out), "test_command": PYTEST},
            context=RunContext(Settings()),
        )
    result = final["result"]

    requests = fake_llm.chat_requests()
    assert [role_of(r) for r in requests] == ["planner", "generator"]
    assert "an add function for cents" in last_user_text(requests[0])
    generator_prompt = last_user_text(requests[1])
    assert "DATA CONTRACT:\nAmounts are integer cents (PLANNED-DATA-7Q)." in generator_prompt
    assert "API CONTRACT:\nadd(a: int, b: int) -> int in calc.py" in generator_prompt
    assert result.status == "passed"
    assert set(result.ledger) == {"planner", "generator"}


@pytest.mark.anyio
async def test_contract_missing_sections_is_used_with_a_warning(speedrun_env, fake_llm, tmp_path):
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    contract = "API CONTRACT:\nadd(a, b) -> int in calc.py\n\nRULES:\nWrite calc.py and test_calc.py.\n"
    result = await run(tmp_path / "ws", contract=contract)

    assert result.status == "passed"
    assert len(result.warnings) == 2
    assert any("DATA CONTRACT" in w for w in result.warnings)
    assert any("ALGORITHM" in w for w in result.warnings)
    assert [role_of(r) for r in fake_llm.chat_requests()] == ["generator"]  # no planner call


@pytest.mark.anyio
async def test_generated_tests_see_no_secrets_in_their_environment(speedrun_env, fake_llm, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_test_token_VALUE_123")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-VALUE-456")
    monkeypatch.setenv("DATABASE_URL", "postgres://admin:hunter2@db.example/prod")
    dump_test = (
        "import json\nimport os\n\n\ndef test_dump_env():\n"
        "    with open('env_dump.json', 'w') as f:\n        json.dump(dict(os.environ), f)\n"
    )
    fake_llm.script(file_blocks({"test_env.py": dump_test}))
    out = tmp_path / "ws"
    result = await run(out)

    assert result.status == "passed"
    dumped_text = (out / "env_dump.json").read_text()
    dumped = json.loads(dumped_text)
    assert "PATH" in dumped  # the test really ran and dumped its environment
    for secret in ("sk-test-not-a-real-key", "ghp_test_token_VALUE_123", "aws-secret-VALUE-456", "hunter2"):
        assert secret not in dumped_text
    assert not {"CEREBRAS_API_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "DATABASE_URL"} & set(dumped)
    assert "sk-test-not-a-real-key" not in result.model_dump_json()


@pytest.mark.anyio
async def test_progress_events_for_every_step(speedrun_env, fake_llm, tmp_path):
    fake_llm.script(
        file_blocks({"calc.py": BUGGY_CALC, "test_calc.py": TEST_CALC}),
        fix_reply(("calc.py", "    return a - b", "    return a + b")),
    )
    events = []
    with anyio.fail_after(60):
        async for event in graph.astream(inputs(tmp_path / "ws"), context=RunContext(Settings()), stream_mode="custom"):
            events.append(event)

    steps = [e["step"] for e in events]
    assert set(steps) == {"contract_write", "generate", "run_tests", "surgical_fix", "report"}
    # In the order the loop runs them; every event says something.
    first = {step: steps.index(step) for step in set(steps)}
    assert first["contract_write"] < first["generate"] < first["run_tests"] < first["surgical_fix"] < first["report"]
    assert steps[-1] == "report"
    assert all(isinstance(e["message"], str) and e["message"] for e in events)
    assert [e["path"] for e in events if e["step"] == "generate" and "path" in e] == ["calc.py", "test_calc.py"]
    test_runs = [e for e in events if e["step"] == "run_tests" and "passed" in e]
    assert [(e["passed"], e["failed"]) for e in test_runs] == [(0, 1), (1, 0)]


@pytest.mark.anyio
async def test_a_test_command_that_cannot_run_spends_no_fix_cycles(speedrun_env, fake_llm, tmp_path):
    # The Python API has no edge preflight: the graph itself must see that exit 127 is no code defect.
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    result = await run(tmp_path / "ws", test_command="no-such-test-runner-xyz -q")
    assert [role_of(r) for r in fake_llm.chat_requests()] == ["generator"]
    assert result.status == "failed"
    assert result.cycles == []
    assert result.tests.problem and "could not run" in result.tests.problem
    assert any("could not run" in w for w in result.warnings)
