"""The Python API as documented: `from speedrun.graphs import turbo` and friends, run context, README examples."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from speedrun.config import RunContext, Settings
from speedrun.errors import InputError
from tests.fake_llm import FakeLLM
from tests.helpers import PYTEST, TEST_CALC, RunnerScript, Script, file_blocks, fix_reply, make_repo, role_of

REPO = Path(__file__).resolve().parents[1]
CONTRACT = (
    "DATA CONTRACT:\nintegers\n\nAPI CONTRACT:\nadd(a: int, b: int) -> int in calc.py\n\nALGORITHM:\nreturn a + b\n\n"
    "RULES:\nWrite calc.py and test_calc.py (pytest).\n"
)
CALC = "def add(a, b):\n    return a + b\n"
BUGGY_CALC = "def add(a, b):\n    return a - b\n"
STRONG_CALC = "def add(a: int, b: int) -> int:\n    total = a + b  # STRONG\n    return total\n"


def _inputs(out: Path | str, **extra: Any) -> dict[str, Any]:
    return {"contract": CONTRACT, "output_dir": str(out), "test_command": PYTEST, **extra}


def _models(fake: FakeLLM, role: str = "generator") -> list[str]:
    return [r.body["model"] for r in fake.chat_requests() if role_of(r) == role]


# --- the names ----------------------------------------------------------------------------------------------------

IMPORT_FORMS = """
import importlib.util, sys
import speedrun.graphs.turbo                                   # the submodule-style import, first
from speedrun.graphs.turbo import builder, graph               # what tests and bench use
from speedrun.graphs import any_percent, judge, showdown, turbo
from langgraph.pregel import Pregel
assert turbo is graph and turbo.builder is builder, type(turbo)
assert sys.modules["speedrun.graphs.turbo"].graph is turbo
for name, g in {"turbo": turbo, "judge": judge, "showdown": showdown, "any_percent": any_percent}.items():
    assert isinstance(g, Pregel) and g.name == name, (name, type(g))
    assert callable(g.invoke) and callable(g.ainvoke)
from speedrun.runs import _graph_builders                     # the run manager compiles the builders again
assert {n: type(b).__name__ for n, b in _graph_builders().items()} == dict.fromkeys(
    ["turbo", "judge", "showdown", "any_percent"], "StateGraph")
import json
for name, target in json.load(open("langgraph.json"))["graphs"].items():   # how `langgraph dev` loads them
    path, _, var = target.partition(":")
    spec = importlib.util.spec_from_file_location("lg_" + name, path)
    module = importlib.util.module_from_spec(spec); sys.modules[spec.name] = module; spec.loader.exec_module(module)
    assert isinstance(getattr(module, var), Pregel) and getattr(module, var).name == name
