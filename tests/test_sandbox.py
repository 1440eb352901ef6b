"""Tests for speedrun.sandbox: real workspaces in tmp_path, real pytest, real process groups."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import textwrap
import time
from pathlib import Path

import pytest

from speedrun.errors import InputError
from speedrun.sandbox import (
    ALLOWED_ENV_NAMES,
    _bwrap_works,
    _is_pytest_command,
    _Tail,
    check_test_command,
    run_tests,
    scrubbed_env,
)
from speedrun.state.turbo import TurboInput

# Works from any cwd. The two -p flags only skip this venv's slow auto-loaded plugins (langsmith
# alone costs ~2 s per pytest start); the generated workspaces need neither.
PYTEST = f"{shlex.quote(sys.executable)} -m pytest -q -p no:langsmith_plugin -p no:anyio"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content).lstrip("\n"))
    return root


CALC = """
def add(a, b):
    return a + b
"""


def wait_gone(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` no longer exists (os.kill raises ProcessLookupError).

    Orphans are reaped by PID 1, which can take a moment; a process still present only as a
    zombie at the deadline also counts as gone (it can no longer run anything).
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :].split()[0] in ("Z", "X")


BWRAP_OK, BWRAP_WHY = _bwrap_works()
MODES = [
    "none",
    pytest.param("bwrap", marks=pytest.mark.skipif(not BWRAP_OK, reason=f"bwrap unavailable: {BWRAP_WHY}")),
]


def marker() -> str:
    """A unique `sleep` argument, so a leftover process can be found by its command line in /proc."""
    return f"{os.getpid() % 1000 + 1000}.{time.monotonic_ns() % 10**9:09d}"


def processes_with(mark: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line contains ``mark``, seen from this host."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if mark in cmdline and stat[stat.rfind(")") + 2 :].split()[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def describe(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:300]
    except OSError:
        return f"{pid} (gone)"


def wait_marker_gone(mark: str, within: float = 5.0) -> list[int]:
    """[] once no process carries ``mark``; else the survivors at the deadline."""
    deadline = time.monotonic() + within
    while (left := processes_with(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def wait_marker_seen(mark: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not processes_with(mark):
        assert time.monotonic() < deadline, f"no process with {mark} ever started"
        time.sleep(0.05)


def wait_for_file(path: Path, within: float = 5.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


# --------------------------------------------------------------------------------------------------
# pytest workspaces


@pytest.mark.anyio
async def test_all_passing(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "calc.py": CALC,
            "test_calc.py": """
            import pytest
            from calc import add

            def test_one():
                assert add(1, 2) == 3

            def test_two():
                assert add(0, 0) == 0

            @pytest.mark.skip(reason="later")
            def test_skipped():
                pass
        """,
        },
    )
    report = await run_tests(PYTEST, tmp_path)
    assert report.ok, report.output_tail
    assert (report.passed, report.failed, report.errors, report.skipped) == (2, 0, 0, 1)
    assert report.exit_code == 0
    assert report.failures == []
    assert report.command == PYTEST  # as given, without the junit flags
    assert report.duration_ms > 0
    assert "2 passed" in report.output_tail
    # -p no:cacheprovider + PYTHONDONTWRITEBYTECODE: the workspace stays clean.
    assert not (tmp_path / ".pytest_cache").exists()
    assert not (tmp_path / "__pycache__").exists()


@pytest.mark.anyio
async def test_one_failing_one_passing(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "calc.py": CALC,
            "tests/test_calc.py": """
            from calc import add

            def test_good():
                assert add(2, 2) == 4

            class TestAdd:
                def test_bad(self):
                    total = add(1, 1)
                    assert total == 3, "one plus one"
        """,
        },
    )
    report = await run_tests(PYTEST, tmp_path)
    assert not report.ok
    assert report.exit_code == 1
    assert (report.passed, report.failed, report.errors) == (1, 1, 0)
    [failure] = report.failures
    assert failure.name == "tests/test_calc.py::TestAdd::test_bad"
    assert "one plus one" in failure.message
    assert "assert 2 == 3" in failure.message
    assert len(failure.message) <= 1500
    assert failure.file == "tests/test_calc.py"
    assert failure.line == 9


@pytest.mark.anyio
async def test_failures_capped_and_location_inside_workspace(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "helpers.py": """
            def check(v):
                assert v < 0, f"bad {v}"
        """,
            "test_many.py": """
            import pytest
            from helpers import check

            @pytest.mark.parametrize("v", range(5))
            def test_v(v):
                check(v)
        """,
        },
    )
    report = await run_tests(PYTEST, tmp_path, max_failures=2)
    assert report.failed == 5
    assert len(report.failures) == 2
    assert report.failures[0].name == "test_many.py::test_v[0]"
    # The deepest frame inside the workspace is the helper, not the test.
    assert (report.failures[0].file, report.failures[0].line) == ("helpers.py", 2)


@pytest.mark.anyio
async def test_collection_error(tmp_path: Path) -> None:
    write(tmp_path, {"test_broken.py": "def test_x(:\n    pass\n"})
    report = await run_tests(PYTEST, tmp_path)
    assert not report.ok
    assert report.errors >= 1
    assert report.exit_code == 2
    assert report.failures, report
    failure = report.failures[0]
    assert "SyntaxError" in failure.message
    assert failure.name == "test_broken.py"
    assert (failure.file, failure.line) == ("test_broken.py", 1)


@pytest.mark.anyio
async def test_no_tests_collected(tmp_path: Path) -> None:
    write(tmp_path, {"calc.py": CALC})
    report = await run_tests(PYTEST, tmp_path)
    assert not report.ok
    assert report.exit_code == 5
    assert report.errors == 1
    assert report.passed == report.failed == 0
    assert "no tests were collected" in report.failures[0].message


@pytest.mark.anyio
async def test_env_is_scrubbed_for_the_test_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "CEREBRAS_API_KEY": "sk-secret-123",
        "GITHUB_TOKEN": "ghp-secret-456",
        "MY_PASSWORD": "hunter2-secret-789",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-000",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PIP_FIND_LINKS", "https://bob:pw-secret-111@example.com/simple")
    values = [*secrets.values(), "pw-secret-111"]
    write(
        tmp_path,
        {
            "test_env.py": f"""
            import json, os

            SECRETS = {values!r}

            def test_dump_env():
                dump = json.dumps(dict(os.environ))
                with open("env.json", "w") as f:
                    f.write(dump)
                for value in SECRETS:
                    assert value not in dump
        """,
        },
    )
    report = await run_tests(PYTEST, tmp_path)
    assert report.ok, report.output_tail
    dumped = (tmp_path / "env.json").read_text()
    for value in values:
        assert value not in dumped
    env = json.loads(dumped)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert not set(secrets) & set(env)


# --------------------------------------------------------------------------------------------------
# other commands, timeouts, output


@pytest.mark.anyio
async def test_non_pytest_command(tmp_path: Path) -> None:
    command = "sh -c 'echo hi; exit 3'"
    report = await run_tests(command, tmp_path)
    assert report.exit_code == 3
    assert report.failed == 1
    assert report.passed == report.errors == 0
    assert "hi" in report.output_tail
    [failure] = report.failures
    assert failure.name == command
    assert "hi" in failure.message
    assert report.command == command


@pytest.mark.anyio
async def test_non_pytest_success_and_stderr_merged(tmp_path: Path) -> None:
    report = await run_tests("echo out; echo err >&2; read x || echo stdin-closed", tmp_path)
    assert report.ok
    assert report.failures == []
    assert report.output_tail.split() == ["out", "err", "stdin-closed"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_timeout_kills_grandchildren(tmp_path: Path, mode: str) -> None:
    mark = marker()
    write(
        tmp_path,
        {
            "test_hang.py": f"""
            import pathlib, subprocess, time

            def test_hang():
                subprocess.Popen(["sleep", "{mark}"])
                pathlib.Path("spawned").write_text("yes")
                time.sleep(1000)
        """,
        },
    )
    timeout = 3.0
    started = time.monotonic()
    report = await run_tests(PYTEST, tmp_path, timeout_s=timeout, mode=mode)
    elapsed = time.monotonic() - started
    assert report.timed_out
    assert report.exit_code is None
    assert not report.ok
    assert elapsed < timeout + 3, elapsed
    assert "timed out" in report.output_tail
    assert (tmp_path / "spawned").read_text() == "yes"  # the grandchild did start
    assert not await asyncio.to_thread(wait_marker_gone, mark), "the grandchild survived the timeout"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_cancellation_kills_the_group(tmp_path: Path, mode: str) -> None:
    mark = marker()
    task = asyncio.ensure_future(run_tests(f"sleep {mark} & sleep {mark}", tmp_path, timeout_s=60, mode=mode))
    await asyncio.to_thread(wait_marker_seen, mark)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await asyncio.to_thread(wait_marker_gone, mark)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("escape", ["", "setsid ", "sh -c 'setsid sleep {mark} &' ; "])
async def test_background_leftovers_do_not_outlive_the_command(tmp_path: Path, mode: str, escape: str) -> None:
    """Plain background jobs, `setsid` and a double fork all die when the command ends."""
    mark = marker()
    command = (escape.format(mark=mark) if "{mark}" in escape else f"{escape}sleep {mark} & ") + "echo done"
    started = time.monotonic()
    report = await run_tests(command, tmp_path, timeout_s=30, mode=mode)
    assert time.monotonic() - started < 5  # did not wait for the background sleep
    assert report.ok and "done" in report.output_tail, report.output_tail
    assert not await asyncio.to_thread(wait_marker_gone, mark)


@pytest.mark.anyio
async def test_output_cap_keeps_the_tail(tmp_path: Path) -> None:
    script = "import sys\nfor i in range(50_000): sys.stdout.write('x' * 99 + '\\n')\nprint('LAST LINE')"
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}"
    cap = 10_000
    report = await run_tests(command, tmp_path, output_cap=cap)
    assert report.ok
    assert len(report.output_tail) <= cap
    assert report.output_tail.rstrip().endswith("LAST LINE")
    assert "characters of output dropped" in report.output_tail.splitlines()[0]


@pytest.mark.anyio
async def test_missing_cwd_raises_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InputError, match="nope"):
        await run_tests("true", missing)


# --------------------------------------------------------------------------------------------------
# pure helpers


def test_scrubbed_env_allow_list_and_filters() -> None:
    source = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "LC_AUTH_TOKEN": "x",  # allowed prefix, secret-looking name
        "VIRTUAL_ENV": "/venv",
        "CEREBRAS_API_KEY": "sk-1",
        "OPENAI_API_KEY": "sk-2",
        "GITHUB_TOKEN": "t",
        "DATABASE_URL": "postgres://u:p@db/x",  # not allow-listed
        "PIP_FIND_LINKS": "https://user:pass@host/simple",  # allow-listed, credential in value
        "REQUESTS_CA_BUNDLE": "/etc/ssl/ca.pem",
        "RANDOM_THING": "1",
        "PYTHONDONTWRITEBYTECODE": "0",
    }
    env = scrubbed_env(source)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "VIRTUAL_ENV": "/venv",
        "REQUESTS_CA_BUNDLE": "/etc/ssl/ca.pem",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    assert source["CEREBRAS_API_KEY"] == "sk-1"  # source untouched


def test_scrubbed_env_keeps_credential_free_urls_and_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    assert scrubbed_env({"PIP_FIND_LINKS": "https://host/simple"})["PIP_FIND_LINKS"] == "https://host/simple"
    assert "PIP_FIND_LINKS" not in scrubbed_env({"PIP_FIND_LINKS": "https://:tok@host/simple"})
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("SOME_SESSION_ID", "abc")
    env = scrubbed_env()
    assert env["TZ"] == "UTC"
    assert "SOME_SESSION_ID" not in env
    assert set(env) <= ALLOWED_ENV_NAMES | {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"} | {
        n for n in env if n.startswith("LC_")
    }


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("pytest", True),
        ("pytest -q tests/", True),
        ("py.test -x", True),
        (".venv/bin/pytest", True),
        ("python -m pytest -q", True),
        ("uv run pytest -q", True),
        ("cd sub && uv run pytest", True),
        ("timeout 60 python3 -m pytest", True),
        ("pytest | tee log.txt", False),
        ("pytest; echo done", False),
        ("npm test", False),
        ("sh -c 'echo hi; exit 3'", False),
        ("go test ./...", False),
        ("python -m unittest", False),
    ],
)
def test_pytest_detection(command: str, expected: bool) -> None:
    assert _is_pytest_command(command) is expected


def test_tail_render_small_and_exact() -> None:
    tail = _Tail(50)
    tail.feed(b"short\n")
    assert tail.render() == "short\n"
    tail = _Tail(120)
    tail.feed("".join(f"line {i}\n" for i in range(1000)).encode())
    out = tail.render("\n[end]")
    assert len(out) <= 120
    assert out.endswith("line 999\n\n[end]")
    header, first = out.splitlines()[:2]
    assert first.startswith("line ")  # cut at a line start
    dropped = int(header.split()[1])
    assert dropped == len("".join(f"line {i}\n" for i in range(1000))) - len(out) + len(header) + 1 + len("\n[end]")
    # a cap too small for the header still honours the cap
    tail = _Tail(10)
    tail.feed(b"0123456789abcdef")
    assert tail.render() == "6789abcdef"
    # multi-byte characters split across chunks decode cleanly
    tail = _Tail(100)
    data = "é€".encode()
    for b in data:
        tail.feed(bytes([b]))
    assert tail.render() == "é€"


# --------------------------------------------------------------------------------------------------
# the test command: checked before work starts, and told apart from failing tests at run time


@pytest.mark.parametrize("command", ["", "   ", "\n\t"])
def test_blank_test_command_is_an_input_error(tmp_path: Path, command: str) -> None:
    with pytest.raises(InputError, match="test_command is empty.*python -m pytest"):
        check_test_command(command, tmp_path)


@pytest.mark.parametrize(
    ("command", "program"),
    [
        ("pytst -q", "pytst"),
        ("PYTHONHASHSEED=0 no-such-runner-xyz --fast", "no-such-runner-xyz"),
        ("/opt/nowhere/bin/pytest -q", "/opt/nowhere/bin/pytest"),
        ("nosuchtool && pytest", "nosuchtool"),
    ],
)
def test_missing_program_is_an_input_error_naming_it(tmp_path: Path, command: str, program: str) -> None:
    with pytest.raises(InputError) as info:
        check_test_command(command, tmp_path)
    text = str(info.value)
    assert repr(program) in text and repr(command) in text
    assert "python -m pytest" in text  # the fix


@pytest.mark.parametrize(
    "command",
    [
        "sh -c 'exit 0'",
        "./run.sh",  # may be generated
        "bash tests/run.sh",
        ".venv/bin/pytest -q",
        "cd sub && pytst",  # only the first program is checked: cd may change what follows
        "FOO=1 sh -c true",
        f"{shlex.quote(sys.executable)} -m pytest -q",
        "$PYTHON -m pytest",
    ],
)
def test_runnable_or_generatable_commands_pass_the_check(tmp_path: Path, command: str) -> None:
    check_test_command(command, tmp_path)


def test_unbalanced_quote_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unbalanced quote"):
        check_test_command("pytest -k 'oops", tmp_path)


def test_long_command_is_echoed_bounded(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        check_test_command("x" * 100_000, tmp_path)
    assert len(str(info.value)) < 700


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("files", "command", "code"),
    [
        ({}, "cd . && no-such-runner-xyz -q", 127),
        ({"run.sh": "echo hi\n"}, "./run.sh", 126),  # not executable
        ({"tests/run.sh": "no-such-runner-xyz tests\n"}, "sh tests/run.sh", 127),
    ],
)
async def test_command_that_cannot_run_is_an_infrastructure_error(
    tmp_path: Path, mode: str, files: dict[str, str], command: str, code: int
) -> None:
    """Exit 127/126 is not a failing test: one error saying so, so no fix cycle is spent on it."""
    write(tmp_path, files)
    report = await run_tests(command, tmp_path, mode=mode)
    assert report.exit_code == code
    assert not report.ok
    assert (report.failed, report.errors) == (0, 1)
    [failure] = report.failures
    assert failure.name == "test infrastructure"
    assert failure.message.startswith("test infrastructure: the test command could not run")
    assert repr(command) in failure.message
    if "problem" in type(report).model_fields:
        assert report.problem == failure.message


@pytest.mark.anyio
async def test_a_failing_test_that_exits_127_is_still_a_failing_test(tmp_path: Path) -> None:
    report = await run_tests("echo 'assert failed: expected 1'; exit 127", tmp_path, mode="none")
    assert (report.failed, report.errors) == (1, 0)
    assert report.failures[0].name != "test infrastructure"


TOKEN_BUCKET = '''
import threading, time


class TokenBucket:
    """Token bucket."""

    def __init__(self, capacity, refill_rate, *, clock=time.monotonic, sleep=time.sleep):
        if capacity <= 0 or refill_rate <= 0:
            raise ValueError("capacity and refill_rate must be > 0")
        self.capacity, self.rate, self.clock, self.sleep = float(capacity), float(refill_rate), clock, sleep
        self.tokens, self.last, self.lock = self.capacity, clock(), threading.Lock()

    def _refill(self):
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now

    def available(self):
        with self.lock:
            self._refill()
            return self.tokens

    def try_acquire(self, tokens=1):
        if tokens <= 0 or tokens > self.capacity:
            raise ValueError("bad amount")
        with self.lock:
            self._refill()
            if self.tokens >= tokens:
                self.tokens -= tokens
                return True
            return False

    def time_until(self, tokens=1):
        with self.lock:
            self._refill()
            return max(0.0, (tokens - self.tokens) / self.rate)

    def acquire(self, tokens=1, timeout=None):
        while True:
            wait = self.time_until(tokens)
            if wait == 0 and self.try_acquire(tokens):
                return True
            if timeout is not None and wait > timeout:
                return False
            self.sleep(wait)
'''


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_default_command_works_for_the_shipped_example_layout(tmp_path: Path, mode: str) -> None:
    """examples/token-bucket: tests in tests/, the module at the root, and the default `pytest -q`."""
    example = Path(__file__).resolve().parents[1] / "examples" / "token-bucket" / "tests"
    (tmp_path / "tests").mkdir()
    for test_file in example.glob("*.py"):
        (tmp_path / "tests" / test_file.name).write_text(test_file.read_text())
    (tmp_path / "token_bucket.py").write_text(TOKEN_BUCKET)
    default = TurboInput.model_fields["test_command"].default
    check_test_command(default, tmp_path)
    report = await run_tests(default, tmp_path, mode=mode)
    assert "ModuleNotFoundError" not in report.output_tail
    assert report.ok, report.output_tail
    assert report.passed >= 15 and report.failed == report.errors == 0


# --------------------------------------------------------------------------------------------------
# a killed speed-run leaves no test process behind

_RUNNER = """
import asyncio, sys
from pathlib import Path
from speedrun.sandbox import run_tests
print("starting", flush=True)
asyncio.run(run_tests(sys.argv[1], Path(sys.argv[2]), timeout_s=600, mode=sys.argv[3]))
"""


@pytest.mark.parametrize("mode", MODES)
def test_sigkill_of_speedrun_kills_the_test_run(tmp_path: Path, mode: str) -> None:
    """kill -9 of the process running the tests (CLI, MCP server): every test process dies with it."""
    import subprocess

    mark = marker()
    write(
        tmp_path,
        {
            "test_sleeps.py": f"""
            import subprocess, time

            def test_sleeps():
                subprocess.Popen(["setsid", "sleep", "{mark}"])
                subprocess.Popen(["sleep", "{mark}"])
                time.sleep(1000)
        """,
        },
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", _RUNNER, PYTEST, str(tmp_path), mode], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_marker_seen(mark, within=30)
        deadline = time.monotonic() + 10
        while len(processes_with(mark)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(processes_with(mark)) == 2
        runner.kill()
        runner.wait(10)
        assert not wait_marker_gone(mark, within=5), "a test process outlived the killed speed-run"
        left = wait_marker_gone(str(tmp_path), within=5)
        assert not left, f"the test run outlived the killed speed-run: {[describe(p) for p in left]}"
    finally:
        runner.kill()
        runner.wait(10)
        runner.stdout.close()  # the runner's output pipe is ours to close
        for pid in processes_with(mark):
            os.kill(pid, 9)
