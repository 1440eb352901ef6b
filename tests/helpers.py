"""Helpers shared by several test modules: scripted replies, CLI and MCP session runners, fixture texts."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client, types

from speedrun.config import Settings
from tests.fake_llm import FakeLLM
from tests.schema_answers import follow_schema, request_schema, request_text

# --- turbo: the calc task and replies in the product's protocols ------------------------------------------

# The workspace's tests run with this venv's pytest. The two extra -p flags only skip slow auto-loaded
# plugins (langsmith alone costs ~2 s per start); the generated workspaces need neither.
PYTEST = f"{shlex.quote(sys.executable)} -m pytest -q -p no:cacheprovider -p no:langsmith_plugin -p no:anyio"

FIXED_CALC = "def add(a, b):\n    return a + b\n"
TEST_CALC = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"


def file_blocks(files: dict[str, str]) -> str:
    """A generator reply in the file protocol."""
    return "".join(f'<FILE path="{path}">\n{content}</FILE>\n' for path, content in files.items())


def fix_reply(*edits: tuple[str, str, str], diagnosis: str = "add subtracts instead of adding") -> str:
    """A fixer reply: the FixPlan JSON."""
    return json.dumps({"diagnosis": diagnosis, "edits": [{"path": p, "search": s, "replace": r} for p, s, r in edits]})


def role_of(request) -> str:
    """Which role sent a chat request, told apart by the system prompt the product uses for it."""
    system = request.body["messages"][0]["content"]
    if system.startswith("You write complete, working source files"):
        return "generator"
    if system.startswith("You repair code"):
        return "fixer"
    if system.startswith("You are a senior engineer writing a precise implementation contract"):
        return "planner"
    return "other"


def last_user_text(request) -> str:
    return request.body["messages"][-1]["content"]


CONTRACT_TEXT = (
    "DATA CONTRACT:\nints\n\nAPI CONTRACT:\nadd(a, b) -> int in calc.py\n\nALGORITHM:\nsum\n\n"
    "RULES:\ncalc.py and test_calc.py\n"
)

# First run of the tests: record the test process group (the sandbox gives it its own session, so $$ is the
# group id) and hang. Every later run: the real tests.
HANG_ONCE = f"test -f .pid || {{ echo $$ > .pid.tmp && mv .pid.tmp .pid; sleep 60; }}; {PYTEST}"


# --- the CLI as a subprocess -------------------------------------------------------------------------------

CLI_KEY = "csk-cli-SECRET-7777"


def run_cli(args: list[str], tmp_path: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m speedrun ARGS` in tmp_path with only PATH, a temp HOME and the given variables."""
    base = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "SPEEDRUN_HOME": str(tmp_path / "state"),
    }
    return subprocess.run(
        [sys.executable, "-m", "speedrun", *args],
        cwd=tmp_path,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ctrl_c_able() -> None:
    """Popen's preexec_fn for a CLI that a test interrupts: a shell's background job (`pytest &`) starts with
    SIGINT ignored, which children inherit and Python then keeps, so Ctrl-C would not reach the CLI."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def fake_env(fake: FakeLLM) -> dict[str, str]:
    return {"CEREBRAS_API_KEY": CLI_KEY, "CEREBRAS_URL": fake.base_url, "CEREBRAS_MODEL": "fake-model"}


# --- `speedrun mcp` over stdio --------------------------------------------------------------------------

MCP_KEY = "csk-mcp-SECRET-31337abc"
SERVER_CMD = [sys.executable, "-m", "speedrun", "mcp"]


def server_env(tmp_path: Path, fake: FakeLLM | None, **extra: str) -> dict[str, str]:
    """Only what the server needs: no inherited key can sneak in (stdio_client whitelists the rest)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path / "home"),
        "SPEEDRUN_HOME": str(tmp_path / "state"),
        "SPEEDRUN_ROOTS": str(tmp_path / "root"),
    }
    if fake is not None:
        env.update(CEREBRAS_API_KEY=MCP_KEY, CEREBRAS_URL=fake.base_url, CEREBRAS_MODEL="fake-model")
    env.update(extra)
    return env


@asynccontextmanager
async def mcp_session(
    tmp_path: Path, env: dict[str, str], command: list[str] = SERVER_CMD, client_roots: list[Path] | None = None
) -> AsyncIterator[ClientSession]:
    """An initialized client session over stdio; the server's stderr goes to tmp_path/server-stderr.log.

    With `client_roots`, the client declares the roots capability and answers roots/list with them.
    """
    (tmp_path / "root").mkdir(exist_ok=True)
    params = StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=str(tmp_path))

    async def list_roots(context: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=p.as_uri()) for p in client_roots or []])

    roots_kw = {"list_roots_callback": list_roots} if client_roots is not None else {}
    with open(tmp_path / "server-stderr.log", "a") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, **roots_kw) as session,
        ):
            await session.initialize()
            yield session


