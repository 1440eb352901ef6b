"""The `speedrun` command as a user runs it: a subprocess with an explicit environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fake_llm import FakeLLM, Reply
from tests.helpers import CLI_KEY as KEY
from tests.helpers import fake_env, run_cli


@pytest.mark.parametrize("args", [["generate", "write hello.py", "--out", "out"], ["check"]])
def test_no_key_stops_with_one_clear_message(tmp_path: Path, args: list[str]) -> None:
    proc = run_cli(args, tmp_path)

    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in ("CEREBRAS_API_KEY", "settings.json", "Ollama"):
        assert needle in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # stopped before touching the disk


def test_generate_writes_files_and_prints_a_table(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.script(
        Reply(
            content='<FILE path="app/main.py">\ndef main():\n    return "UNIQUE_CODE_7"\n</FILE>\n'
            '<FILE path="app/__init__.py">\n</FILE>\n',
            chunk_size=12,
        )
    )

    proc = run_cli(["generate", "a tiny app", "--out", "out"], tmp_path, **fake_env(fake_llm))

    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "app" / "main.py").read_text() == 'def main():\n    return "UNIQUE_CODE_7"\n'
    assert (tmp_path / "out" / "app" / "__init__.py").read_text() == ""
    header, rule, *rows = proc.stdout.splitlines()
    assert header.split() == ["file", "lines", "action", "backup"]
    assert set(rule) <= {"-", " "}
    assert rows[0].split() == ["app/main.py", "2", "created"]
    assert rows[1].split() == ["app/__init__.py", "0", "created"]
    assert "ok: 2 files, 2 lines" in proc.stdout
    assert "UNIQUE_CODE_7" not in proc.stdout + proc.stderr  # metadata only, never the code
    assert KEY not in proc.stdout + proc.stderr
    assert fake_llm.chat_requests()[0].body["messages"][-1]["content"].strip() == "a tiny app"


def test_generate_json_reports_refused_files_and_exits_nonzero(
    clean_env, tmp_path: Path, fake_llm: FakeLLM, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process (same entry point as the console script) to keep the suite fast.
    from speedrun.cli import main
    from speedrun.config import load_settings

    for name, value in fake_env(fake_llm).items():
        clean_env.setenv(name, value)
    fake_llm.script('<FILE path="../outside.py">\nX = 1\n</FILE>\n<FILE path="inside.py">\nY = 2\n</FILE>\n')
    load_settings.cache_clear()
    try:
        code = main(["generate", "x", "--out", str(tmp_path / "out"), "--json"])
    finally:
        load_settings.cache_clear()

    result = json.loads(capsys.readouterr().out)
    assert code == 1
    assert result["status"] == "partial"
    assert [f["path"] for f in result["files_written"]] == ["inside.py"]
    assert [e["path"] for e in result["errors"]] == ["../outside.py"]
    assert (tmp_path / "out" / "inside.py").read_text() == "Y = 2\n"
    assert not (tmp_path / "outside.py").exists()


def test_check_against_the_endpoint(tmp_path: Path, fake_llm: FakeLLM) -> None:
    proc = run_cli(["check"], tmp_path, **fake_env(fake_llm))

    assert proc.returncode == 0, proc.stderr
    assert "status    ok" in proc.stdout
    assert "fake-model" in proc.stdout
    # Without SPEEDRUN_DATABASE_URL / SPEEDRUN_REDIS_URL: the SQLite store, opened (so created), and no shared budget.
    assert f"runs      SQLite at {tmp_path / 'state' / 'runs.sqlite'}: ok" in proc.stdout.splitlines()
    assert (tmp_path / "state" / "runs.sqlite").is_file()
    assert "budget    per process (set SPEEDRUN_REDIS_URL to share one across processes)" in proc.stdout.splitlines()
    assert KEY not in proc.stdout + proc.stderr
    assert fake_llm.requests[0].path == "/v1/models"
    assert fake_llm.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_check_with_a_rejected_key_fails_cleanly(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.models_status = 401

    proc = run_cli(["check"], tmp_path, **fake_env(fake_llm))

    assert proc.returncode == 1
    assert "rejected the API key" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert KEY not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "args, field",
    [
        (["turbo", "--task", "x", "--out", "ws", "--max-fix-cycles", "50"], "--max-fix-cycles"),
        (["turbo", "--task", "  ", "--out", "ws"], "give either `task`"),
    ],
)
def test_bad_turbo_input_is_one_message_naming_the_field(
    tmp_path: Path, fake_llm: FakeLLM, args: list[str], field: str
) -> None:
    proc = run_cli(args, tmp_path, **fake_env(fake_llm))
    assert proc.returncode == 2
    assert field in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == "" and not fake_llm.chat_requests()


def test_judge_prints_the_flip_rate_of_its_two_orders(tmp_path: Path, fake_llm: FakeLLM) -> None:
    from tests.helpers import PYTEST, TEST_CALC, Script, set_yes

    for name, body in (("alpha", "return a + b  # STRONG"), ("beta", "return sum((a, b))")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "calc.py").write_text(f"def add(a, b):\n    {body}\n")
        (tmp_path / name / "test_calc.py").write_text(TEST_CALC)
    (tmp_path / "design.md").write_text("add two integers\n")
    script, checklists = Script("# STRONG"), []

    def responder(body: dict) -> str:
        answer = json.loads(script(body))
        if "findings" not in answer:  # a checklist call: the second order says no to every fitness item
            checklists.append(answer)
            if len(checklists) == 2:
                for answers in answer.values():
                    set_yes(answers["fitness"], 0)
        return json.dumps(answer)

    fake_llm.responder = responder

    proc = run_cli(
        ["judge", "alpha", "beta", "--design", "design.md", "--test-cmd", PYTEST, "--out", "verdict"],
        tmp_path,
        **fake_env(fake_llm),
    )

    assert len(checklists) == 2, proc.stderr  # asked in both orders
    scorecard = json.loads((tmp_path / "verdict" / "scorecard.json").read_text())
    flip_rate = scorecard["verdict_stability"]["flip_rate"]
    assert flip_rate and flip_rate > 0
    assert f"flip rate: {flip_rate:.0%} of checklist answers changed when the order was swapped" in proc.stdout
