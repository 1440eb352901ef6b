"""LangGraph Studio as its users start it: `langgraph dev` with no extra flags beyond the README's, over HTTP.

The dev server refuses blocking calls inside async nodes (BlockingError) unless started with --allow-blocking, so a
node that writes files or starts processes on the event loop fails here and nowhere else. Skipped when the studio
dependency group is not installed (`uv sync --group studio`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.fake_llm import FakeLLM
from tests.helpers import PYTEST, RunnerScript, Script, git, make_repo
from tests.schema_answers import follow_schema, request_schema

pytest.importorskip("langgraph_api", reason="the studio group is not installed (uv sync --group studio)")

REPO = Path(__file__).resolve().parents[1]
LANGGRAPH = Path(sys.executable).with_name("langgraph")

CONTRACT = """\
DATA CONTRACT: integers.
API CONTRACT: add(a: int, b: int) -> int in calc.py
ALGORITHM: return a + b.
RULES: write calc.py and test_calc.py.
"""
CALC = "def add(a, b):\n    return a + b\n"
BUGGY_CALC = "def add(a, b):\n    return a - b\n"
TEST_CALC = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, body: dict | None = None, timeout: float = 120) -> dict | list:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


@pytest.fixture
def studio(request: pytest.FixtureRequest, tmp_path: Path, fake_llm: FakeLLM):
    """`langgraph dev --no-browser --no-reload` on a free loopback port, the project copied outside the repo
    (the dev server writes .langgraph_api/ next to langgraph.json), logs outside the project folder.

    Parametrized indirectly with "redis", the server shares its rate budget through a real Redis (with an explicit
    requests/min limit, so the shared counters are used even for the loopback endpoint)."""
    if not LANGGRAPH.exists():
        pytest.skip("langgraph CLI not installed in this environment")
    project = tmp_path / "project"
    shutil.copytree(
        REPO,
        project,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", ".langgraph_api", "build", ".pytest_cache", ".mypy_cache", ".ruff_cache"
        ),
    )
    port = _free_port()
    log = tmp_path / "dev.log"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "LANGSMITH_TRACING": "false",
        "CEREBRAS_API_KEY": "sk-studio-test-key",
        "CEREBRAS_URL": fake_llm.base_url,
        "CEREBRAS_MODEL": "fake-model",
        "SPEEDRUN_HOME": str(tmp_path / "home"),
        "SPEEDRUN_ROOTS": str(tmp_path / "roots"),  # Studio runs write only here (relative paths resolve here)
        "PYTHONPATH": str(project),
    }
    if getattr(request, "param", None) == "redis":
        env["SPEEDRUN_REDIS_URL"] = request.getfixturevalue("redis_url")
        env["SPEEDRUN_LIMITS__CEREBRAS__RPM"] = "1000"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(LANGGRAPH), "dev", "--no-browser", "--no-reload", "--port", str(port)],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (tmp_path / "roots").mkdir()
    try:
        url = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            # The dev server silently moves to another port when ours is taken: read the real one from its log.
            plain = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace"))
            found = re.search(r"API: (http://127\.0\.0\.1:\d+)", plain)
            if found:
                try:
                    _http("GET", f"{found.group(1)}/ok", timeout=2)
                    url = found.group(1)
                    break
                except OSError:
                    pass
            time.sleep(0.5)
        if url is None:
            pytest.fail(f"langgraph dev did not come up:\n{log.read_text(errors='replace')[-3000:]}")
        yield url, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("studio", [None, "redis"], ids=["own-budget", "redis-budget"], indirect=True)
def test_turbo_runs_in_langgraph_dev_without_allow_blocking(
    studio, fake_llm: FakeLLM, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url, log = studio
    assistants = _http("POST", f"{url}/assistants/search", {})
    assert {"turbo", "judge", "showdown", "any_percent"} <= {a["graph_id"] for a in assistants}

    fake_llm.script(f'<FILE path="calc.py">\n{CALC}</FILE>\n<FILE path="test_calc.py">\n{TEST_CALC}</FILE>\n')
    out = tmp_path / "roots" / "ws"
    test_cmd = f"{sys.executable} -m pytest -q -p no:cacheprovider"
    final = _http(
        "POST",
        f"{url}/runs/wait",
        {"assistant_id": "turbo", "input": {"contract": CONTRACT, "output_dir": str(out), "test_command": test_cmd}},
    )

    logged = log.read_text(errors="replace")
    assert "BlockingError" not in logged, logged[-3000:]
    assert final["result"]["status"] == "passed", json.dumps(final)[:2000]
    assert (out / "calc.py").read_text() == CALC
    assert final["result"]["tests"]["passed"] == 1
    if request.node.callspec.params["studio"] == "redis":
        import redis

        # The budget really lived in Redis: its requests/min window holds this run's call.
        keys = redis.Redis.from_url(request.getfixturevalue("redis_url")).keys("speedrun:budget:*")
        assert any(b"requests" in key for key in keys), keys


SCHEMA_FAILURES = ("Failed to get config schema", "Failed to get context schema", "Invalid context schema type")
ROLE_FIELDS = ("generator", "planner", "fixer", "reviewer", "judge")


def test_studio_context_form_roles_and_output_dirs_resolved_in_the_roots(
    studio, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """The context schema Studio renders as a form, a run that picks its generator there, and output_dir rules."""
    url, log = studio
    for assistant in _http("POST", f"{url}/assistants/search", {}):
        schemas = _http("GET", f"{url}/assistants/{assistant['assistant_id']}/schemas")
        props = schemas["context_schema"]["properties"]
        for field in (*ROLE_FIELDS, "reasoning_effort", "max_tokens"):
            assert props[field]["description"], (assistant["graph_id"], field, props)
        assert "provider[:model]" in props["generator"]["description"] and "client" in props["fixer"]["description"]
        assert "settings" not in props and "API_KEY" not in json.dumps(schemas)  # keys never reach the form
    logged = log.read_text(errors="replace")
    assert not [line for line in logged.splitlines() if any(f in line for f in SCHEMA_FAILURES)], logged[-3000:]

    # A relative output_dir lands under SPEEDRUN_ROOTS, and the run uses the generator its context names.
    fake_llm.script(f'<FILE path="calc.py">\n{CALC}</FILE>\n<FILE path="test_calc.py">\n{TEST_CALC}</FILE>\n')
    test_cmd = f"{sys.executable} -m pytest -q -p no:cacheprovider"
    thread = _http("POST", f"{url}/threads", {})["thread_id"]
    final = _http(
        "POST",
        f"{url}/threads/{thread}/runs/wait",
        {
            "assistant_id": "turbo",
            "input": {"contract": CONTRACT, "output_dir": "studio/calc", "test_command": test_cmd},
            "context": {"generator": "cerebras:studio-picked-model", "planner": ""},
        },
    )
    resolved = tmp_path / "roots" / "studio" / "calc"
    assert final["result"]["status"] == "passed", json.dumps(final)[:2000]
    assert final["result"]["output_dir"] == str(resolved)
    assert (resolved / "calc.py").read_text() == CALC
    assert [r.body["model"] for r in fake_llm.chat_requests()] == ["studio-picked-model"]
    history = json.dumps(_http("POST", f"{url}/threads/{thread}/history", {"limit": 50}))
    assert "sk-studio-test-key" not in history  # the key stays in the server's environment

    # Outside the roots: refused in words, before any model call, and nothing is written there.
    outside = tmp_path / "outside"
    refused = _http(
        "POST",
        f"{url}/runs/wait",
        {
            "assistant_id": "turbo",
            "input": {"contract": CONTRACT, "output_dir": str(outside), "test_command": test_cmd},
        },
    )
    assert refused["__error__"]["error"] == "InputError", refused
    logged = log.read_text(errors="replace")
    assert f"output_dir {str(outside)!r} resolves to" in logged and "outside the allowed roots" in logged
    assert not outside.exists() and len(fake_llm.chat_requests()) == 1
    assert "BlockingError" not in logged
    # The Studio user sees why, not "An internal error occurred" (langgraph-api shows a ValueError's message only).
    assert "outside the allowed roots" in json.dumps(refused), refused
    assert "BlockingError" not in log.read_text(errors="replace")


def test_client_fix_interrupt_and_resume_over_the_studio_api(studio, fake_llm: FakeLLM, tmp_path: Path) -> None:
    url, log = studio
    fake_llm.script(f'<FILE path="calc.py">\n{BUGGY_CALC}</FILE>\n<FILE path="test_calc.py">\n{TEST_CALC}</FILE>\n')
    out = tmp_path / "roots" / "ws"
    thread = _http("POST", f"{url}/threads", {})["thread_id"]
    paused = _http(
        "POST",
        f"{url}/threads/{thread}/runs/wait",
        {
            "assistant_id": "turbo",
            "input": {
                "contract": CONTRACT,
                "output_dir": str(out),
                "roles": {"fixer": "client"},
                "test_command": f"{sys.executable} -m pytest -q -p no:cacheprovider",
            },
        },
    )
    [interrupt] = paused["__interrupt__"]
    assert interrupt["value"]["kind"] == "fix_needed"
    assert interrupt["value"]["failures"][0]["name"] == "test_calc.py::test_add"

    (out / "calc.py").write_text(CALC)  # the caller fixes the file, then asks for a retest
    final = _http(
        "POST", f"{url}/threads/{thread}/runs/wait", {"assistant_id": "turbo", "command": {"resume": "retest"}}
    )
    assert "BlockingError" not in log.read_text(errors="replace")
    assert final["result"]["status"] == "passed", json.dumps(final)[:2000]
    assert [c["source"] for c in final["result"]["cycles"]] == ["client"]
    assert len(fake_llm.chat_requests()) == 1  # the generator only: the caller was the fixer


def test_judge_runs_in_langgraph_dev(studio, fake_llm: FakeLLM, tmp_path: Path) -> None:
    url, log = studio
    impls = []
    for name, body in (("alpha", CALC), ("beta", BUGGY_CALC)):
        root = tmp_path / name
        root.mkdir()
        (root / "calc.py").write_text(body)
        (root / "test_calc.py").write_text(TEST_CALC)
        impls.append(
            {"name": name, "path": str(root), "test_command": f"{sys.executable} -m pytest -q -p no:cacheprovider"}
        )
    # Reviews and the verdict follow the schemas the requests carry, as a schema-constrained model would.
    fake_llm.responder = lambda body: json.dumps(follow_schema(request_schema(body)))
    final = _http(
        "POST",
        f"{url}/runs/wait",
        {
            "assistant_id": "judge",
            "input": {
                "implementations": impls,
                "design": "add two integers",
                "worksheet_dir": str(tmp_path / "roots" / "ws"),
            },
        },
    )
    assert "BlockingError" not in log.read_text(errors="replace")
    result = final["result"]
    assert {c["name"] for c in result["scorecards"]} == {"alpha", "beta"}, json.dumps(final)[:2000]
    assert Path(result["worksheet_path"]).is_file() and Path(result["scorecard_path"]).is_file()


STRONG_CALC = "def add(a: int, b: int) -> int:\n    total = a + b  # STRONG\n    return total\n"


def _stream_parallel(url: str, graph: str, inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """Run `graph` on a new thread, streaming with subgraphs; (its final result, runner -> turbo nodes streamed).

    A runner's turbo loop streams under its own namespace (run_runner:<task id>); which runner it is shows in
    the worktree its report names. Runner names from the parent graph's progress events must match."""
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=url, api_key=None, timeout=180)
    thread = client.threads.create()["thread_id"]
    turbo_nodes: dict[str, set[str]] = {}  # subgraph namespace -> the turbo nodes it streamed
    worktree_of: dict[str, str] = {}  # subgraph namespace -> the worktree its turbo loop wrote to
    progress_runners: set[str] = set()
    for part in client.runs.stream(
        thread, graph, input=inputs, stream_mode=["updates", "custom"], stream_subgraphs=True
    ):
        mode, _, namespace = part.event.partition("|")
        assert mode != "error", json.dumps(part.data)[:2000]
        if mode == "custom" and not namespace and isinstance(part.data, dict) and part.data.get("runner"):
            progress_runners.add(part.data["runner"])
        if mode != "updates" or not namespace.startswith("run_runner:"):
            continue
        for node_name, update in part.data.items():
            turbo_nodes.setdefault(namespace, set()).add(node_name)
            if node_name == "report":
                worktree_of[namespace] = Path(update["result"]["output_dir"]).name.removeprefix("speed-run-")
    assert set(worktree_of) == set(turbo_nodes), (worktree_of, turbo_nodes)  # every namespace is one runner's
    by_runner = {worktree_of[ns]: nodes for ns, nodes in turbo_nodes.items()}
    assert len(by_runner) == len(turbo_nodes) and set(by_runner) == progress_runners, (by_runner, progress_runners)
    return client.threads.get_state(thread)["values"]["result"], by_runner


