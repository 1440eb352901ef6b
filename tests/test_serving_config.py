"""The scale-out guide's example config (docs/serving/) stays in step with langgraph.json and the extras."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVING = ROOT / "docs" / "serving"


def _graphs(config: Path) -> dict[str, Path]:
    """Each graph of a langgraph config, as the absolute file it loads (paths are relative to the config)."""
    graphs = json.loads(config.read_text())["graphs"]
    return {name: (config.parent / spec.split(":")[0]).resolve() for name, spec in graphs.items()}


def test_the_serving_config_serves_the_same_graphs_as_langgraph_json() -> None:
    served = _graphs(SERVING / "langgraph.json")
    assert served == _graphs(ROOT / "langgraph.json")
    assert all(path.is_file() for path in served.values())


def test_the_serving_image_installs_the_project_and_the_redis_extra() -> None:
    deps = json.loads((SERVING / "langgraph.json").read_text())["dependencies"]
    assert (SERVING / deps[0]).resolve() == ROOT  # the project itself
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["redis"]
    # Bare names: langgraph-cli writes them unquoted into a shell line, where `>=` would be a redirection.
    assert sorted(deps[1:]) == sorted(re.split(r"[<>=!~\[ ]", req)[0] for req in extra)


def test_the_compose_example_keeps_the_two_stores_apart() -> None:
    services = yaml.safe_load((SERVING / "compose.yaml").read_text())["services"]
    env = services["langgraph-api"]["environment"]
    assert env["DATABASE_URI"].endswith("/langgraph?sslmode=disable")
    assert env["REDIS_URI"].endswith("/0") and env["SPEEDRUN_REDIS_URL"].endswith("/1")
    assert "CREATE DATABASE speedrun" in (SERVING / "initdb" / "10-speedrun.sql").read_text()
    assert ".env" in (SERVING / ".gitignore").read_text().split()


def _ignored(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves `path` out of the build context: the last matching pattern wins (`!` re-includes), and
    a pattern that matches a directory leaves out everything below it."""
    result = False
    for raw in patterns:
        keep = raw.startswith("!")
        pattern = raw[1:].strip("/") if keep else raw.strip("/")
        # Docker's syntax: `**` any number of directories, `*` and `?` within one name (never a `/`).
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            result = not keep
    return result


def test_dockerignore_keeps_secrets_and_local_environments_out_of_images() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for secret in (".env", "docs/serving/.env", "docs/serving/processes.env", "examples/x/.env.local"):
        assert _ignored(patterns, secret), secret
    for local in (
        ".venv/bin/python",
        ".git/config",
        "speedrun/__pycache__/cli.cpython-311.pyc",
        ".speedrun/runs.sqlite",
    ):
        assert _ignored(patterns, local), local
    # What the image installs and serves stays in.
    for needed in ("pyproject.toml", "README.md", "speedrun/graphs/turbo.py", "docs/serving/env.example"):
        assert not _ignored(patterns, needed), needed
