"""Outside clients run against speed-run as their users run them: the MCP conformance suite, MCP Inspector, claude.

Node 22 and the clients come from scripts/node-tools.sh: pinned versions in a cache (~/.cache/speed-run/node-tools);
the first run downloads them (about 30 s), later runs touch no network. Each test is skipped only when that install
fails, and the skip message carries the installer's reason.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.fake_llm import FakeLLM
from tests.helpers import MCP_KEY, server_env

REPO = Path(__file__).resolve().parents[1]
SERVER = [sys.executable, "-m", "speedrun", "mcp"]
TOOLS = [
    "generate",
    "generate_and_write_files",
    "check_status",
    "turbo",
    "showdown",
    "any_percent",
    "judge",
    "run_status",
    "resume_run",
    "cancel_run",
    "list_runs",
    "clean",
]

# Conformance scenarios every speed-run server must pass (the list, in the suite's names).
APPLIES = [
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
]
# The suite's active scenarios that test features speed-run does not offer; README's Development section says why for
# each. Handed to the suite as its expected-failures baseline, which is exact both ways: a scenario listed here that
# starts passing fails the run too, so the list cannot go stale.
NOT_APPLICABLE = [
    "logging-set-level",
    "completion-complete",
    "tools-call-image",
    "tools-call-audio",
    "tools-call-embedded-resource",
    "tools-call-mixed-content",
    "tools-call-with-logging",
    "tools-call-with-progress",
    "tools-call-sampling",
    "tools-call-elicitation",
    "elicitation-sep1034-defaults",
    "elicitation-sep1330-enums",
    "resources-read-text",
    "resources-read-binary",
    "resources-templates-read",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-get-simple",
    "prompts-get-with-args",
    "prompts-get-embedded-resource",
    "prompts-get-with-image",
]


@pytest.fixture(scope="session")
def node_bin() -> Path:
    """The cached bin dir of scripts/node-tools.sh; skips the test (with the installer's words) if it can't install."""
    if shutil.which("bash") is None:
        pytest.skip("the outside-client tests need bash to run scripts/node-tools.sh")
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "node-tools.sh")],
            env={**os.environ, "PYTHON": sys.executable},
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("scripts/node-tools.sh did not install Node 22 and the MCP clients within 15 minutes")
    if done.returncode != 0:
        pytest.skip(f"Node 22 and the MCP clients could not be installed (scripts/node-tools.sh): {done.stderr[-600:]}")
    print(f"node-tools ready in {time.monotonic() - started:.1f} s: {done.stderr.strip()}")
    return Path(done.stdout.strip().splitlines()[-1])


def _node_env(node_bin: Path, home: Path) -> dict[str, str]:
    """The clients' environment: the cached Node first on PATH, a throwaway HOME, no telemetry or update checks."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": f"{node_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "NO_COLOR": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "npm_config_update_notifier": "false",
    }


def _run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _inspector_stdio(node_bin: Path, tmp_path: Path, fake_llm: FakeLLM, *args: str) -> subprocess.CompletedProcess[str]:
    """`mcp-inspector --cli` starting `speedrun mcp` on stdio, its environment given with -e as a user would."""
    (tmp_path / "root").mkdir(exist_ok=True)
    env_args = [a for k, v in server_env(tmp_path, fake_llm).items() if k != "PATH" for a in ("-e", f"{k}={v}")]
    cmd = [str(node_bin / "mcp-inspector"), "--cli", *env_args, *args, *SERVER]
    return _run(cmd, _node_env(node_bin, tmp_path / "client-home"), tmp_path)


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}"
    return json.loads(done.stdout)