class Transcript:
    """Every tool result of a session, so a test can check that no secret appears in any of them."""

    def __init__(self, session: ClientSession):
        self.session = session
        self.results: list[Any] = []

    async def call(self, name: str, args: dict[str, Any] | None = None, **kw: Any) -> Any:
        result = await self.session.call_tool(name, args or {}, **kw)
        self.results.append(result)
        return result

    def text(self) -> str:
        return "\n".join(json.dumps(r.model_dump(mode="json")) for r in self.results)


def error_text(result: Any) -> str:
    assert result.is_error, result
    return " ".join(c.text for c in result.content if getattr(c, "text", None))


class Caller:
    """The MCP client side: calls tools and keeps every result's text for the compactness checks."""

    def __init__(self, session: ClientSession):
        self.session = session
        self.texts: list[str] = []
        self.progress: list[str] = []

    async def call(self, tool: str, **args) -> dict:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            self.progress.append(message or "")

        result = await self.session.call_tool(tool, args, progress_callback=on_progress)
        text = "".join(getattr(c, "text", "") for c in result.content)
        assert not result.is_error, text
        self.texts.append(text)
        return result.structured_content

    async def error(self, tool: str, **args) -> str:
        result = await self.session.call_tool(tool, args)
        assert result.is_error
        return "".join(getattr(c, "text", "") for c in result.content)


def server_params(env: dict[str, str], cwd: Path) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "speedrun", "mcp"], env=env, cwd=str(cwd))


# --- the gateway in process -----------------------------------------------------------------------------

GATEWAY_KEY = "csk-test-SECRET-4f8a1b9c"


def make_settings(env: pytest.MonkeyPatch, fake: FakeLLM, **extra: object) -> Settings:
    """Settings pointing the Cerebras preset at the fake server, plus any extra variables."""
    env.setenv("CEREBRAS_API_KEY", GATEWAY_KEY)
    env.setenv("CEREBRAS_URL", fake.base_url)
    env.setenv("CEREBRAS_MODEL", "fake-model")
    for name, value in extra.items():
        env.setenv(name, str(value))
    return Settings()


# --- judging ----------------------------------------------------------------------------------------------

#: The test file shipped with the example task (tests named `b` and `t`), as every implementation gets it.
SHIPPED_TESTS = Path(__file__).resolve().parents[1] / "examples" / "token-bucket" / "tests" / "test_token_bucket.py"
#: A clean implementation of that task (passes SHIPPED_TESTS, no readability violation of its own).
TOKEN_BUCKET_PY = '''\
"""A thread-safe token-bucket rate limiter with an injectable clock."""

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Holds up to `capacity` tokens, refilled at `refill_rate` tokens per second."""

    def __init__(self, capacity: float, refill_rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if capacity <= 0 or refill_rate <= 0:
            raise ValueError("capacity and refill_rate must be positive")
        self.capacity = float(capacity)
        self.refill_rate = float(refill_rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._last = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.refill_rate)
        self._last = now

    def _check(self, tokens: float) -> None:
        if tokens <= 0 or tokens > self.capacity:
            raise ValueError(f"tokens must be in (0, {self.capacity}]")

    def available(self) -> float:
        """Tokens available now."""
        with self._lock:
            self._refill()
            return self._tokens

    def try_acquire(self, tokens: float = 1) -> bool:
        """Take `tokens` if they are available now."""
        self._check(tokens)
        with self._lock:
            self._refill()
            if self._tokens < tokens:
                return False
            self._tokens -= tokens
            return True

    def time_until(self, tokens: float = 1) -> float:
        """Seconds until `tokens` would be available."""
        with self._lock:
            self._refill()
            return max(0.0, (tokens - self._tokens) / self.refill_rate)

    def acquire(self, tokens: float = 1, timeout: float | None = None) -> bool:
        """Wait for `tokens`, giving up when the wait would exceed `timeout`."""
        self._check(tokens)
        while True:
            wait = self.time_until(tokens)
            if timeout is not None and wait > timeout:
                return False
            if wait > 0:
                self._sleep(wait)
            if self.try_acquire(tokens):
                return True
'''


def set_yes(answers: dict, yes: int) -> None:
    """Mark the first `yes` items (F1, F2, ... in number order) true, the rest false."""
    for index, key in enumerate(sorted(answers, key=lambda k: int(k[1:]))):
        answers[key]["answer"] = index < yes


