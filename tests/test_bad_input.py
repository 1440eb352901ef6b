"""Bad input through a real MCP session and the CLI: one clear error each, nothing changed, the server still answers."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession

from tests.fake_llm import FakeLLM, Reply
from tests.helpers import (
    CONTRACT_TEXT,
    PYTEST,
    TEST_CALC,
    error_text,
    fake_env,
    file_blocks,
    git,
    make_repo,
    mcp_session,
    processes_marked,
    run_cli,
    server_env,
)

BIG = "word " * 2_000_000  # 10 MB
ANSWER_BOUND_S = 2.0  # a concurrent list_runs must answer within this, whatever else the server is doing
MAX_ERROR_CHARS = 700

# Leaks of the machinery behind an error: pydantic's class and link, a traceback, a dumped input.
LEAKS = ("validation error for", "Arguments", "pydantic", "errors.pydantic.dev", "Traceback", "input_value", "type=")


def _layout(tmp_path: Path) -> dict[str, Path]:
    """Under the server's root: a file, a clean repo, a dirty repo, a plain directory."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "afile").write_text("not a directory\n")
    repo = make_repo(root / "repo")
    dirty = make_repo(root / "dirty")
    (dirty / "README.md").write_text("uncommitted change\n")
    (root / "plain").mkdir()
    return {"root": root, "repo": repo, "dirty": dirty}


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root (outside .git) with its bytes, for 'nothing changed'."""
    seen: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        if ".git" in path.relative_to(root).parts:
            continue
        seen[str(path.relative_to(root))] = path.read_bytes() if path.is_file() else None
    return seen


def _git_state(repo: Path) -> tuple[str, str]:
    return git(repo, "branch", "-a"), git(repo, "worktree", "list", "--porcelain")


# (tool, arguments, a word the error must name)
BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    # wrong types
    ("generate", {"prompt": 5}, "prompt"),
    ("generate", {"prompt": ["a", "b"]}, "prompt"),
    ("generate", {"prompt": None}, "prompt"),
    ("generate", {"prompt": "hi", "max_tokens": "ten"}, "max_tokens"),
    ("generate", {"prompt": "hi", "max_tokens": {"n": 1}}, "max_tokens"),
    ("generate_and_write_files", {"prompt": "x", "output_dir": ["out"]}, "output_dir"),
    ("generate_and_write_files", {"prompt": "x", "output_dir": "o", "context_files": "a.py"}, "context_files"),
    ("turbo", {"output_dir": "o", "task": "x", "max_fix_cycles": "three"}, "max_fix_cycles"),
    ("turbo", {"output_dir": "o", "task": "x", "roles": ["fixer"]}, "roles"),
    ("turbo", {"output_dir": None, "task": "x"}, "output_dir"),
    (
        "showdown",
        {"design": "d", "feature": "f", "repo": "repo", "include_uncommitted": {"a": 1}},
        "include_uncommitted",
    ),
    ("showdown", {"design": "d", "feature": "f", "repo": "repo", "runners": "many"}, "runners"),
    ("any_percent", {"design": "d", "feature": "f", "repo": "repo", "approaches": "a: b"}, "approaches"),
    ("judge", {"implementations": "repo", "design": "d"}, "implementations"),
    ("run_status", {"run_id": 5}, "run_id"),
    ("resume_run", {"run_id": "x", "action": "bogus"}, "action"),
    ("cancel_run", {"run_id": None}, "run_id"),
    ("list_runs", {"limit": "ten"}, "limit"),
    # empty and whitespace-only strings
    ("generate", {"prompt": ""}, "prompt"),
    ("generate", {"prompt": " \n\t "}, "prompt"),
    ("generate_and_write_files", {"prompt": "", "output_dir": "made-for-nothing"}, "prompt"),
    ("generate_and_write_files", {"prompt": "  ", "output_dir": "made-for-nothing"}, "prompt"),
    ("generate_and_write_files", {"prompt": "x", "output_dir": ""}, "output_dir"),
    ("generate_and_write_files", {"prompt": "x", "output_dir": "   "}, "output_dir"),
    ("turbo", {"output_dir": "o", "task": ""}, "task"),
    ("turbo", {"output_dir": "o", "contract": "  \n"}, "contract"),
    ("turbo", {"output_dir": "", "task": "x"}, "output_dir"),
    ("turbo", {"output_dir": "o", "task": "x", "test_command": " "}, "test_command"),
    ("showdown", {"design": "", "feature": "f", "repo": "repo"}, "design"),
    ("showdown", {"design": "d", "feature": "", "repo": "repo"}, "feature"),
    ("any_percent", {"design": " \n", "feature": "f", "repo": "repo"}, "design"),
    ("judge", {"implementations": [{"path": "repo"}], "design": ""}, "design"),
    ("judge", {"implementations": [{"path": ""}], "design": "d"}, "path"),
    ("run_status", {"run_id": ""}, "run"),
    ("cancel_run", {"run_id": " "}, "run"),
    # 10 MB texts
    ("generate", {"prompt": BIG}, "prompt"),
    ("generate", {"prompt": "hi", "system_prompt": BIG}, "system_prompt"),
    ("generate_and_write_files", {"prompt": BIG, "output_dir": "made-for-nothing"}, "prompt"),
    ("turbo", {"output_dir": "o", "task": BIG}, "task"),
    ("turbo", {"output_dir": "o", "contract": BIG}, "contract"),
    ("showdown", {"design": BIG, "feature": "f", "repo": "repo"}, "design"),
    ("any_percent", {"design": BIG, "feature": "f", "repo": "repo"}, "design"),
    ("judge", {"implementations": [{"path": "repo"}], "design": BIG}, "design"),
    ("run_status", {"run_id": BIG}, "run"),
    # an output_dir that is a file; missing, non-git and dirty repos
    ("generate_and_write_files", {"prompt": "x", "output_dir": "afile"}, "output_dir"),
    ("turbo", {"output_dir": "afile", "task": "x"}, "output_dir"),
    ("judge", {"implementations": [{"path": "afile"}], "design": "d"}, "afile"),
    ("judge", {"implementations": [{"path": "missing"}], "design": "d"}, "missing"),
    ("showdown", {"design": "d", "feature": "f", "repo": "missing"}, "repo"),
    ("showdown", {"design": "d", "feature": "f", "repo": "plain"}, "repo"),
    ("any_percent", {"design": "d", "feature": "f", "repo": "missing"}, "repo"),
    ("showdown", {"design": "d", "feature": "f", "repo": "dirty"}, "uncommitted"),
    ("any_percent", {"design": "d", "feature": "f", "repo": "dirty"}, "uncommitted"),
]


async def _list_runs_promptly(session: ClientSession) -> list[Any]:
    started = time.monotonic()
    result = await session.call_tool("list_runs", {})
    elapsed = time.monotonic() - started
    assert not result.is_error
    assert elapsed < ANSWER_BOUND_S, f"list_runs took {elapsed:.2f} s"
    return list(result.structured_content["runs"])


@pytest.mark.anyio
async def test_every_bad_call_gets_one_clear_error_and_changes_nothing(tmp_path: Path, fake_llm: FakeLLM) -> None:
    places = _layout(tmp_path)
    before, repo_before, dirty_before = (
        _snapshot(places["root"]),
        _git_state(places["repo"]),
        _git_state(places["dirty"]),
    )
    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
        tools = {t.name for t in (await session.list_tools()).tools}
        assert {name for name, _, _ in BAD_CALLS} == tools - {"check_status", "clean"}  # every tool with inputs
        assert (await session.call_tool("list_runs", {})).structured_content == {"runs": []}  # opens the run store
        for name, args, names in BAD_CALLS:
            with anyio.fail_after(30):
                result = await session.call_tool(name, args)
            text = error_text(result)
            shown = {k: v if not isinstance(v, str) or len(v) < 80 else f"<{len(v)} chars>" for k, v in args.items()}
            assert names in text, (name, shown, text)
            assert len(text) <= MAX_ERROR_CHARS, (name, shown, text)
            assert not any(leak in text for leak in LEAKS), (name, shown, text)
            assert await _list_runs_promptly(session) == []  # no run created, and the server answers at once

    assert fake_llm.chat_requests() == []  # no model request for any of them
    assert _snapshot(places["root"]) == before  # no output dir, file or backup made anywhere under the root
    assert (_git_state(places["repo"]), _git_state(places["dirty"])) == (repo_before, dirty_before)


@pytest.mark.anyio
async def test_a_wrong_type_names_the_argument_and_the_type_wanted(tmp_path: Path, fake_llm: FakeLLM) -> None:
    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm)) as session:
        text = error_text(await session.call_tool("turbo", {"output_dir": "o", "task": "x", "max_fix_cycles": "3x"}))
        assert "max_fix_cycles: must be a whole number" in text
        text = error_text(await session.call_tool("showdown", {"design": "d", "feature": "f", "runners": "many"}))
        assert "runners: must be a whole number" in text and "runners: Input should be 'auto'" in text
        text = error_text(await session.call_tool("generate", {"prompt": BIG}))
        assert "500,000-character limit" in text and "10,000,000 characters" in text
    assert fake_llm.chat_requests() == []


def _daemons(tag: str) -> tuple[str, list[str]]:
    """A shell snippet that leaves sleepers behind in four ways (background, nohup, setsid, double fork); each
    sleeps a fractional number of seconds unique to this test, so /proc tells them apart from anything else."""
    marks = [f"300.{tag}{i}" for i in range(1, 5)]

    def sleeper(i: int) -> str:  # leaves .daemon-N behind, so the test knows it really started
        return f"sh -c 'touch .daemon-{i}; exec sleep {marks[i - 1]}' >/dev/null 2>&1 </dev/null"

    snippet = (
        f"{sleeper(1)} & nohup {sleeper(2)} & setsid {sleeper(3)} & ( ( {sleeper(4)} & ) & ) ; sleep 0.3; echo started"
    )
    return snippet, marks


@pytest.mark.anyio
@pytest.mark.parametrize("sandbox", ["auto", pytest.param("none", marks=pytest.mark.heavy)])
async def test_hanging_and_daemon_forking_test_commands_end_with_nothing_left(
    tmp_path: Path, fake_llm: FakeLLM, sandbox: str
) -> None:
    """With bubblewrap (auto, where it works) and without it (none: the process group and session are killed)."""
    tag = str(os.getpid())
    daemons, marks = _daemons(tag)
    hang_mark = f"301.{tag}"
    fake_llm.script(
        *[Reply(content=file_blocks({"calc.py": "def add(a, b):\n    return a + b\n", "test_calc.py": TEST_CALC}))] * 2
    )
    async with mcp_session(tmp_path, server_env(tmp_path, fake_llm, SPEEDRUN_SANDBOX=sandbox)) as session:
        # a test command that hangs: the run ends with a timeout, the hung sleeper killed, the server answering
        hung = tmp_path / "root" / "hung"
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            results: dict[str, Any] = {}

            async def run_hanging() -> None:
                results["hung"] = await session.call_tool(
                    "turbo",
                    {
                        "output_dir": str(hung),
                        "contract": CONTRACT_TEXT,
                        "test_command": f"sleep {hang_mark}",
                        "max_fix_cycles": 0,
                        "test_timeout_s": 2,
                        "wait_seconds": 60,
                    },
                )

            tg.start_soon(run_hanging)
            with anyio.fail_after(30):
                while not processes_marked(hang_mark):
                    await anyio.sleep(0.05)
            runs = await _list_runs_promptly(session)  # answered while the tests hang
            assert [r["status"] for r in runs] == ["running"]
        out = results["hung"].structured_content
        assert out["status"] == "failed", out
        assert "Timed out after 2 s" in str(out), out
        assert time.monotonic() - started < 30
        assert processes_marked(hang_mark) == []

        # a test command that leaves daemons behind: once the run is over, none of them is alive
        forked = tmp_path / "root" / "forked"
        result = await session.call_tool(
            "turbo",
            {
                "output_dir": str(forked),
                "contract": CONTRACT_TEXT,
                "test_command": f"{daemons}; {PYTEST}",
                "max_fix_cycles": 0,
                "wait_seconds": 60,
            },
        )
        assert result.structured_content["status"] == "passed", result.structured_content
        assert sorted(p.name for p in forked.glob(".daemon-*")) == [f".daemon-{i}" for i in range(1, 5)]
        with anyio.fail_after(5):  # the kill is sent when the tests end; the kernel reaps at its pace
            while alive := [m for m in marks if processes_marked(m)]:
                await anyio.sleep(0.1)
        assert not alive


def test_cli_refuses_the_same_bad_input_before_anything_is_made(tmp_path: Path, fake_llm: FakeLLM) -> None:
    (tmp_path / "big.md").write_text(BIG)
    (tmp_path / "afile").write_text("x\n")
    repo = make_repo(tmp_path / "repo")
    before = _snapshot(tmp_path)
    cases = [
        (["turbo", "--contract", "big.md", "--out", "o"], "--contract"),
        (["turbo", "--task", "", "--out", "o"], "task"),
        (["turbo", "--task", "x", "--out", "afile"], "afile"),
        (["showdown", "--design", "big.md", "--feature", "f", "--repo", str(repo)], "design"),
        (["judge", "--design", "big.md", str(repo)], "design"),
    ]
    for args, names in cases:
        proc = run_cli(args, tmp_path, **fake_env(fake_llm))
        shown = " ".join(a if len(a) < 80 else "<big>" for a in args)
        assert proc.returncode == 2, (shown, proc.stderr[-500:])
        assert names in proc.stderr, (shown, proc.stderr[-500:])
        assert len(proc.stderr) < 1000 and "Traceback" not in proc.stderr, (shown, proc.stderr[-500:])
    assert fake_llm.chat_requests() == []
    after = {k: v for k, v in _snapshot(tmp_path).items() if not k.startswith(("state", "home"))}
    assert after == before
