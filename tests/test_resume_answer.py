"""The caller's answer to a paused run: one ResumeAnswer read by the run service and the fix node, in every form."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from speedrun.config import RunContext, Settings
from speedrun.errors import InputError
from speedrun.runs import RunManager
from speedrun.state.edits import Edit
from speedrun.state.runs import ResumeAnswer
from tests.fake_llm import FakeLLM
from tests.helpers import CONTRACT_TEXT, PYTEST, TEST_CALC, file_blocks, role_of

BUGGY_CALC = "def add(a, b):\n    return a - b\n"
FIX = {"path": "calc.py", "search": "    return a - b", "replace": "    return a + b"}


async def paused_run(runs: RunManager, out: Path) -> str:
    """A turbo run whose caller is the fixer, waiting for its answer after the first failing test run."""
    run_id = await runs.start(
        "turbo",
        {"contract": CONTRACT_TEXT, "output_dir": str(out), "test_command": PYTEST, "roles": {"fixer": "client"}},
    )
    status = await runs.wait(run_id, 30)
    assert status.status == "needs_input", status
    return run_id


@pytest.mark.anyio
async def test_a_resume_answer_model_applies_its_edits_and_the_run_passes(speedrun_env, fake_llm: FakeLLM, tmp_path):
    fake_llm.script(file_blocks({"calc.py": BUGGY_CALC, "test_calc.py": TEST_CALC}))
    out = tmp_path / "ws"
    with anyio.fail_after(60):
        async with RunManager.open(Settings()) as runs:
            run_id = await paused_run(runs, out)
            await runs.resume(run_id, ResumeAnswer(action="edits", edits=[Edit(**FIX)]))
            final = await runs.wait(run_id, 30)
            full = await runs.full_result(run_id)
    assert final.status == "passed"
    assert (out / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    [cycle] = full.cycles
    assert (cycle.source, cycle.diagnosis) == ("client", "caller sent edits")
    assert [(e.path, e.status) for e in cycle.edits] == [("calc.py", "applied")]
    assert [role_of(r) for r in fake_llm.chat_requests()] == ["generator"]  # the caller fixed it, no fixer model


@pytest.mark.anyio
async def test_the_node_reads_an_answer_held_in_its_dict_form(speedrun_env, fake_llm: FakeLLM, tmp_path):
    # A run paused by the previous release resumes with the plain dict it stored; so may LangGraph Studio.
    from langgraph.types import Command

    fake_llm.script(file_blocks({"calc.py": BUGGY_CALC, "test_calc.py": TEST_CALC}))
    out = tmp_path / "ws"
    with anyio.fail_after(60):
        async with RunManager.open(Settings()) as runs:
            run_id = await paused_run(runs, out)
            graph = runs.graphs["turbo"]
            config = {"configurable": {"thread_id": run_id}}
            async for _ in graph.astream(
                Command(resume={"action": "edits", "edits": [FIX]}), config, context=RunContext(Settings())
            ):
                pass
            values = (await graph.aget_state(config)).values
    assert values["result"].status == "passed"
    assert (out / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"


@pytest.mark.anyio
async def test_a_bad_answer_is_refused_at_once_and_the_run_still_waits(speedrun_env, fake_llm: FakeLLM, tmp_path):
    fake_llm.script(file_blocks({"calc.py": BUGGY_CALC, "test_calc.py": TEST_CALC}))
    with anyio.fail_after(60):
        async with RunManager.open(Settings()) as runs:
            run_id = await paused_run(runs, tmp_path / "ws")
            # An MCP client that sends the edits as a JSON string instead of a list.
            with pytest.raises(InputError, match=r"`edits` must be a list"):
                await runs.resume(run_id, {"action": "edits", "edits": '[{"path": "calc.py"}]'})
            assert (await runs.status(run_id)).status == "needs_input"
            await runs.resume(run_id, ResumeAnswer.read("stop"))
            final = await runs.wait(run_id, 30)
    assert final.status == "stopped"


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ("RETEST", "resume value must be 'retest', 'stop' or {'action': 'edits'"),
        ({"action": "continue"}, "'continue'"),
        (None, "got 'None'"),
        ({"action": "edits"}, "action 'edits' needs a non-empty `edits` list"),
        ({"action": "edits", "edits": []}, "action 'edits' needs a non-empty `edits` list"),
        ({"action": "edits", "edits": [{"path": "calc.py", "search": 3, "replace": "x"}]}, "edit 1 is not valid"),
        ({"action": "edits", "edits": [FIX, "calc.py"]}, "edit 2 is not an object"),
        ({"action": "retest", "edits": {"path": "calc.py"}}, "`edits` must be a list"),
        ("x" * 5000, " characters)"),  # echoed cut short, with its length
    ],
)
def test_bad_answers_say_what_is_expected_in_plain_words(answer: object, says: str) -> None:
    with pytest.raises(InputError) as info:
        ResumeAnswer.read(answer)
    text = str(info.value)
    assert says in text
    assert len(text) < 600
    assert "pydantic" not in text and "validation error" not in text and "Traceback" not in text


@pytest.mark.parametrize(
    ("answer", "action", "edits"),
    [
        ("retest", "retest", []),
        ({"action": "stop", "edits": None}, "stop", []),  # a client that sends every optional field as null
        ({"action": "edits", "edits": [FIX]}, "edits", [FIX]),
        # The dict form a checkpoint holds (model_dump of a stored answer) reads back the same.
        (ResumeAnswer(action="edits", edits=[Edit(**FIX)]).model_dump(), "edits", [FIX]),
    ],
)
def test_every_form_of_a_good_answer_reads_the_same(answer: object, action: str, edits: list[dict]) -> None:
    read = ResumeAnswer.read(answer)
    assert read.action == action
    assert [e.model_dump() for e in read.edits] == edits
    assert ResumeAnswer.read(read) is read


def test_a_directly_built_edits_answer_without_edits_is_invalid() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="non-empty `edits` list"):
        ResumeAnswer(action="edits")