def _nothing_left_but(repo: Path, branch: str) -> None:
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    assert not any((repo / ".worktrees").glob("speed-run-*"))
    assert git(repo, "branch", "--list", "--format=%(refname:short)", "*speed-run*") == branch


def test_showdown_streams_each_runners_turbo_subgraph_in_langgraph_dev(
    studio, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """A 2-runner showdown over the Studio API: each runner's turbo loop streams under its own namespace."""
    url, log = studio
    repo = make_repo(tmp_path / "roots" / "repo")
    fake_llm.responder = RunnerScript({"runner-1": CALC, "runner-2": STRONG_CALC}, judge=Script("# STRONG"))
    inputs = {"design": "add two integers", "repo": str(repo), "feature": "calc", "test_command": PYTEST, "runners": 2}

    result, turbo_nodes = _stream_parallel(url, "showdown", inputs)

    logged = log.read_text(errors="replace")
    assert "BlockingError" not in logged, logged[-3000:]
    assert sorted(turbo_nodes) == ["runner-1", "runner-2"]
    for nodes in turbo_nodes.values():
        assert {"generate", "run_tests", "report"} <= nodes, turbo_nodes
    assert (result["status"], result["winner"]) == ("promoted", "runner-2"), json.dumps(result)[:2000]
    assert [(r["name"], r["status"]) for r in result["runners"]] == [("runner-1", "passed"), ("runner-2", "passed")]
    assert (repo / "docs/plans/calc/speed-run/showdown/result.md").is_file()
    _nothing_left_but(repo, "calc/speed-run/runner-2")


def test_any_percent_streams_each_variants_turbo_subgraph_in_langgraph_dev(
    studio, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """Two approaches over the Studio API; the scenario test both share fails one variant, the other wins."""
    url, log = studio
    # Both pass test_calc.py (add(2, 3) == 5); only the plain one adds negative numbers right. The judge would
    # prefer the other (it holds the STRONG marker): the scenario gate must decide before it is asked.
    repo = make_repo(tmp_path / "roots" / "repo", {"scenario_check.py": "import calc\n\nassert calc.add(-2, 3) == 1\n"})
    fake_llm.responder = RunnerScript(
        {"variant-plain": CALC, "variant-typed": STRONG_CALC.replace("a + b", "abs(a) + abs(b)")},
        judge=Script("# STRONG"),
    )
    approaches = [
        {"slug": "plain", "summary": "one expression"},
        {"slug": "typed", "summary": "typed, with a local"},
    ]
    inputs = {
        "design": "add two integers",
        "repo": str(repo),
        "feature": "calc",
        "test_command": PYTEST,
        "scenario_command": f"{sys.executable} scenario_check.py",
        "approaches": approaches,
    }

    result, turbo_nodes = _stream_parallel(url, "any_percent", inputs)

    assert "BlockingError" not in log.read_text(errors="replace")
    assert sorted(turbo_nodes) == ["variant-plain", "variant-typed"]
    assert all({"generate", "run_tests", "report"} <= nodes for nodes in turbo_nodes.values()), turbo_nodes
    statuses = {r["name"]: r["status"] for r in result["runners"]}
    assert statuses == {"variant-plain": "passed", "variant-typed": "failed_scenario"}, json.dumps(result)[:2000]
    assert (result["status"], result["winner"]) == ("promoted", "variant-plain")
    assert (repo / "docs/plans/calc/speed-run/any-percent/result.md").is_file()
    _nothing_left_but(repo, "calc/speed-run/variant-plain")
