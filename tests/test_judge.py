"""The judge graph end to end against the scripted server: winner, worksheet, blinding, malformed answers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from speedrun.config import RunContext, Settings
from speedrun.errors import InputError, ProviderError, parse_input
from speedrun.graphs.judge import graph
from speedrun.judge.scoring import FITNESS_ITEMS
from speedrun.state.judge import JudgeInput
from tests.fake_llm import FakeLLM
from tests.helpers import CONTRACT_TEXT, SHIPPED_TESTS, TEST_CALC, TOKEN_BUCKET_PY, Script, file_blocks, set_yes
from tests.schema_answers import follow_schema, request_schema, request_text

PYTEST = f"{sys.executable} -m pytest -q -p no:cacheprovider -p no:langsmith_plugin -p no:anyio"
SECTIONS = [
    "## Gate Check",
    "## Feasibility Check",
    "## Scoring Worksheet",
    "## Speed-Run Metrics",
    "## Judge Scorecard",
    "## Hard Gates",
    "## Winner Selection",
]


def _project(root: Path, body: str) -> Path:
    root.mkdir(parents=True)
    (root / "calc.py").write_text(body)
    (root / "test_calc.py").write_text("from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    return root


@pytest.fixture
def settings(fake_llm: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in {
        "CEREBRAS_API_KEY": "sk-judge-secret",
        "CEREBRAS_URL": fake_llm.base_url,
        "CEREBRAS_MODEL": "fake-model",
        "SPEEDRUN_HOME": str(tmp_path / "home"),
    }.items():
        monkeypatch.setenv(name, value)
    return Settings()


@pytest.fixture
def two_impls(tmp_path: Path) -> list[dict]:
    good = _project(tmp_path / "alpha-impl", "def add(first, second):\n    return first + second\n")
    bad = _project(tmp_path / "beta-impl", "def add(first, second):\n    return first - second  # STRONG? no\n")
    return [
        {
            "name": "alpha-impl",
            "path": str(good),
            "test_command": PYTEST,
            "metrics": {"llm_calls": 2, "fix_cycles": 1, "generation_ms": 900},
        },
        {"name": "beta-impl", "path": str(bad), "test_command": PYTEST},
    ]


@pytest.mark.anyio
async def test_fitness_gap_picks_the_winner_and_the_worksheet_has_every_section(
    fake_llm: FakeLLM, settings: Settings, two_impls: list[dict], tmp_path: Path
) -> None:
    fake_llm.responder = Script(strong_marker="first + second", weak_fitness=5)
    out = await graph.ainvoke(
        {
            "implementations": two_impls,
            "design": "add two integers",
            "mode": "showdown",
            "worksheet_dir": str(tmp_path / "ws"),
        },
        context=RunContext(settings),
    )
    result = out["result"]
    assert result.winner == "alpha-impl"
    assert result.decision.gate_applied == "fitness gap"
    cards = {c["name"]: c for c in result.model_dump()["scorecards"]}
    assert cards["alpha-impl"]["scores"]["fitness"] == 5 and cards["beta-impl"]["scores"]["fitness"] == 3
    assert cards["beta-impl"]["total"] >= cards["alpha-impl"]["total"] - 1  # only the gate separates them
    assert cards["alpha-impl"]["metrics"] == {"llm_calls": 2, "fix_cycles": 1, "generation_ms": 900}

    worksheet = Path(result.worksheet_path).read_text()
    positions = [worksheet.index(s) for s in SECTIONS]
    assert positions == sorted(positions), "worksheet sections out of the seed's order"
    assert "Rationale:" in worksheet and "Trade-offs acknowledged:" in worksheet and "Token efficiency:" in worksheet
    assert re.search(r"\| beta-impl \| [AB] \| 0 passed, 1 failed, 0 errors \|", worksheet)  # tests really ran
    scorecard = json.loads(Path(result.scorecard_path).read_text())
    assert scorecard["decision"]["winner"] == "alpha-impl"
    assert {c["name"] for c in scorecard["scorecards"]} == {"alpha-impl", "beta-impl"}
    # 2 reviews + the judge asked in both orders; nothing else.
    assert len(fake_llm.chat_requests()) == 4


@pytest.mark.anyio
async def test_prompts_are_blinded(
    fake_llm: FakeLLM, settings: Settings, two_impls: list[dict], tmp_path: Path
) -> None:
    fake_llm.responder = Script(strong_marker="first + second")
    await graph.ainvoke(
        {
            "implementations": two_impls,
            "design": "add two integers",
            "mode": "showdown",
            "worksheet_dir": str(tmp_path / "ws"),
        },
        context=RunContext(settings),
    )
    bodies = [json.dumps(r.body) for r in fake_llm.chat_requests()]
    assert len(bodies) == 4  # 2 reviews, the judge in 2 orders
    for body in bodies:
        for leak in ("alpha-impl", "beta-impl", str(tmp_path)):
            assert leak not in body
    judge_prompts = [request_text(r.body) for r in fake_llm.chat_requests() if "fresh-eyes" not in request_text(r.body)]
    assert len(judge_prompts) == 2
    for judge_prompt in judge_prompts:
        assert "=== Implementation A ===" in judge_prompt and "=== Implementation B ===" in judge_prompt


@pytest.mark.anyio
async def test_a_tie_is_broken_by_fix_cycles(
    fake_llm: FakeLLM, settings: Settings, two_impls: list[dict], tmp_path: Path
) -> None:
    # Same answers for both; beta's tests fail but the judge is only asked checklists, so totals tie.
    fake_llm.responder = Script(strong_marker="no such text", weak_fitness=8)
    out = await graph.ainvoke(
        {"implementations": two_impls, "design": "add", "mode": "any_percent", "worksheet_dir": str(tmp_path / "ws")},
        context=RunContext(settings),
    )
    result = out["result"]
    assert result.winner == "beta-impl"  # 0 fix cycles beats alpha's 1
    assert result.decision.gate_applied == "tiebreak: fix cycles"
    assert "Any-percent" in Path(result.worksheet_path).read_text()


@pytest.mark.anyio
async def test_malformed_answer_is_retried_once_then_a_clear_error(
    fake_llm: FakeLLM, settings: Settings, two_impls: list[dict], tmp_path: Path
) -> None:
    calls = {"A first": 0, "B first": 0}

    def responder(body: dict) -> str:
        text = request_text(body)
        if "fresh-eyes" in text:
            return json.dumps({"findings": []})
        calls["A first" if text.index("=== Implementation A") < text.index("=== Implementation B") else "B first"] += 1
        return json.dumps({"implementations": [{"label": "A", "fitness": "lots"}]})

    fake_llm.responder = responder
    with pytest.raises(ProviderError, match="malformed Verdict twice"):
        await graph.ainvoke(
            {"implementations": two_impls, "design": "add", "mode": "showdown", "worksheet_dir": str(tmp_path / "ws")},
            context=RunContext(settings),
        )
    # Each order is asked at most twice (the answer, then one retry); the order that gave up was asked exactly twice.
    # The other order's call runs concurrently and is cancelled when the first gives up, wherever it had got to.
    assert 2 in calls.values() and max(calls.values()) == 2, calls
    assert not (tmp_path / "ws").exists(), "no worksheet may be written from made-up scores"


@pytest.mark.anyio
async def test_wrong_labels_count_as_malformed_and_the_retry_can_fix_them(
    fake_llm: FakeLLM, settings: Settings, two_impls: list[dict], tmp_path: Path
) -> None:
    answers = iter(["wrong", "right"])
    script = Script(strong_marker="first + second")

    def responder(body: dict) -> str:
        text = request_text(body)
        if "fresh-eyes" in text or next(answers, "right") == "right":
            return script(body)
        right = json.loads(script(body))
        return json.dumps({"Z": right["A"]})  # a label that was never shown

    fake_llm.responder = responder
    out = await graph.ainvoke(
        {
            "implementations": two_impls,
            "design": "add two integers",
            "mode": "showdown",
            "worksheet_dir": str(tmp_path / "ws"),
        },
        context=RunContext(settings),
    )
    assert out["result"].winner == "alpha-impl"
    judge_calls = [request_text(r.body) for r in fake_llm.chat_requests() if "fresh-eyes" not in request_text(r.body)]
    assert len(judge_calls) == 3  # both orders, and one retry of the order that got the wrong label
    retry_prompt = next(text for text in judge_calls if "That answer was not valid" in text)
    assert "That answer was not valid" in retry_prompt and re.search(r"\bA\b.*required", retry_prompt)


def test_cli_judge_on_two_directories(fake_llm: FakeLLM, two_impls: list[dict], tmp_path: Path) -> None:
    fake_llm.responder = Script(strong_marker="first + second")
    design = tmp_path / "design.md"
    design.write_text("add two integers")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CEREBRAS_API_KEY": "sk-judge-secret",
        "CEREBRAS_URL": fake_llm.base_url,
        "CEREBRAS_MODEL": "fake-model",
        "SPEEDRUN_HOME": str(tmp_path / "h"),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "speedrun",
            "judge",
            two_impls[0]["path"],
            two_impls[1]["path"],
            "--design",
            str(design),
            "--test-cmd",
            PYTEST,
            "--out",
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^alpha-impl\s+5\s", proc.stdout, re.M), proc.stdout
    assert "winner: alpha-impl" in proc.stdout
    assert (tmp_path / "out" / "judge-worksheet.md").is_file()
    assert "sk-judge-secret" not in proc.stdout + proc.stderr


@pytest.mark.anyio
async def test_judge_tool_over_mcp_takes_metrics_from_the_turbo_runs(
    speedrun_env, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    import anyio
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "speedrun", "mcp"], env=speedrun_env, cwd=str(tmp_path)
    )
    with anyio.fail_after(90):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            for name, body in (
                ("alpha", "def add(first, second):\n    return first + second\n"),
                ("beta", "def add(first, second):\n    return sum((first, second))\n"),
            ):
                fake_llm.script(file_blocks({"calc.py": body, "test_calc.py": TEST_CALC}))
                done = await session.call_tool(
                    "turbo", {"output_dir": name, "contract": CONTRACT_TEXT, "test_command": PYTEST, "wait_seconds": 60}
                )
                assert done.structured_content["status"] == "passed", done.content
            fake_llm.responder = Script(strong_marker="first + second")
            result = await session.call_tool(
                "judge",
                {
                    "implementations": [{"path": "alpha"}, {"path": "beta"}],
                    "design": "add two integers",
                    "wait_seconds": 60,
                },
            )
    assert not result.is_error, result.content
    status = result.structured_content
    assert status["status"] == "done"
    verdict = status["result"]
    assert verdict["winner"] == "alpha"
    assert {c["name"]: c["metrics"]["llm_calls"] for c in verdict["scorecards"]} == {"alpha": 1, "beta": 1}
    worksheet = Path(verdict["worksheet_path"])
    assert worksheet.is_file() and worksheet.is_relative_to(Path(speedrun_env["SPEEDRUN_HOME"]))
    assert "| alpha | 1 | 0 |" in worksheet.read_text()  # Speed-Run Metrics row: 1 call, 0 fix cycles
    text = "".join(getattr(c, "text", "") for c in result.content)
    assert "first + second" not in text  # the code never comes back to the caller


# --------------------------------------------------------------------------------------------------
# the answer schema


@pytest.mark.anyio
async def test_an_answer_that_just_follows_the_schema_is_accepted_the_first_time(
    fake_llm: FakeLLM, settings: Settings, two_impls: list[dict], tmp_path: Path
) -> None:
    """A schema-constrained decoder answers what the schema allows and nothing more (here: the least it allows).
    Every such answer must be usable: no label, item count or bound may be checked only after the fact."""
    fake_llm.responder = lambda body: json.dumps(follow_schema(request_schema(body)))
    out = await graph.ainvoke(
        {"implementations": two_impls, "design": "add two integers", "worksheet_dir": str(tmp_path / "ws")},
        context=RunContext(settings),
    )
    assert len(fake_llm.chat_requests()) == 4  # 2 reviews + the judge in 2 orders, no retry
    for request in fake_llm.chat_requests()[-2:]:
        verdict_schema = request_schema(request.body)
        assert sorted(verdict_schema["required"]) == ["A", "B"]  # the labels shown, as required properties
    assert {c.name for c in out["result"].scorecards} == {"alpha-impl", "beta-impl"}
    worksheet = Path(out["result"].worksheet_path).read_text()
    assert f"- [ ] {FITNESS_ITEMS[0]}" in worksheet or f"- [x] {FITNESS_ITEMS[0]}" in worksheet


# --------------------------------------------------------------------------------------------------
# the shipped example's tests


@pytest.mark.anyio
async def test_the_shipped_example_tests_eliminate_nobody(
    fake_llm: FakeLLM, settings: Settings, tmp_path: Path
) -> None:
    impls = []
    for name, body in (
        ("bucket-one", TOKEN_BUCKET_PY),
        ("bucket-two", TOKEN_BUCKET_PY.replace("self._last", "self._refilled_at")),
    ):
        root = tmp_path / name
        (root / "tests").mkdir(parents=True)
        (root / "token_bucket.py").write_text(body)
        shutil.copy(SHIPPED_TESTS, root / "tests" / "test_token_bucket.py")
        impls.append({"name": name, "path": str(root)})
    fake_llm.responder = Script(strong_marker="no such text", weak_fitness=8)
    out = await graph.ainvoke(
        {
            "implementations": impls,
            "design": (SHIPPED_TESTS.parents[1] / "contract.md").read_text(),
            "worksheet_dir": str(tmp_path / "ws"),
        },
        context=RunContext(settings),
    )
    result = out["result"]
    assert result.winner in ("bucket-one", "bucket-two")
    for card in result.scorecards:
        assert not card.eliminated, card.elimination_reasons
        assert card.scores.readability == 5 and card.violations == 0
    worksheet = Path(result.worksheet_path).read_text()
    assert "their violations are listed apart and not scored" in worksheet
    assert "In test files (listed, not scored: tests often ship with the task): single_letter_name" in worksheet


# --------------------------------------------------------------------------------------------------
# bad input, refused before anything starts


@pytest.fixture
def dirs(tmp_path: Path) -> Path:
    for rel in ("one/alpha", "two/alpha", "Alpha", "beta"):
        (tmp_path / rel).mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("not a directory")
    return tmp_path


@pytest.mark.parametrize(
    ("impls", "design", "says"),
    [
        (
            [{"path": "{d}/one/alpha"}, {"path": "{d}/two/alpha"}],
            "add",
            "implementations 1 and 2 are both named 'alpha'",
        ),
        (
            [{"name": "x", "path": "{d}/one/alpha"}, {"name": "X", "path": "{d}/beta"}],
            "add",
            "implementations 1 and 2 are both named 'X'",
        ),
        (
            [{"path": "{d}/one/alpha"}, {"path": "{d}/missing"}],
            "add",
            "implementation 'missing': path '{d}/missing' does not exist",
        ),
        ([{"name": "notes", "path": "{d}/notes.txt"}], "add", "implementation 'notes': path '{d}/notes.txt' is a file"),
        ([{"path": "{d}/beta"}], "  \n\t", "design is empty"),
        ([{"path": "{d}/beta"}], "", "design is empty"),
        ([], "add", "1 to 5 implementations and got 0"),
        ([{"name": f"n{i}", "path": "{d}/beta"} for i in range(6)], "add", "1 to 5 implementations and got 6"),
        ([{"name": "a", "path": "{d}/beta"}, {"name": "b", "path": "{d}/beta/"}], "add", "are the same directory"),
        ([{"path": "  "}], "add", "implementation 1 has an empty path"),
    ],
)
def test_judge_input_refuses_bad_input_in_the_users_words(
    dirs: Path, impls: list[dict], design: str, says: str
) -> None:
    impls = [{k: v.replace("{d}", str(dirs)) for k, v in impl.items()} for impl in impls]
    with pytest.raises(InputError) as caught:
        parse_input(JudgeInput, {"implementations": impls, "design": design})
    message = str(caught.value)
    assert says.replace("{d}", str(dirs)) in message
    assert "JudgeInput" not in message and "pydantic" not in message and "Value error" not in message


def test_judge_input_names_a_root_directory_after_its_path() -> None:
    inputs = parse_input(JudgeInput, {"implementations": [{"path": "/"}], "design": "d"})
    assert inputs.implementations[0].name == "/"


@pytest.mark.anyio
async def test_the_judge_tool_refuses_bad_input_before_any_run_or_model_call(
    speedrun_env, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    import anyio
    from mcp import ClientSession, StdioServerParameters, stdio_client

    for rel in ("one/alpha", "two/alpha", "beta"):
        (tmp_path / rel).mkdir(parents=True)
    fake_llm.responder = Script(strong_marker="no such text")
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "speedrun", "mcp"], env=speedrun_env, cwd=str(tmp_path)
    )
    calls = [
        ({"implementations": [{"path": "one/alpha"}, {"path": "two/alpha"}], "design": "add"}, "both named 'alpha'"),
        ({"implementations": [{"path": "beta"}, {"path": "gamma"}], "design": "add"}, "does not exist"),
        ({"implementations": [{"path": "beta"}], "design": "   "}, "design is empty"),
    ]
    with anyio.fail_after(60):
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            for arguments, says in calls:
                result = await session.call_tool("judge", {**arguments, "wait_seconds": 5})
                text = "".join(getattr(c, "text", "") for c in result.content)
                assert result.is_error, text
                assert says in text
            runs = await session.call_tool("list_runs", {})
    assert fake_llm.chat_requests() == []
    assert "judge" not in json.dumps(runs.structured_content)  # no run was created


# --------------------------------------------------------------------------------------------------
# big trees


@pytest.mark.anyio
async def test_measuring_does_not_block_the_event_loop(
    fake_llm: FakeLLM, settings: Settings, two_impls: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import time

    import speedrun.nodes.measure as measure_node

    real = measure_node.measure_tree
    windows: list[tuple[float, float]] = []

    def slow_measure(*args, **kwargs):
        began = time.monotonic()
        time.sleep(0.6)  # a big tree: the walk takes a while
        windows.append((began, time.monotonic()))
        return real(*args, **kwargs)

    monkeypatch.setattr(measure_node, "measure_tree", slow_measure)
    fake_llm.responder = Script(strong_marker="first + second")
    impls = [{k: v for k, v in impl.items() if k != "test_command"} for impl in two_impls]
    ticks: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        while not done.is_set():
            await asyncio.sleep(0.02)
            ticks.append(time.monotonic())

    tick = asyncio.create_task(ticker())
    try:
        outcome = await asyncio.gather(
            graph.ainvoke(
                {"implementations": impls, "design": "add two integers", "worksheet_dir": str(tmp_path / "ws")},
                context=RunContext(settings),
            ),
            return_exceptions=True,
        )
    finally:
        done.set()
        await tick
    assert len(windows) == 2
    for began, ended in windows:  # the loop kept turning while each walk ran (other stalls are not ours)
        during = [t for t in ticks if began <= t <= ended]
        assert len(during) >= 5, f"the event loop stood still for the {ended - began:.2f}s of a measurement"
    assert not isinstance(outcome[0], BaseException), outcome[0]
    assert outcome[0]["result"].winner == "alpha-impl"


def test_cli_judge_of_the_file_system_root_fails_fast_naming_the_limit(fake_llm: FakeLLM, tmp_path: Path) -> None:
    import time

    design = tmp_path / "design.md"
    design.write_text("add two integers")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CEREBRAS_API_KEY": "sk-judge-secret",
        "CEREBRAS_URL": fake_llm.base_url,
        "CEREBRAS_MODEL": "fake-model",
        "SPEEDRUN_HOME": str(tmp_path / "h"),
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "speedrun", "judge", "/", "--design", str(design), "--out", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - started < 60
    assert proc.returncode != 0
    assert "/ is too large to judge" in proc.stderr and "(the limit)" in proc.stderr, proc.stderr
    assert fake_llm.chat_requests() == []  # refused before any model call
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# compact results


@pytest.mark.anyio
async def test_the_result_is_compact_and_the_worksheet_keeps_every_word(
    fake_llm: FakeLLM, settings: Settings, tmp_path: Path
) -> None:
    impls = []
    for number in range(5):
        name = f"implementation-with-a-rather-long-descriptive-name-number-{number}"
        body = (
            "def add(first, second):\n    return first + second\n"
            if number == 0
            else "def add(first, second):\n    return first - second\n"
        )
        impls.append({"name": name, "path": str(_project(tmp_path / name, body))})

    def responder(body: dict) -> str:
        text = request_text(body)
        if "fresh-eyes" in text:
            return json.dumps(
                {
                    "findings": [
                        {
                            "severity": "major",
                            "category": "logic",
                            "file": "calc.py",
                            "line": 2,
                            "message": "subtracts instead of adding; " * 20,
                        }
                    ]
                    * 4
                }
            )
        verdict = json.loads(Script(strong_marker="first + second")(body))
        for answers in verdict.values():  # everybody but the strong one scores 1 on fitness and robustness
            if sum(a["answer"] for a in answers["fitness"].values()) < 8:
                set_yes(answers["fitness"], 0)
                set_yes(answers["robustness"], 0)
            for item in answers["fitness"].values():
                item["evidence"] = "a long piece of evidence " * 30
        return json.dumps(verdict)

    fake_llm.responder = responder
    out = await graph.ainvoke(
        {"implementations": impls, "design": "add two integers", "worksheet_dir": str(tmp_path / "ws")},
        context=RunContext(settings),
    )
    result = out["result"]
    assert result.winner == impls[0]["name"]
    size = len(result.model_dump_json())
    assert size <= 1024 + 450 * len(impls), size  # names of 62 characters included
    assert len(result.decision.rationale) <= 300 and len(result.decision.tradeoffs) <= 4
    assert all(len(t) <= 120 for t in result.decision.tradeoffs)
    assert "evidence" not in result.model_dump_json() and "subtracts" not in result.model_dump_json()
    worksheet = Path(result.worksheet_path).read_text()
    full = json.loads(Path(result.scorecard_path).read_text())["decision"]["rationale"]
    assert len(full) > 300 and full in worksheet  # the whole text is kept where the result points
    assert "subtracts instead of adding" in worksheet