print("ok")
"""


def test_the_documented_import_gives_the_compiled_graphs_whatever_was_imported_before() -> None:
    # A fresh interpreter: in this one, other tests have imported the modules already.
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_FORMS], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# --- invoke, context, paths ---------------------------------------------------------------------------------------


def test_a_run_whose_tests_still_fail_returns_its_result(speedrun_env, fake_llm: FakeLLM, tmp_path: Path) -> None:
    from speedrun.graphs import turbo

    # The fixer's edit applies but fixes nothing (it swaps the operands): the tests stay red after its cycle.
    fake_llm.script(file_blocks({"calc.py": BUGGY_CALC, "test_calc.py": TEST_CALC}))
    fake_llm.responder = lambda body: fix_reply(("calc.py", "    return a - b", "    return b - a"))

    out = turbo.invoke(_inputs(tmp_path / "ws", max_fix_cycles=1))

    result = out["result"]
    assert result.status == "failed"
    assert (result.tests.passed, result.tests.failed) == (0, 1)
    assert len(result.cycles) == 1 and (tmp_path / "ws" / "calc.py").read_text() == BUGGY_CALC.replace("a - b", "b - a")


@pytest.mark.anyio
async def test_context_picks_this_runs_models_effort_and_max_tokens(
    speedrun_env, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    from speedrun.graphs import turbo

    reply = file_blocks({"calc.py": CALC, "test_calc.py": TEST_CALC})
    fake_llm.script(reply, reply, reply)
    context = {"generator": "cerebras:gpt-oss-from-context", "reasoning_effort": "low", "max_tokens": 700}

    first = await turbo.ainvoke(_inputs(tmp_path / "a"), context=context)
    # An edge's Settings plus the same choices; and the run's own `roles` input wins over the context.
    second = await turbo.ainvoke(_inputs(tmp_path / "b"), context=RunContext(Settings(), **context))
    third = await turbo.ainvoke(_inputs(tmp_path / "c", roles={"generator": "cerebras:from-input"}), context=context)

    assert [first["result"].status, second["result"].status, third["result"].status] == ["passed"] * 3
    assert _models(fake_llm) == ["gpt-oss-from-context", "gpt-oss-from-context", "from-input"]
    bodies = [r.body for r in fake_llm.chat_requests()]
    assert [b.get("reasoning_effort") for b in bodies] == ["low", "low", None]  # from-input is no reasoning model
    assert all(0 < (b.get("max_completion_tokens") or b.get("max_tokens")) <= 700 for b in bodies), bodies


def test_a_context_naming_an_unknown_provider_is_refused_in_words(speedrun_env, fake_llm, tmp_path: Path) -> None:
    from speedrun.graphs import turbo

    with pytest.raises(InputError) as caught:
        turbo.invoke(_inputs(tmp_path / "ws"), context={"generator": "cerebrass:gpt-oss-120b"})
    message = str(caught.value)
    assert "context generator='cerebrass:gpt-oss-120b'" in message and "unknown provider 'cerebrass'" in message
    assert "cerebras" in message.split("one of", 1)[1]  # it lists what to write instead
    assert fake_llm.chat_requests() == [] and not (tmp_path / "ws").exists()


def test_a_run_no_edge_started_resolves_output_dir_against_the_allowed_roots(
    speedrun_env, fake_llm: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from speedrun.graphs import turbo

    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("SPEEDRUN_ROOTS", str(root))
    monkeypatch.chdir(tmp_path)  # elsewhere than the root: a relative path must not land in the working directory
    fake_llm.script(file_blocks({"calc.py": CALC, "test_calc.py": TEST_CALC}))

    out = turbo.invoke(_inputs("build/calc"))

    assert out["result"].output_dir == str(root / "build" / "calc")
    assert (root / "build" / "calc" / "calc.py").read_text() == CALC and not (tmp_path / "build").exists()

    outside = tmp_path / "elsewhere"
    with pytest.raises(InputError, match="outside the allowed roots") as caught:
        turbo.invoke(_inputs(outside))
    assert "output_dir" in str(caught.value) and "SPEEDRUN_ROOTS" in str(caught.value)
    assert not outside.exists() and len(fake_llm.chat_requests()) == 1

    # An edge (CLI, MCP) checked the path against its own roots already and passes its Settings: not re-checked.
    fake_llm.script(file_blocks({"calc.py": CALC, "test_calc.py": TEST_CALC}))
    edge = turbo.invoke(_inputs(outside), context=RunContext(Settings()))
    assert edge["result"].status == "passed" and (outside / "calc.py").is_file()


def test_keys_stay_out_of_the_context_schema_its_dumps_and_the_checkpoints(
    speedrun_env, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from speedrun.graphs import turbo

    key = speedrun_env["CEREBRAS_API_KEY"]
    context = RunContext(Settings(), generator="cerebras:fake-model")
    assert context.settings is not None and context.settings.cerebras_api_key is not None
    schema = json.dumps(turbo.get_context_jsonschema())
    assert "settings" not in schema and "API_KEY" not in schema and "api_key" not in schema
    assert {"generator", "planner", "fixer", "reviewer", "judge", "reasoning_effort", "max_tokens"} <= set(
        json.loads(schema)["properties"]
    )
    assert key not in context.model_dump_json() and key not in repr(context)

    saver = InMemorySaver()
    graph = turbo.builder.compile(checkpointer=saver)
    fake_llm.script(file_blocks({"calc.py": CALC, "test_calc.py": TEST_CALC}))
    config = {"configurable": {"thread_id": "t-keys"}}
    assert graph.invoke(_inputs(tmp_path / "ws"), config, context=context)["result"].status == "passed"
    stored = list(saver.list(config))
    assert stored, "the run left no checkpoint to look at"
    assert all(key not in repr(c.checkpoint) + repr(c.metadata) + repr(c.pending_writes) for c in stored)


# --- the README's examples, run as written -----------------------------------------------------------------------


def readme_examples() -> dict[str, str]:
    """The Python blocks of the README's "Python and LangGraph Studio" section, by the graph each imports."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Python and LangGraph Studio\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    examples = {}
    for block in blocks:
        found = re.search(r"^from speedrun\.graphs import (\w+)$", block, flags=re.M)
        assert found, f"a README example imports no graph:\n{block}"
        examples[found.group(1)] = block
    return examples


