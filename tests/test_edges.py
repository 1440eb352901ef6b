"""The edges as users meet them: bad input stopped before any work, runs that keep their record, honest hints.

MCP over a real stdio session, the CLI as a subprocess; the scripted server records every model request.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import anyio
import pytest

from tests.fake_llm import FakeLLM, Reply
from tests.helpers import (
    CONTRACT_TEXT,
    FIXED_CALC,
    PYTEST,
    TEST_CALC,
    Transcript,
    error_text,
    fake_env,
    file_blocks,
    git,
    make_repo,
    mcp_session,
    run_cli,
    server_env,
)
from tests.helpers import MCP_KEY as KEY


def turbo_args(out: Path | str, **extra: Any) -> dict[str, Any]:
    return {"contract": CONTRACT_TEXT, "output_dir": str(out), "test_command": PYTEST, "wait_seconds": 30, **extra}


# --- 1c: runs tell the truth ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_cancel_keeps_the_record_of_a_finished_or_failed_run(tmp_path: Path, fake_llm: FakeLLM) -> None:
    root = tmp_path / "root"
    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
        t = Transcript(session)
        fake_llm.script(Reply(status=401, error_message="invalid key"))  # the generator fails: the run errors
        failed = (await t.call("turbo", turbo_args(root / "a"))).structured_content
        assert failed["status"] == "error" and "rejected the API key" in failed["error"]

        text = error_text(await t.call("cancel_run", {"run_id": failed["run_id"]}))
        assert "already ended with an error" in text and "rejected the API key" in text
        after = (await t.call("run_status", {"run_id": failed["run_id"]})).structured_content
        assert after["status"] == "error" and after["error"] == failed["error"]  # the reason it failed is kept

        fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
        passed = (await t.call("turbo", turbo_args(root / "b"))).structured_content
        assert passed["status"] == "passed"
        text = error_text(await t.call("cancel_run", {"run_id": passed["run_id"]}))
        assert "already finished (passed)" in text
        assert (await t.call("run_status", {"run_id": passed["run_id"]})).structured_content["status"] == "passed"
    assert KEY not in t.text()


@pytest.mark.anyio
async def test_concurrent_first_use_of_the_run_tools_shares_one_database(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
        results: list[Any] = []

        async def one(tool: str, args: dict[str, Any]) -> None:
            results.append(await session.call_tool(tool, args))

        async with anyio.create_task_group() as tg:  # a fresh server: the run database is not open yet
            for i in range(3):
                tg.start_soon(one, "list_runs", {})
                tg.start_soon(one, "run_status", {"run_id": f"turbo-missing-{i}"})
        texts = [" ".join(getattr(c, "text", "") for c in r.content) for r in results]
        assert not any("Connection closed" in text or "internal error" in text for text in texts), texts
        assert sum(not r.is_error for r in results) == 3  # the three list_runs
        assert all("no run 'turbo-missing-" in text for r, text in zip(results, texts, strict=True) if r.is_error)


@pytest.mark.anyio
async def test_a_huge_run_id_is_not_echoed_whole(tmp_path: Path, fake_llm: FakeLLM) -> None:
    huge = "turbo-" + "x" * 1_000_000
    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
        for tool, args in [
            ("run_status", {"run_id": huge}),
            ("cancel_run", {"run_id": huge}),
            ("resume_run", {"run_id": huge, "action": "continue"}),
        ]:
            text = error_text(await session.call_tool(tool, args))
            assert "no run 'turbo-xxx" in text and "1000006 characters" in text
            assert len(text) < 500, (tool, len(text))


# --- section 6: bad input stops before any model call or run ------------------------------------------------


@pytest.mark.anyio
async def test_bad_input_over_mcp_is_a_tool_error_before_any_work(tmp_path: Path, fake_llm: FakeLLM) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a-file").write_text("not a directory\n")
    (root / "impl").mkdir()
    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
        t = Transcript(session)

        async def refused(tool: str, args: dict[str, Any], *needles: str) -> str:
            result = await t.call(tool, args)
            text = error_text(result)
            for needle in needles:
                assert needle in text, (tool, args, text)
            assert len(text) < 1200 and "Traceback" not in text
            assert "TurboInput" not in text and "JudgeInput" not in text and "errors.pydantic.dev" not in text
            return text

        await refused("turbo", turbo_args(root / "ws", test_command="   "), "test_command", "empty")
        await refused(
            "turbo",
            turbo_args(root / "ws", test_command="no-such-test-runner-zz --all"),
            "no-such-test-runner-zz",
            "not found",
        )
        await refused("turbo", turbo_args(root / "a-file"), "a-file")
        await refused("turbo", turbo_args(root / "a-file" / "sub"), "a-file")
        await refused("turbo", {"output_dir": str(root / "ws"), "test_command": PYTEST}, "task", "contract")
        await refused("generate_and_write_files", {"prompt": "x", "output_dir": str(root / "a-file")}, "a-file")
        await refused("generate_and_write_files", {"prompt": "x", "output_dir": "ws", "max_tokens": 0}, "max_tokens")
        await refused("generate", {"prompt": "x", "max_tokens": -5}, "max_tokens")
        await refused(
            "judge",
            {
                "implementations": [
                    {"name": "a", "path": str(root / "impl")},
                    {"name": "b", "path": str(root / "missing")},
                ],
                "design": "a design",
            },
            "missing",
        )
        await refused(
            "judge",
            {"implementations": [{"path": str(root / "impl")}, {"path": str(root / "impl")}], "design": "a design"},
            "impl",
            "distinct",
        )
        await refused(
            "judge", {"implementations": [{"name": "a", "path": str(root / "impl")}], "design": "  "}, "design"
        )
        repo = make_repo(root / "repo")
        parallel = {"design": "add two integers", "feature": "calc", "repo": "repo", "test_command": PYTEST}
        await refused("showdown", {**parallel, "repo": "/"}, "repo", "outside the allowed roots")
        await refused("showdown", {**parallel, "repo": "impl"}, "not inside a git work tree", "git init")
        await refused("showdown", {**parallel, "runners": 7}, "runners must be 2-5")
        await refused("showdown", {**parallel, "feature": "Rate Limiter"}, "feature", "slug")
        await refused("showdown", {**parallel, "roles": {"fixer": "client"}}, "fixer 'client'", "parallel runners")
        await refused("showdown", {**parallel, "design": "docs/nope.md"}, "docs/nope.md", "looks like a file path")
        await refused("any_percent", {**parallel, "approaches": ["no colon here"]}, "approaches[0]", "slug: ")
        await refused("any_percent", {**parallel, "approaches": ["solo: one only"]}, "2-5 approaches")
        await refused("any_percent", {**parallel, "approaches": ["a: x", "a: y"]}, "approach slugs must differ")
        runs = (await t.call("list_runs", {})).structured_content
    assert runs["runs"] == []  # no run was created
    assert fake_llm.chat_requests() == []  # and no model was called
    assert not (root / "ws").exists()
    assert not (repo / ".worktrees").exists() and git(repo, "branch", "--list", "*speed-run*") == ""


@pytest.mark.parametrize(
    "args, needles",
    [
        (["generate", "x", "--out", "a-file"], ["a-file"]),
        (["generate", "x", "--out", "a-file/sub"], ["a-file"]),
        (["generate", "x", "--out", "out", "--max-tokens", "0"], ["--max-tokens"]),
        (["generate", "x", "--out", "out", "--max-tokens", "-3"], ["--max-tokens"]),
        (["turbo", "--task", "x", "--out", "ws", "--test-cmd", " "], ["--test-cmd", "empty"]),
        (["turbo", "--task", "x", "--out", "ws", "--test-cmd", "no-such-test-runner-zz"], ["no-such-test-runner-zz"]),
        (["turbo", "--task", "x", "--out", "a-file"], ["a-file"]),
        (["showdown", "--design", "x", "--feature", "calc", "--repo", "a-file"], ["a-file", "not a directory"]),
        (["showdown", "--design", "x", "--feature", "calc", "--runners", "9"], ["--runners", "2-5"]),
        (["showdown", "--design", "x", "--feature", "calc", "--runners", "many"], ["--runners 'many'", "2 to 5"]),
        (["showdown", "--design", "x", "--feature", "Bad Slug"], ["--feature", "slug"]),
        (["any-percent", "--design", "x", "--feature", "calc", "--approach", "nocolon"], ["--approach[0]", "slug: "]),
        (["any-percent", "--design", "x", "--feature", "calc", "--role", "fixer"], ["--role", "ROLE=MODEL"]),
    ],
)
def test_bad_input_on_the_cli_exits_2_before_any_work(
    tmp_path: Path, fake_llm: FakeLLM, args: list[str], needles: list[str]
) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")
    proc = run_cli(args, tmp_path, **fake_env(fake_llm))
    assert proc.returncode == 2, proc.stderr
    for needle in needles:
        assert needle in proc.stderr
    assert "Traceback" not in proc.stderr and "TurboInput" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert fake_llm.chat_requests() == []
    assert not (tmp_path / "out").exists() and not (tmp_path / "ws").exists()
    assert not (tmp_path / "state" / "runs.sqlite").exists()  # no run was created


def test_the_resume_hint_is_a_command_that_runs(tmp_path: Path, fake_llm: FakeLLM) -> None:
    (tmp_path / "contract.txt").write_text(CONTRACT_TEXT)
    fake_llm.script(Reply(status=401, error_message="invalid key"))
    proc = run_cli(
        ["turbo", "--contract", "contract.txt", "--out", "ws", "--test-cmd", PYTEST], tmp_path, **fake_env(fake_llm)
    )
    assert proc.returncode == 1
    run_id = re.search(r"^run (\S+)$", proc.stderr, re.M).group(1)
    [hint] = [line for line in proc.stderr.splitlines() if "speedrun resume" in line]
    command = shlex.split(hint[hint.index("speedrun resume") :])
    assert command == ["speedrun", "resume", run_id]

    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    resumed = run_cli(command[1:], tmp_path, **fake_env(fake_llm))  # the hint, as the user would paste it
    assert resumed.returncode == 0, resumed.stderr
    assert f"PASSED: 1 passed, 0 failed, 0 errors after 0 fix cycles; run {run_id}" in resumed.stdout


# --- check: every role, a hint that matches the error ----------------------------------------------------------


def test_check_covers_every_role_of_the_default_workflow(tmp_path: Path, fake_llm: FakeLLM) -> None:
    # The generator is fine; the planner names a provider whose key is not set.
    proc = run_cli(["check"], tmp_path, **fake_env(fake_llm), SPEEDRUN_PLANNER="groq")
    assert proc.returncode != 0
    assert "planner" in proc.stderr and "GROQ_API_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr and KEY not in proc.stdout + proc.stderr

    ok = run_cli(["check"], tmp_path, **fake_env(fake_llm))
    assert ok.returncode == 0, ok.stderr
    assert re.search(r"^planner\s+cerebras:fake-model$", ok.stdout, re.M)
    assert re.search(r"^fixer\s+cerebras:fake-model$", ok.stdout, re.M)


@pytest.mark.anyio
async def test_check_status_checks_every_role_and_its_hint_matches_the_error(tmp_path: Path, fake_llm: FakeLLM) -> None:
    env = server_env(tmp_path, fake_llm, SPEEDRUN_PLANNER="groq")
    async with mcp_session(tmp_path, env) as session:
        status = (await session.call_tool("check_status", {})).structured_content
    assert status["status"] == "error"
    assert "planner" in status["error"] and "GROQ_API_KEY" in status["error"]
    assert "CEREBRAS_API_KEY" not in (status.get("setup_hint") or "")  # the key is set; the hint must not say otherwise

    typo = server_env(tmp_path, fake_llm, SPEEDRUN_PROVIDER="cerebraz")
    async with mcp_session(tmp_path, typo) as session:
        status = (await session.call_tool("check_status", {})).structured_content
    assert status["status"] == "error"
    assert "cerebraz" in status["error"] and "unknown provider" in status["error"]
    assert "No model provider is configured" not in (status.get("setup_hint") or "")
    assert status["error"].count("unknown provider") == 1  # one message for the three roles it breaks

    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
        status = (await session.call_tool("check_status", {})).structured_content
    assert status["status"] == "ok"
    assert status["roles"] == {
        "generator": "cerebras:fake-model",
        "planner": "cerebras:fake-model",
        "fixer": "cerebras:fake-model",
    }
    assert status["isolation"]  # which sandbox the tests get
    assert [r.path for r in fake_llm.requests] == ["/v1/models"]  # one endpoint, asked once


# --- parity and noise -------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_roots_are_read_without_the_deprecation_noise(tmp_path: Path, fake_llm: FakeLLM) -> None:
    client_root = tmp_path / "client-project"
    client_root.mkdir()
    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm), client_roots=[client_root]) as session:
        for _ in range(2):
            fake_llm.script('<FILE path="a.py">\nA = 1\n</FILE>\n')
            result = await session.call_tool("generate_and_write_files", {"prompt": "x", "output_dir": "app"})
            assert not result.is_error
    assert (client_root / "app" / "a.py").read_text() == "A = 1\n"  # roots are still used
    log = (tmp_path / "server-stderr.log").read_text()
    assert "MCPDeprecationWarning" not in log and "roots capability is deprecated" not in log


@pytest.mark.anyio
async def test_every_run_tool_has_an_output_schema(tmp_path: Path) -> None:
    async with mcp_session(tmp_path, server_env(tmp_path, None)) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    run_tools = ("turbo", "judge", "showdown", "any_percent", "run_status", "resume_run", "cancel_run", "list_runs")
    for name in (*run_tools, "check_status", "clean"):
        schema = tools[name].output_schema
        assert schema and schema.get("properties"), name
    assert "next_actions" in tools["run_status"].output_schema["properties"]
    assert "report_path" in tools["turbo"].output_schema["properties"]
    assert "runners" in tools["showdown"].output_schema["properties"]  # each runner's latest step
    assert "removed" in tools["clean"].output_schema["properties"]
    for name in ("turbo", "generate_and_write_files"):
        assert "allow_paths" in tools[name].input_schema["properties"]


def server_pid(marker: str) -> int:
    """The pid of the `speedrun mcp` process whose environment holds `marker` (its own SPEEDRUN_HOME)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (
                b"speedrun\x00mcp" in (proc / "cmdline").read_bytes()
                and marker.encode() in (proc / "environ").read_bytes()
            ):
                return int(proc.name)
        except OSError:
            continue
    raise AssertionError("no speedrun mcp process found")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/<pid>/maps")