class Script:
    """Answers reviews with one finding; gives the implementation holding `strong_marker` full fitness.

    The other one gets `weak_fitness` but full robustness and maintainability, so its total can still tie.
    Answers are built from the schema the request carries, so they follow it exactly.
    """

    def __init__(self, strong_marker: str, weak_fitness: int = 5):
        self.strong_marker = strong_marker
        self.weak_fitness = weak_fitness

    def __call__(self, body: dict) -> str:
        text = request_text(body)
        if "fresh-eyes" in text:
            return json.dumps(
                {
                    "findings": [
                        {
                            "severity": "minor",
                            "category": "edge case",
                            "file": "calc.py",
                            "line": 1,
                            "message": "no input validation",
                        }
                    ]
                }
            )
        verdict = follow_schema(request_schema(body))
        blocks = re.split(r"=== Implementation ([A-E]) ===", text)
        strong = {blocks[i] for i in range(1, len(blocks), 2) if self.strong_marker in blocks[i + 1]}
        for label, answers in verdict.items():
            fitness, robust, maintain = (8, 10, 5) if label in strong else (self.weak_fitness, 12, 6)
            set_yes(answers["fitness"], fitness)
            set_yes(answers["robustness"], robust)
            set_yes(answers["maintainability"], maintain)
            answers.update(
                complexity_justified=True, complexity_evidence="lean", estimated_necessary_loc=3, bad_names=[]
            )
        return json.dumps(verdict)


def wait_for(predicate, within: float, what: str) -> None:
    """Poll `predicate` until it holds, or fail naming what did not happen within `within` seconds."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        time.sleep(0.02)


# --- parallel runners (showdown, any-percent): a temp git repo and a server that tells runners apart -------

PLAN_SYSTEM_START = "You are a senior engineer writing an implementation plan"


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` with a fixed identity; its stdout, stripped."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def make_repo(path: Path, files: dict[str, str] | None = None, branch: str = "main") -> Path:
    """A git repository with one commit holding README.md and `files`."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", branch)
    for rel, content in {"README.md": "# demo\n", **(files or {})}.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "start")
    return path


def runner_of(body: dict) -> str | None:
    """Which runner a plan or generator request is for: 'runner-N' or 'variant-<slug>'; None for other roles."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if system.startswith(PLAN_SYSTEM_START):
        found = re.search(r"You are runner (\d+)", user) or re.search(r"and only this one: ([a-z0-9-]+)", user)
        if found is None:
            return None
        return f"runner-{found.group(1)}" if found.group(1).isdigit() else f"variant-{found.group(1)}"
    if system.startswith("You write complete, working source files"):
        found = re.search(r"PLAN-FOR ([a-z0-9-]+)", user)
        return found.group(1) if found else None
    return None


def runner_plan(name: str) -> str:
    """A plan in the contract format, as a model writes it, marked with its runner."""
    return (
        f"DATA CONTRACT:\nIntegers in, an integer out (PLAN-FOR {name}).\n\n"
        f"API CONTRACT:\nadd(a: int, b: int) -> int in calc.py; {name} keeps it in one function.\n\n"
        f"ALGORITHM:\n{name}: return the sum of a and b.\n\nRULES:\nWrite calc.py and test_calc.py (pytest).\n"
    )


class RunnerScript:
    """Answers plans and code per runner (code[name] is its calc.py), and judge requests with `judge`.

    `fail` names runners whose generator calls get an HTTP 500; `delay` is each reply's latency."""

    def __init__(self, code: dict[str, str], judge: Any = None, fail: tuple[str, ...] = (), delay: float = 0.0):
        self.code, self.judge, self.fail, self.delay = code, judge, fail, delay

    def __call__(self, body: dict) -> Any:
        from tests.fake_llm import Reply

        name = runner_of(body)
        if body["messages"][0]["content"].startswith(PLAN_SYSTEM_START):
            return Reply(content=runner_plan(name or "unknown"), delay=self.delay)
        if name is not None:
            if name in self.fail:
                return Reply(status=500, error_message="scripted outage", delay=self.delay)
            return Reply(content=file_blocks({"calc.py": self.code[name], "test_calc.py": TEST_CALC}), delay=self.delay)
        answer = self.judge(body) if self.judge else "{}"
        return Reply(content=answer, delay=self.delay)


def read_terminal(fd: int, seconds: float = 120) -> bytes:
    """Everything a child wrote to its pseudo-terminal until it closed it (or `seconds` passed); closes `fd`."""
    seen, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(fd)
    return seen


def processes_marked(marker: str) -> list[int]:
    """Live processes whose command line holds `marker` (a test command run by the killed process, or its child)."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            found.append(int(entry.name))
    return found
