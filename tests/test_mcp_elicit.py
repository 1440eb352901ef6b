"""promote=ask over a real MCP stdio session: the user picks the winner by elicitation, or gets the choice back."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client, types

from tests.fake_llm import FakeLLM
from tests.helpers import PYTEST, RunnerScript, Script, git, make_repo, server_env

DESIGN = "Build calc.add(a, b): the sum of two integers, with pytest tests."
SUM = "def add(a, b):\n    return a + b\n"
STRONG = "def add(a: int, b: int) -> int:\n    total = a + b  # STRONG\n    return total\n"
BRANCHES = ["calc/speed-run/runner-1", "calc/speed-run/runner-2"]


def speedrun_branches(repo: Path) -> list[str]:
    return sorted(git(repo, "branch", "--list", "--format=%(refname:short)", "*speed-run*").split())


@asynccontextmanager
async def session_with(tmp_path: Path, fake: FakeLLM, **callbacks: Any) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "speedrun", "mcp"], env=server_env(tmp_path, fake), cwd=str(tmp_path)
    )
    with open(tmp_path / "server-stderr.log", "a") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, **callbacks) as session,
        ):
            await session.initialize()
            yield session


async def showdown(session: ClientSession, wait: float = 120) -> dict[str, Any]:
    args = {
        "design": DESIGN,
        "feature": "calc",
        "repo": "repo",
        "runners": 2,
        "test_command": PYTEST,
        "promote": "ask",
        "wait_seconds": wait,
    }
    result = await session.call_tool("showdown", args)
    assert not result.is_error, result
    return dict(result.structured_content or {})


@pytest.mark.anyio
@pytest.mark.parametrize("merge", [False, True])
async def test_the_user_picks_the_winner_over_elicitation_and_it_is_promoted(
    tmp_path: Path, fake_llm: FakeLLM, merge: bool
) -> None:
    repo = make_repo(tmp_path / "root" / "repo")
    fake_llm.responder = RunnerScript({"runner-1": SUM, "runner-2": STRONG}, judge=Script("# STRONG"))
    asked: list[types.ElicitRequestFormParams] = []

    async def pick(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        assert isinstance(params, types.ElicitRequestFormParams)
        asked.append(params)
        # The user overrides the judge (which prefers runner-2's STRONG code) and picks runner-1.
        return types.ElicitResult(action="accept", content={"branch": BRANCHES[0], "merge": merge})

    with anyio.fail_after(150):
        async with session_with(tmp_path, fake_llm, elicitation_callback=pick) as session:
            done = await showdown(session)
            again = (await session.call_tool("run_status", {"run_id": done["run_id"]})).structured_content

    [question] = asked  # asked once: the later poll shows the outcome without asking again
    schema = question.requested_schema
    assert schema["properties"]["branch"]["enum"] == [*BRANCHES, "none"]
    assert schema["properties"]["branch"]["default"] == BRANCHES[1]  # the judge's pick is offered first
    assert schema["properties"]["merge"]["type"] == "boolean"
    assert "judge recommends calc/speed-run/runner-2" in question.message
    result = done["result"]
    assert (done["status"], result["status"], result["winner"]) == ("done", "promoted", "runner-1")
    assert "choose" not in result and again is not None and again["result"] == result
    assert "why" not in result  # the judge's reason was for the other runner
    if merge:
        assert speedrun_branches(repo) == []  # merged into main, then deleted with the other kept branch
        assert (repo / "calc.py").read_text() == SUM
        assert git(repo, "log", "-1", "--format=%s").startswith("speed-run: merge calc/speed-run/runner-1")
    else:
        assert speedrun_branches(repo) == [BRANCHES[0]]  # the pick stays; the other kept branch is gone
        assert git(repo, "show", f"{BRANCHES[0]}:calc.py") + "\n" == SUM
        assert result["winner_branch"] == BRANCHES[0]
    assert "## Chosen by the user" in Path(done["report_path"]).read_text()


@pytest.mark.anyio
@pytest.mark.parametrize("client", ["no elicitation", "declines", "cancels"])
async def test_without_an_answer_the_choice_comes_back_in_the_result(
    tmp_path: Path, fake_llm: FakeLLM, client: str
) -> None:
    repo = make_repo(tmp_path / "root" / "repo")
    fake_llm.responder = RunnerScript({"runner-1": SUM, "runner-2": STRONG}, judge=Script("# STRONG"))
    asked: list[str] = []

    async def refuse(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="decline" if client == "declines" else "cancel")

    callbacks = {} if client == "no elicitation" else {"elicitation_callback": refuse}
    with anyio.fail_after(150):
        async with session_with(tmp_path, fake_llm, **callbacks) as session:
            done = await showdown(session)

    assert len(asked) == (0 if client == "no elicitation" else 1)
    result = done["result"]
    assert (result["status"], result["winner"]) == ("awaiting_choice", "runner-2")
    assert all(branch in result["choose"] for branch in BRANCHES) and "git merge" in result["choose"]
    assert speedrun_branches(repo) == BRANCHES  # nothing deleted: the user still chooses
    assert "Chosen by the user" not in Path(done["report_path"]).read_text()
    assert "STRONG" not in json.dumps(done)


@pytest.mark.anyio
async def test_a_pick_git_cannot_merge_keeps_every_branch_and_says_why(tmp_path: Path, fake_llm: FakeLLM) -> None:
    repo = make_repo(tmp_path / "root" / "repo")
    fake_llm.responder = RunnerScript({"runner-1": SUM, "runner-2": STRONG}, judge=Script("# STRONG"))

    async def pick_while_editing(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        (repo / "README.md").write_text("# demo\nmy unsaved work\n")  # the user edits while deciding
        return types.ElicitResult(action="accept", content={"branch": BRANCHES[1], "merge": True})

    with anyio.fail_after(150):
        async with session_with(tmp_path, fake_llm, elicitation_callback=pick_while_editing) as session:
            done = await showdown(session)

    result = done["result"]
    assert result["status"] == "awaiting_choice" and "winner" not in result
    assert result["warnings"][0].startswith("not promoted: did not merge calc/speed-run/runner-2")
    assert "uncommitted changes" in result["warnings"][0]
    assert speedrun_branches(repo) == BRANCHES  # nothing deleted: the user can still merge by hand
    assert (repo / "README.md").read_text() == "# demo\nmy unsaved work\n"