@pytest.mark.anyio
async def test_gateway_imports_are_warmed_after_initialize_without_a_tool_call(tmp_path: Path) -> None:
    # langchain_openai loads tiktoken's compiled module: its presence in the server's memory map shows the gateway
    # was imported, without timing anything and without calling a tool.
    env = server_env(tmp_path, None)
    async with mcp_session(tmp_path, env):
        maps = Path(f"/proc/{server_pid(env['SPEEDRUN_HOME'])}/maps")
        with anyio.fail_after(30):
            while "_tiktoken" not in maps.read_text():
                await anyio.sleep(0.1)


# --- rate-budget waits are never silent --------------------------------------------------------------------------

EXHAUSTED = {
    "x-ratelimit-limit-requests-minute": "30",
    "x-ratelimit-remaining-requests-minute": "0",
    "x-ratelimit-reset-requests-minute": "3.5",
}


@pytest.mark.anyio
async def test_rate_waits_show_up_as_mcp_progress_and_in_the_runs_progress(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
        heard: list[str] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            heard.append(message or "")

        fake_llm.script(Reply(content="first", headers=EXHAUSTED), "second")
        await session.call_tool("generate", {"prompt": "a"})
        second = await session.call_tool("generate", {"prompt": "b"}, progress_callback=on_progress)
        assert second.structured_content["response"] == "second"
        assert any("cerebras" in m and "s left" in m for m in heard), heard

        heard.clear()
        fake_llm.script(
            Reply(content="x", headers=EXHAUSTED), file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC})
        )
        await session.call_tool("generate", {"prompt": "c"})
        done = await session.call_tool("turbo", turbo_args(tmp_path / "root" / "ws"), progress_callback=on_progress)
        assert done.structured_content["status"] == "passed"
        assert any(m.startswith("waiting: ") and "cerebras" in m for m in heard), heard  # the run's own progress


