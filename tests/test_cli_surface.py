"""The CLI as people meet it: help on every option, exit codes, plurals, one line per refusal, live view, resume
reports, and the Mermaid diagrams of the real graphs (which the README embeds)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fake_llm import FakeLLM, Reply
from tests.helpers import (
    CONTRACT_TEXT,
    FIXED_CALC,
    PYTEST,
    TEST_CALC,
    ctrl_c_able,
    fake_env,
    file_blocks,
    read_terminal,
    run_cli,
)

ROOT = Path(__file__).resolve().parent.parent
BUGGY_CALC = "def add(a, b):\n    return a - b\n"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _help(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from speedrun.cli import build_parser

    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*args, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def _undocumented(help_text: str) -> list[str]:
    """Option and argument lines of an argparse help page that have no help text after them."""
    missing, lines = [], help_text.splitlines()
    in_list = False
    for i, line in enumerate(lines):
        if line.endswith(":") and not line.startswith(" "):  # "options:", "positional arguments:", "exit codes:"
            in_list = line in ("options:", "positional arguments:")
            continue
        if not in_list or not re.match(r"^  \S", line):
            continue
        has_text = re.search(r"\S {2,}\S", line.strip()) is not None
        follows = i + 1 < len(lines) and re.match(r"^ {4,}\S", lines[i + 1]) is not None
        if not (has_text or follows):
            missing.append(line.strip())
    return missing


def test_every_option_of_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    top = _help([], capsys)
    commands = re.findall(r"^    (\S+)\s", top, re.M)
    assert {"check", "generate", "turbo", "resume", "runs", "judge", "showdown", "any-percent", "graph"} <= set(
        commands
    ), top
    assert _undocumented(top) == []
    for command in commands:
        page = _help([command], capsys)
        assert _undocumented(page) == [], (command, page)


def test_the_help_check_catches_an_option_without_help(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--limit", type=int, help="how many")
    assert _undocumented(parser.format_help()) == ["--quiet"]


def test_exit_codes_are_documented_in_help_and_readme(capsys: pytest.CaptureFixture[str]) -> None:
    from speedrun.cli import EXIT_CODES

    readme = (ROOT / "README.md").read_text()
    for page in (_help([], capsys), _help(["turbo"], capsys), _help(["showdown"], capsys)):
        assert EXIT_CODES in page
    for code, meaning in (("0", "passed"), ("1", "failed"), ("2", "bad input"), ("3", "waiting"), ("130", "interr")):
        assert re.search(rf"^\s+{code}\s+{meaning}", EXIT_CODES, re.M), code
        assert re.search(rf"^\| `{code}` \| {meaning}", readme, re.M | re.I), code


def test_runs_limit_zero_is_refused_naming_the_flag(tmp_path: Path) -> None:
    for bad in ("0", "-3", "many"):
        proc = run_cli(["runs", "--limit", bad], tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "--limit" in proc.stderr and "1 or more" in proc.stderr
        assert "no runs yet" not in proc.stdout and "Traceback" not in proc.stderr
    assert run_cli(["runs", "--limit", "1"], tmp_path).stdout.strip() == "no runs yet"


# --- diagrams ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["turbo", "judge", "showdown", "any_percent"])
def test_graph_prints_the_compiled_graph_as_mermaid_and_the_readme_embeds_it(name: str, tmp_path: Path) -> None:
    import importlib

    proc = run_cli(["graph", name], tmp_path)  # no key needed

    assert proc.returncode == 0, proc.stderr
    expected = importlib.import_module(f"speedrun.graphs.{name}").graph.get_graph().draw_mermaid()
    assert proc.stdout == expected
    assert "run_tests" in proc.stdout or "measure" in proc.stdout or "run_runner" in proc.stdout
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```mermaid\n(.*?)```", readme, re.S)
    assert expected in blocks, f"README's {name} diagram is stale: paste `speedrun graph {name}`"


def test_graph_of_an_unknown_workflow_exits_2_listing_the_names(tmp_path: Path) -> None:
    proc = run_cli(["graph", "speedy"], tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "'speedy'" in proc.stderr
    for name in ("turbo", "judge", "showdown", "any_percent"):
        assert name in proc.stderr.splitlines()[-1]


# --- generate: plurals, one line per refusal ---------------------------------------------------------------


def test_generate_reads_right_for_one_file_and_says_a_refusal_once(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(
        Reply(
            content='<FILE path="../outside.py">\nX = 1\n</FILE>\n<FILE path="one.py">\nY = 2\n</FILE>\n',
            usage={"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41},
        )
    )
    proc = run_cli(["generate", "x", "--out", "out"], tmp_path, **fake_env(fake_llm))

    assert proc.returncode == 1, proc.stderr
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if "outside.py" in line]
    assert len(said) == 1 and said[0].startswith("refused: ../outside.py: "), said
    assert "partial: 1 file, 1 line in " in proc.stdout
    assert "; 40 prompt + 1 completion token\n" in proc.stdout
    assert not (tmp_path / "outside.py").exists() and (tmp_path / "out" / "one.py").read_text() == "Y = 2\n"


# --- turbo: exit codes 0, 1, 3, 130; summary; resume --action edits -------------------------------------------


def _turbo(tmp_path: Path, fake_llm: FakeLLM, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "contract.txt").write_text(CONTRACT_TEXT)
    args = ["turbo", "--contract", "contract.txt", "--out", "ws", "--test-cmd", PYTEST, *extra]
    return run_cli(args, tmp_path, **fake_env(fake_llm))


def _run_id(proc: subprocess.CompletedProcess[str]) -> str:
    found = re.search(r"^run (\S+)$", proc.stderr, re.M)
    assert found, proc.stderr
    return found.group(1)


def test_a_passing_turbo_exits_0_and_names_its_output_dir_and_run_id(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    proc = _turbo(tmp_path, fake_llm)

    assert proc.returncode == 0, proc.stderr
    run_id = _run_id(proc)
    assert "after 0 fix cycles; run" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1] == f"output: {(tmp_path / 'ws').resolve()}  (run {run_id})"


def test_a_turbo_whose_tests_still_fail_exits_1(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(
        file_blocks({"calc.py": BUGGY_CALC, "test_calc.py": TEST_CALC}),
        json.dumps({"diagnosis": "no idea", "edits": [{"path": "calc.py", "search": "nothing", "replace": "x"}]}),
        json.dumps({"diagnosis": "no idea", "edits": [{"path": "calc.py", "search": "nothing", "replace": "x"}]}),
    )
    proc = _turbo(tmp_path, fake_llm, "--max-fix-cycles", "1")

    assert proc.returncode == 1, proc.stderr
    assert "FAILED: 0 passed, 1 failed, 0 errors after 1 fix cycle; run" in proc.stdout
    assert f"output: {(tmp_path / 'ws').resolve()}  (run {_run_id(proc)})" in proc.stdout


def test_resume_with_edits_reports_applied_n_of_m_and_why_the_others_were_not(
    tmp_path: Path, fake_llm: FakeLLM
) -> None:
    fake_llm.script(file_blocks({"calc.py": BUGGY_CALC, "test_calc.py": TEST_CALC}))
    paused = _turbo(tmp_path, fake_llm, "--client-fix")
    assert paused.returncode == 3, paused.stderr  # waiting for your fix
    run_id = _run_id(paused)

    # First answer: nothing matches, so the run waits again and says why for the one edit.
    (tmp_path / "miss.json").write_text(json.dumps([{"path": "calc.py", "search": "return a * b", "replace": "x"}]))
    missed = run_cli(["resume", run_id, "--action", "edits", "--edits", "miss.json"], tmp_path, **fake_env(fake_llm))
    assert missed.returncode == 3, missed.stderr
    assert "edits: applied 0 of 1 edit\n" in missed.stdout
    assert re.search(r"^  not applied: calc\.py: not found: \S", missed.stdout, re.M), missed.stdout

    # Second answer: one edit fixes the bug, one names a file line that is not there.
    edits = [
        {"path": "calc.py", "search": "    return a - b", "replace": "    return a + b"},
        {"path": "calc.py", "search": "def sub(a, b):", "replace": "def minus(a, b):"},
    ]
    (tmp_path / "edits.json").write_text(json.dumps(edits))
    done = run_cli(["resume", run_id, "--action", "edits", "--edits", "edits.json"], tmp_path, **fake_env(fake_llm))

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ws" / "calc.py").read_text() == FIXED_CALC
    lines = done.stdout.splitlines()
    assert "edits: applied 1 of 2 edits" in lines
    [miss] = [line for line in lines if line.startswith("  not applied: ")]
    assert miss.startswith("  not applied: calc.py: not found: "), miss
    assert "after 2 fix cycles" in done.stdout
    assert len(fake_llm.chat_requests()) == 1  # the fixes were the user's


def test_ctrl_c_during_a_turbo_exits_130_and_keeps_it_resumable(tmp_path: Path, fake_llm: FakeLLM) -> None:
    (tmp_path / "contract.txt").write_text(CONTRACT_TEXT)
    fake_llm.script(Reply(content=file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}), delay=20))
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "SPEEDRUN_HOME": str(tmp_path / "state")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "speedrun", "turbo", "--contract", "contract.txt", "--out", "ws", "--test-cmd", PYTEST],
        cwd=tmp_path,
        env={**env, **fake_env(fake_llm)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_able,
    )
    deadline = time.monotonic() + 60
    while not fake_llm.chat_requests():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 130, err
    run_id = re.search(r"^run (\S+)$", err, re.M).group(1)  # type: ignore[union-attr]
    assert f"continue later with: speedrun resume {run_id}" in err
    assert "Traceback" not in err
    fake_llm.script(file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}))
    resumed = run_cli(["resume", run_id], tmp_path, **fake_env(fake_llm))
    assert resumed.returncode == 0, resumed.stderr


# --- the live view at a terminal ------------------------------------------------------------------------------


def test_turbo_at_a_terminal_shows_step_elapsed_time_and_tokens_so_far(tmp_path: Path, fake_llm: FakeLLM) -> None:
    import pty

    (tmp_path / "contract.txt").write_text(CONTRACT_TEXT)
    usage = {"prompt_tokens": 1200, "completion_tokens": 345, "total_tokens": 1545}
    fake_llm.script(
        Reply(content=file_blocks({"calc.py": FIXED_CALC, "test_calc.py": TEST_CALC}), delay=1.0, usage=usage)
    )
    main, child = pty.openpty()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "SPEEDRUN_HOME": str(tmp_path / "state")}
    # A slow test command keeps the run on its test step long enough for several redraws.
    slow = f"sleep 1.5 && {PYTEST}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "speedrun", "turbo", "--contract", "contract.txt", "--out", "ws", "--test-cmd", slow],
        cwd=tmp_path,
        env={**env, **fake_env(fake_llm), "TERM": "xterm", "COLUMNS": "160"},
        stdout=child,
        stderr=child,
    )
    os.close(child)
    seen = read_terminal(main)
    assert proc.wait(timeout=30) == 0
    raw = seen.decode("utf-8", "replace")
    screen = ANSI.sub("", raw)
    assert "\x1b[" in raw and re.search(r"┃ step\s+┃ elapsed\s+┃ tokens", screen), screen[-2000:]
    # The clock moved between redraws, and the tokens the model reported showed up once its call ended.
    clocks = {float(s) for s in re.findall(r"│ \S+\s+│ (\d+\.\d) s\s+│", screen)}
    assert len(clocks) >= 3, screen[-2000:]
    assert re.search(r"│ run_tests\s+│ \d+\.\d s\s+│ 1,545\s+│", screen), screen[-2000:]
    assert "1,545 tokens (1,200 prompt + 345 completion)" in screen
    assert "PASSED: 1 passed, 0 failed, 0 errors after 0 fix cycles" in screen