def _run_example(code: str, cwd: Path, fake: FakeLLM, tmp_path: Path) -> str:
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # `python` is this venv's
        "HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(REPO),
        "CEREBRAS_API_KEY": "sk-readme-example-key",
        "CEREBRAS_URL": fake.base_url,
        "CEREBRAS_MODEL": "fake-model",
        "SPEEDRUN_HOME": str(tmp_path / "state"),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, f"{code}\n--- stderr:\n{done.stderr[-3000:]}"
    return done.stdout.strip()


def test_the_readme_has_one_example_per_graph() -> None:
    assert sorted(readme_examples()) == ["any_percent", "judge", "showdown", "turbo"]


def test_readme_turbo_example_runs_as_written(fake_llm: FakeLLM, tmp_path: Path) -> None:
    work = tmp_path / "project"
    work.mkdir()
    (work / "contract.md").write_text(CONTRACT)
    fake_llm.script(file_blocks({"calc.py": CALC, "test_calc.py": TEST_CALC}))

    printed = _run_example(readme_examples()["turbo"], work, fake_llm, tmp_path)

    assert printed == f"passed {work / 'build' / 'calc'}"
    assert (work / "build" / "calc" / "calc.py").read_text() == CALC
    assert _models(fake_llm) == ["gpt-oss-120b"]  # the example's context, not CEREBRAS_MODEL


def test_readme_showdown_example_runs_as_written(fake_llm: FakeLLM, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"docs/design.md": "# Calc\n\nAdd two integers.\n"})
    fake_llm.responder = RunnerScript({"runner-1": CALC, "runner-2": STRONG_CALC}, judge=Script("# STRONG"))

    printed = _run_example(readme_examples()["showdown"], repo, fake_llm, tmp_path)

    assert printed == "promoted calc/speed-run/runner-2"
    assert (repo / "docs/plans/calc/speed-run/showdown/result.md").is_file()


def test_readme_any_percent_example_runs_as_written(fake_llm: FakeLLM, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"docs/design.md": "# Calc\n\nAdd two integers.\n"})
    fake_llm.responder = RunnerScript({"variant-plain": CALC, "variant-typed": STRONG_CALC}, judge=Script("# STRONG"))

    printed = _run_example(readme_examples()["any_percent"], repo, fake_llm, tmp_path)

    assert printed == "promoted variant-typed"
    assert (repo / "docs/plans/calc/speed-run/any-percent/result.md").is_file()


def test_readme_judge_example_runs_as_written(fake_llm: FakeLLM, tmp_path: Path) -> None:
    work = tmp_path / "project"
    for name, body in (("alpha", CALC), ("beta", STRONG_CALC)):
        (work / "impls" / name).mkdir(parents=True)
        (work / "impls" / name / "calc.py").write_text(body)
        (work / "impls" / name / "test_calc.py").write_text(TEST_CALC)
    fake_llm.responder = Script("# STRONG")

    printed = _run_example(readme_examples()["judge"], work, fake_llm, tmp_path)

    winner, worksheet = printed.split(" ", 1)
    assert winner == "beta"
    assert Path(worksheet).is_file() and Path(worksheet).is_relative_to(work / "build" / "judge")