def test_cli_generate_prints_a_line_while_it_waits_for_the_rate_budget(tmp_path: Path, fake_llm: FakeLLM) -> None:
    # The first reply is cut by the token limit and leaves the budget empty; the follow-up request must wait.
    fake_llm.script(
        Reply(content='<FILE path="a.py">\nA = 1\n', finish_reason="length", headers=EXHAUSTED), "A = 1\n</FILE>\n"
    )
    proc = run_cli(["generate", "x", "--out", "out"], tmp_path, **fake_env(fake_llm))
    assert len(fake_llm.chat_requests()) == 2, proc.stderr
    waits = [line for line in proc.stderr.splitlines() if line.strip().startswith("waiting:")]
    assert waits and "cerebras" in waits[0], proc.stderr


# --- allow_paths: protected places only where the user names them ---------------------------------------------

CI_REPLY = '<FILE path=".github/workflows/ci.yml">\non: push\n</FILE>\n<FILE path="app.py">\nA = 1\n</FILE>\n'


@pytest.mark.anyio
async def test_allow_paths_lets_a_named_protected_file_through_over_mcp(tmp_path: Path, fake_llm: FakeLLM) -> None:
    proj = tmp_path / "root" / "proj"
    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
        fake_llm.script(CI_REPLY)
        refused = (
            await session.call_tool("generate_and_write_files", {"prompt": "x", "output_dir": "proj"})
        ).structured_content
        assert refused["status"] == "partial"
        assert [e["path"] for e in refused["errors"]] == [".github/workflows/ci.yml"]
        assert not (proj / ".github").exists()

        fake_llm.script(CI_REPLY)
        allowed = (
            await session.call_tool(
                "generate_and_write_files",
                {"prompt": "x", "output_dir": "proj", "allow_paths": [".github/workflows/ci.yml"]},
            )
        ).structured_content
    assert allowed["status"] == "ok", allowed
    assert (proj / ".github" / "workflows" / "ci.yml").read_text() == "on: push\n"