def test_inspector_cli_lists_the_tools_and_calls_check_status_over_stdio(
    node_bin: Path, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    # --strict: Inspector reports tool-schema portability problems and exits 6 on an error-severity one.
    listed = _json(_inspector_stdio(node_bin, tmp_path, fake_llm, "--method", "tools/list", "--strict"))
    tools = {tool["name"]: tool for tool in listed["tools"]}
    assert [tool["name"] for tool in listed["tools"]] == TOOLS
    for name, tool in tools.items():
        assert tool["description"], name
        assert tool["outputSchema"]["type"] == "object", name

    done = _inspector_stdio(node_bin, tmp_path, fake_llm, "--method", "tools/call", "--tool-name", "check_status")
    called = _json(done)
    assert called["isError"] is False
    status = called["structuredContent"]
    jsonschema.validate(status, tools["check_status"]["outputSchema"])
    assert status["status"] == "ok", status
    assert (status["url"], status["model"], status["available_models"]) == (
        fake_llm.base_url,
        "fake-model",
        ["fake-model"],
    )
    assert set(status["roles"]) >= {"generator", "planner", "fixer"}
    assert status["isolation"]
    # The key given with -e reached the server (it listed the models with it) and never came back to the client.
    models = [r for r in fake_llm.requests if r.method == "GET" and r.path.endswith("/models")]
    assert models and models[-1].headers["authorization"] == f"Bearer {MCP_KEY}"
    assert MCP_KEY not in done.stdout + done.stderr


def _expand(text: str, values: dict[str, str]) -> str:
    """Claude Code's expansion of ${NAME} and ${NAME:-default} in .mcp.json."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: values.get(m.group(1), m.group(2) or ""), text)


def test_inspector_cli_starts_the_plugin_server_from_its_mcp_json(
    node_bin: Path, tmp_path: Path, fake_llm: FakeLLM
) -> None:
    """The plugin's own .mcp.json command (`uv run ... --quiet speedrun mcp`): nothing uv prints may break stdio."""
    uv = subprocess.run(["bash", str(REPO / "scripts" / "ensure-uv.sh")], capture_output=True, text=True)
    if uv.returncode != 0:
        pytest.skip(f"uv could not be installed (scripts/ensure-uv.sh): {uv.stderr[-600:]}")
    (tmp_path / "root").mkdir()
    env = server_env(tmp_path, fake_llm)
    config = json.loads(_expand((REPO / ".mcp.json").read_text(), {"CLAUDE_PLUGIN_ROOT": str(REPO), **env}))
    config["mcpServers"]["speed-run"]["env"].update({k: v for k, v in env.items() if k != "PATH"})
    (tmp_path / "mcp.json").write_text(json.dumps(config))
    client_env = _node_env(node_bin, tmp_path / "client-home")
    client_env["PATH"] += os.pathsep + str(Path(uv.stdout.strip()).parent)
    cmd = [str(node_bin / "mcp-inspector"), "--cli", "--config", str(tmp_path / "mcp.json"), "--server", "speed-run"]
    done = _run([*cmd, "--method", "tools/call", "--tool-name", "check_status"], client_env, tmp_path)
    status = _json(done)["structuredContent"]
    assert (status["status"], status["url"], status["model"]) == ("ok", fake_llm.base_url, "fake-model"), status
    assert MCP_KEY not in done.stdout + done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def http_server(tmp_path: Path, fake_llm: FakeLLM) -> Iterator[str]:
    """`speedrun mcp --http --port N` on loopback as a user starts it; yields its /mcp URL, stops it by its PID."""
    (tmp_path / "root").mkdir(exist_ok=True)
    port, log = _free_port(), tmp_path / "http-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*SERVER, "--http", "--port", str(port)],
            env=server_env(tmp_path, fake_llm),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        if proc.poll() is not None or time.monotonic() >= deadline:
            pytest.fail(
                f"speedrun mcp --http did not come up on port {port}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _checks(results: Path) -> dict[str, list[dict[str, Any]]]:
    """The suite's checks.json files, by scenario (its folders are named server-<scenario>-<timestamp>)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in results.glob("*/checks.json"):
        scenario = re.sub(r"^server-|-\d{4}-\d\d-\d\dT[\d-]+Z$", "", path.parent.name)
        found.setdefault(scenario, []).extend(json.loads(path.read_text()))
    return found


def test_conformance_suite_passes_every_scenario_that_applies_over_http(
    node_bin: Path, tmp_path: Path, http_server: str
) -> None:
    baseline = tmp_path / "expected-failures.yml"
    baseline.write_text("server:\n" + "".join(f"  - {name}\n" for name in NOT_APPLICABLE))
    results = tmp_path / "conformance"
    cmd = [str(node_bin / "conformance"), "server", "--url", http_server, "--expected-failures", str(baseline)]
    done = _run([*cmd, "-o", str(results)], _node_env(node_bin, tmp_path / "client-home"), tmp_path, timeout=300)
    summary = done.stdout[done.stdout.find("=== SUMMARY ===") :]
    # Exit 0 only when every failure is in the baseline and every baseline entry still fails.
    assert done.returncode == 0, f"{summary[-4000:]}\n{done.stderr[-2000:]}"
    assert MCP_KEY not in done.stdout + done.stderr

    checks = _checks(results)
    for scenario in APPLIES:
        assert checks.get(scenario), f"the suite ran no {scenario} checks: {sorted(checks)}"
        failed = [c for c in checks[scenario] if c["status"] != "SUCCESS"]
        assert not failed, f"{scenario}: {failed}"
    assert checks["tools-list"][0]["details"]["tools"] == TOOLS
    rebinding = {c["id"]: c["details"]["statusCode"] for c in checks["dns-rebinding-protection"]}
    assert 400 <= rebinding["localhost-host-rebinding-rejected"] < 500, rebinding
    assert rebinding["localhost-host-valid-accepted"] == 200, rebinding
    streams = {c["id"]: c["details"] for c in checks["server-sse-multiple-streams"]}
    assert streams["server-sse-streams-functional"]["functionalSseStreams"] >= 2, streams


def test_inspector_cli_calls_check_status_over_http(
    node_bin: Path, tmp_path: Path, http_server: str, fake_llm: FakeLLM
) -> None:
    env = _node_env(node_bin, tmp_path / "client-home")
    base = [str(node_bin / "mcp-inspector"), "--cli", http_server, "--transport", "http"]
    listed = _json(_run([*base, "--method", "tools/list"], env, tmp_path))
    assert [tool["name"] for tool in listed["tools"]] == TOOLS
    done = _run([*base, "--method", "tools/call", "--tool-name", "check_status"], env, tmp_path)
    status = _json(done)["structuredContent"]
    assert (status["status"], status["url"]) == ("ok", fake_llm.base_url), status
    assert MCP_KEY not in done.stdout + done.stderr


def test_readme_development_lists_each_conformance_scenario_that_does_not_apply() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n## Development") :]
    section = section[: section.find("\n## ", 1) if "\n## " in section[1:] else None]
    missing = [name for name in NOT_APPLICABLE if f"`{name}`" not in section]
    assert not missing, f"README's Development section does not list: {missing}"
    assert not [name for name in APPLIES if f"`{name}`" not in section]


def _skills() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "skills").glob("*/SKILL.md"))


def _offline() -> list[str]:
    """A prefix that runs a command with no network (bubblewrap's own network namespace), where bubblewrap works."""
    bwrap = ["bwrap", "--dev-bind", "/", "/", "--unshare-net"]
    if shutil.which("bwrap") and subprocess.run([*bwrap, "true"], capture_output=True).returncode == 0:
        return bwrap
    return []


def test_claude_plugin_validate_passes_plain_and_strict(node_bin: Path, tmp_path: Path) -> None:
    env = _node_env(node_bin, tmp_path / "client-home")
    claude = str(node_bin / "claude")
    for strict in ([], ["--strict"]):
        # Offline where the machine allows it: validation must not need the network.
        done = _run([*_offline(), claude, "plugin", "validate", *strict, "."], env, REPO)
        out = done.stdout + done.stderr
        assert done.returncode == 0, f"claude plugin validate {' '.join(strict)} exit {done.returncode}:\n{out[-3000:]}"
        assert "Validation passed" in out
        # What Claude Code will load: the hook, the MCP server and every skill in skills/.
        assert re.search(r"hooks: SessionStart", out), out[-3000:]
        assert re.search(r"mcpServers: speed-run stdio", out), out[-3000:]
        assert _skills() and all(f"skills: speed-run:{name}" in out for name in _skills()), out[-3000:]


def test_claude_plugin_validate_refuses_a_broken_copy(node_bin: Path, tmp_path: Path) -> None:
    """The control for the test above: the same validator fails a copy whose manifest lost its name."""
    plugin = tmp_path / "plugin"
    for part in (".claude-plugin", "skills", "hooks"):
        shutil.copytree(REPO / part, plugin / part)
    shutil.copy(REPO / ".mcp.json", plugin / ".mcp.json")
    manifest = json.loads((plugin / ".claude-plugin" / "plugin.json").read_text())
    manifest["name"] = "Speed Run!"  # plugin names are kebab-case
    (plugin / ".claude-plugin" / "plugin.json").write_text(json.dumps(manifest))
    done = _run([str(node_bin / "claude"), "plugin", "validate", "."], _node_env(node_bin, tmp_path / "h"), plugin)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert re.search(r"name: .*kebab-case", out) and "Validation passed" not in out, out[-3000:]