def test_allow_path_flag_on_the_cli(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(CI_REPLY, CI_REPLY)
    refused = run_cli(["generate", "x", "--out", "out"], tmp_path, **fake_env(fake_llm))
    assert refused.returncode == 1 and ".github/workflows/ci.yml" in refused.stdout
    assert not (tmp_path / "out" / ".github").exists()
    allowed = run_cli(
        ["generate", "x", "--out", "out", "--allow-path", ".github/workflows/ci.yml"], tmp_path, **fake_env(fake_llm)
    )
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert (tmp_path / "out" / ".github" / "workflows" / "ci.yml").read_text() == "on: push\n"


@pytest.mark.anyio
async def test_codegen_warnings_reach_the_caller(tmp_path: Path, fake_llm: FakeLLM) -> None:
    unclosed = '<FILE path="a.py">\nA = 1\n'  # the reply ended normally without the closing tag
    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
        fake_llm.script(unclosed)
        out = (
            await session.call_tool("generate_and_write_files", {"prompt": "x", "output_dir": "proj"})
        ).structured_content
    assert (tmp_path / "root" / "proj" / "a.py").read_text() == "A = 1\n"
    assert any("a.py" in w for w in out["warnings"]), out

    fake_llm.script(unclosed)
    proc = run_cli(["generate", "x", "--out", "out"], tmp_path, **fake_env(fake_llm))
    assert any(line.startswith("warning: ") and "a.py" in line for line in proc.stdout.splitlines()), proc.stdout


@pytest.mark.anyio
async def test_check_says_how_generation_timeout_was_read(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm, GENERATION_TIMEOUT="120")) as session:
        status = (await session.call_tool("check_status", {})).structured_content
    assert status["status"] == "ok"
    assert "120 seconds" in status["timeout_note"]

    proc = run_cli(["check"], tmp_path, **fake_env(fake_llm), GENERATION_TIMEOUT="120")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^timeout\s+GENERATION_TIMEOUT=120 is read as 120 seconds", proc.stdout, re.M)
    assert re.search(r"^tests\s+\S", proc.stdout, re.M)  # which isolation the tests get


# --- next actions: each edge renders RunStatus.next_actions in its own words -----------------------------------

BUGGY_CALC = "def add(a, b):\n    return a - b\n"


def test_every_next_step_the_cli_prints_for_a_paused_run_is_a_command_that_runs(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    (tmp_path / "contract.txt").write_text(CONTRACT_TEXT)
    fake_llm.script(file_blocks({"calc.py": BUGGY_CALC, "test_calc.py": TEST_CALC}))
    proc = run_cli(
        ["turbo", "--contract", "contract.txt", "--out", "ws", "--test-cmd", PYTEST, "--client-fix"],
        tmp_path,
        **fake_env(fake_llm),
    )
    assert proc.returncode == 3, proc.stderr  # waits for the user's fix
    run_id = re.search(r"^run (\S+)$", proc.stderr, re.M).group(1)
    assert "test_calc.py::test_add" in proc.stderr  # what failed
    hints = [line for line in proc.stderr.splitlines() if "speedrun " in line]
    commands = [shlex.split(line[line.index("speedrun ") :]) for line in hints]
    assert commands == [  # the whole rest of each line is the command: nothing to edit before pasting it
        ["speedrun", "resume", run_id, "--action", "retest"],
        ["speedrun", "resume", run_id, "--action", "stop"],
    ], proc.stderr

    (tmp_path / "ws" / "calc.py").write_text(FIXED_CALC)  # the user's fix
    retest = run_cli(commands[0][1:], tmp_path, **fake_env(fake_llm))
    assert retest.returncode == 0, retest.stderr
    assert f"PASSED: 1 passed, 0 failed, 0 errors after 1 fix cycle; run {run_id}" in retest.stdout
    assert len(fake_llm.chat_requests()) == 1  # the fix was the user's: no fixer model was called


# --- check names the variable that really chose the model -------------------------------------------------------


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"SPEEDRUN_PROVIDER": "cerebras:no-such-model"}, "SPEEDRUN_PROVIDER"),
        ({"CEREBRAS_MODEL": "no-such-model"}, "CEREBRAS_MODEL"),
        ({"SPEEDRUN_GENERATOR": "cerebras:no-such-model"}, "SPEEDRUN_GENERATOR"),
        ({"SPEEDRUN_GENERATOR": "cerebras", "CEREBRAS_MODEL": "no-such-model"}, "CEREBRAS_MODEL"),
    ],
)
def test_check_names_the_variable_that_chose_an_unlisted_model(
    tmp_path: Path, fake_llm: FakeLLM, env: dict[str, str], variable: str
) -> None:
    proc = run_cli(["check"], tmp_path, **{**fake_env(fake_llm), **env})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "model 'no-such-model' is not in the endpoint's model list (fake-model)" in proc.stderr, proc.stderr
    assert f"set {variable} to one of them" in proc.stderr, proc.stderr


# --- the server's lifespan owns the runs and closes them on shutdown -------------------------------------------


@pytest.mark.anyio
async def test_the_servers_lifespan_stops_live_runs_and_closes_the_run_database(
    speedrun_env: dict[str, str], tmp_path: Path, fake_llm: FakeLLM
) -> None:
    import asyncio

    from mcp import Client

    from speedrun.config import Settings
    from speedrun.mcp_bridge.server import create_server

    wal = Path(speedrun_env["SPEEDRUN_HOME"]) / "runs.sqlite-wal"
    fake_llm.script(Reply(content=file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}), delay=30))
    with anyio.fail_after(60):
        async with Client(create_server(Settings())) as client:  # in process: the server outlives no test
            started = (await client.call_tool("turbo", turbo_args(tmp_path / "ws", wait_seconds=0))).structured_content
            assert started["status"] == "running"
            while not fake_llm.chat_requests():  # the run is in flight: its generator call is being answered
                await anyio.sleep(0.05)
            assert wal.exists()  # the run database is open (its write-ahead log is in use)
    # The client is gone and the server shut down: the run's task is stopped, not left running in the background
    # (it stays resumable: see the next test). (Whether sqlite folds its log back in at close varies when a
    # write was cancelled, so the log file is not asserted on here.)
    assert not [t for t in asyncio.all_tasks() if t.get_name() == f"speedrun:{started['run_id']}" and not t.done()]
    assert not (tmp_path / "ws" / "calc.py").exists()


@pytest.mark.anyio
async def test_a_run_in_flight_when_the_server_stops_is_resumed_by_the_next_one(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(Reply(content=file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}), delay=30))
    with anyio.fail_after(90):
        async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
            started = (await session.call_tool("turbo", turbo_args("ws", wait_seconds=0))).structured_content
            assert started["status"] == "running"
            while not fake_llm.chat_requests():
                await anyio.sleep(0.05)

        fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
        async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
            status = (await session.call_tool("run_status", {"run_id": started["run_id"]})).structured_content
            assert status["status"] == "interrupted"
            assert status["next_actions"] == [
                {"tool": "resume_run", "args": {"run_id": started["run_id"], "action": "continue"}, "why": ANY}
            ]
            done = await session.call_tool("resume_run", {"run_id": started["run_id"], "action": "continue"})
            assert done.structured_content["status"] == "passed"
    assert (tmp_path / "root" / "ws" / "calc.py").read_text() == FIXED_CALC
