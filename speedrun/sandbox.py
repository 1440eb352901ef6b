"""Run a workspace's tests as untrusted code: scrubbed environment, own process group, hard timeout, capped output.

Two entry points:

* :func:`scrubbed_env` builds the environment a test process sees. It is an allow-list
  (:data:`ALLOWED_ENV_NAMES` plus ``LC_*``), further filtered so that no variable whose name looks
  secret, and no value carrying ``scheme://user:pass@`` credentials, gets through.
* :func:`run_tests` runs a shell command in a workspace and returns a
  :class:`~speedrun.state.records.TestReport`. For pytest commands it adds ``--junitxml`` and reads
  per-test results from the XML; for anything else it reports the exit code and output tail.

The test process runs in a new session (so a new process group). On timeout, on cancellation, and
after the command exits, the whole group is killed, so grandchildren such as a stray ``sleep 1000``
do not survive. A process that deliberately leaves the group (``setsid``) is out of reach; this is a
hygiene boundary, not a security sandbox.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import re
import shlex
import signal
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

from speedrun.errors import InputError
from speedrun.state.records import TestFailure, TestReport

__all__ = ["ALLOWED_ENV_NAMES", "run_tests", "scrubbed_env"]

#: Environment variables a test process may inherit (plus every ``LC_*``). Everything else is dropped.
ALLOWED_ENV_NAMES: frozenset[str] = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LANGUAGE", "TZ",
        "TMPDIR", "TMP", "TEMP",
        "VIRTUAL_ENV", "CONDA_PREFIX",
        "PYTHONPATH", "PYTHONHASHSEED", "PYTHONIOENCODING",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
        "JAVA_HOME", "GOPATH", "GOROOT", "CARGO_HOME", "RUSTUP_HOME",
        "NODE_PATH", "NVM_DIR",
        "UV_CACHE_DIR", "PIP_CERT", "PIP_FIND_LINKS",
    }
)
_ALLOWED_PREFIXES = ("LC_",)

#: Names that are dropped even when allow-listed (e.g. ``LC_AUTH_TOKEN``).
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|SESSION|COOKIE", re.IGNORECASE)
#: Values that embed credentials in a URL: ``scheme://user:pass@host`` (user may be empty).
_URL_CREDENTIALS = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#@\s:]*:[^/?#@\s]*@")

_FORCED_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}

_TERM_GRACE_S = 2.0  # SIGTERM -> SIGKILL delay
_DRAIN_GRACE_S = 2.0  # how long to keep reading after the command exits / is killed
_READ_CHUNK = 64 * 1024
_MESSAGE_CAP = 1500  # characters per pytest failure message
_GENERIC_TAIL_LINES = 40
_GENERIC_MESSAGE_CAP = 4000
_MAX_JUNIT_BYTES = 50 * 1024 * 1024

# pytest exit codes (pytest.ExitCode) we treat specially.
_PYTEST_NO_TESTS = 5


# --------------------------------------------------------------------------------------------------
# environment


def scrubbed_env(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment for untrusted test code, built from ``source`` (default ``os.environ``).

    Keeps only :data:`ALLOWED_ENV_NAMES` and ``LC_*``; of those drops any whose name matches
    ``KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|SESSION|COOKIE`` (case-insensitive) or whose value
    contains ``scheme://user:pass@`` credentials. Always sets ``PYTHONDONTWRITEBYTECODE=1`` and
    ``PYTHONUNBUFFERED=1``.
    """
    src = os.environ if source is None else source
    env: dict[str, str] = {}
    for name, value in src.items():
        if name not in ALLOWED_ENV_NAMES and not name.startswith(_ALLOWED_PREFIXES):
            continue
        if _SECRET_NAME.search(name) or _URL_CREDENTIALS.search(value):
            continue
        env[name] = value
    env.update(_FORCED_ENV)
    return env


# --------------------------------------------------------------------------------------------------
# pytest detection

_SHELL_OPERATORS = {";", "&&", "||", "|", "&", "|&", ";;", "(", ")"}
_PYTEST_NAMES = {"pytest", "py.test"}


def _is_pytest_command(command: str) -> bool:
    """Heuristic: does the *last* simple command of ``command`` run pytest?

    The last simple command is what follows the final ``;``/``&&``/``||``/``|``/``&``. It counts
    as pytest when one of its words has basename ``pytest`` or ``py.test`` (covers ``pytest``,
    ``.venv/bin/pytest``, ``uv run pytest``, ``poetry run pytest``, ``timeout 60 pytest``) or it
    contains ``-m pytest`` (``python -m pytest``). Only the last command is considered because the
    junit flags are appended to the end of the line. A false positive is harmless: no XML appears
    and the report falls back to the exit code.
    """
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: let the shell complain, treat as a plain command
        return False
    last: list[str] = []
    for tok in tokens:
        if tok in _SHELL_OPERATORS:
            last = []
        else:
            last.append(tok)
    for i, tok in enumerate(last):
        if os.path.basename(tok) in _PYTEST_NAMES:
            return True
        if tok == "-m" and i + 1 < len(last) and last[i + 1] in _PYTEST_NAMES:
            return True
    return False


# --------------------------------------------------------------------------------------------------
# output capture


class _Tail:
    """Incrementally decoded output that keeps only the last ``cap`` characters (amortized)."""

    def __init__(self, cap: int) -> None:
        self.cap = max(int(cap), 0)
        self.buf = ""
        self.dropped = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes, final: bool = False) -> None:
        self.buf += self._decoder.decode(data, final)
        # Trim lazily (when twice the cap) so huge outputs cost O(total), not O(total * cap / chunk).
        if len(self.buf) > 2 * self.cap + _READ_CHUNK:
            excess = len(self.buf) - self.cap
            self.buf = self.buf[excess:]
            self.dropped += excess

    def render(self, footer: str = "") -> str:
        """The kept tail plus ``footer``, at most ``cap`` characters, noting what was dropped."""
        self.feed(b"", final=True)
        text, cap = self.buf, self.cap
        budget = cap - len(footer)
        if self.dropped == 0 and len(text) <= budget:
            return text + footer
        # Reserve room for a header with the largest possible count, then cut to a line start.
        widest = self._header(self.dropped + len(text))
        keep = budget - len(widest)
        if keep <= 0:
            return (text + footer)[-cap:] if cap else ""
        kept = text[-keep:]
        if len(kept) < len(text) and text[-keep - 1] != "\n":
            nl = kept.find("\n")
            if 0 <= nl < len(kept) // 2:
                kept = kept[nl + 1 :]
        return self._header(self.dropped + len(text) - len(kept)) + kept + footer

    @staticmethod
    def _header(n: int) -> str:
        return f"[speedrun: {n} earlier characters of output dropped]\n"


def _last_lines(text: str, n: int, cap: int) -> str:
    lines = text.rstrip("\n").splitlines()[-n:]
    out = "\n".join(lines)
    return out if len(out) <= cap else "..." + out[-(cap - 3) :]


# --------------------------------------------------------------------------------------------------
# process-group handling


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """True while some non-zombie process is in group ``pgid`` (zombies are ignored on Linux)."""
    proc_dir = Path("/proc")
    if not (proc_dir / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


# Note: asyncio's ``Process.wait()`` only returns once the process has exited AND its pipes are
# closed, so a background grandchild holding stdout would block it. Exit is therefore detected by
# polling ``Process.returncode`` (set as soon as the child is reaped).
_POLL_S = 0.05


async def _wait_exit(proc: asyncio.subprocess.Process, seconds: float) -> bool:
    """Wait up to ``seconds`` for the leader to exit; True when it did."""
    deadline = time.monotonic() + seconds
    while proc.returncode is None and time.monotonic() < deadline:
        await asyncio.sleep(_POLL_S)
    return proc.returncode is not None


async def _terminate_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the group, wait up to ``_TERM_GRACE_S`` for it to go, then SIGKILL it."""
    pgid = proc.pid
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + _TERM_GRACE_S
    while time.monotonic() < deadline:
        if proc.returncode is not None and not _group_alive(pgid):
            break
        await asyncio.sleep(_POLL_S)
    _signal_group(pgid, signal.SIGKILL)
    await _wait_exit(proc, 5)


def _close_transport(proc: asyncio.subprocess.Process) -> None:
    """Release the pipes once the leader is reaped (asyncio has no public call for this)."""
    transport = getattr(proc, "_transport", None)
    if transport is not None and proc.returncode is not None:
        transport.close()


_cleanups: set[asyncio.Task] = set()


async def _close_when_reaped(proc: asyncio.subprocess.Process) -> None:
    await _wait_exit(proc, 10)
    _close_transport(proc)


def _kill_now(proc: asyncio.subprocess.Process) -> None:
    """Synchronous SIGKILL of the group (cancellation path); the pipes are released in the background."""
    _signal_group(proc.pid, signal.SIGKILL)
    try:
        task = asyncio.get_running_loop().create_task(_close_when_reaped(proc))
    except RuntimeError:
        return
    _cleanups.add(task)
    task.add_done_callback(_cleanups.discard)


async def _pump(stream: asyncio.StreamReader, tail: _Tail) -> None:
    while chunk := await stream.read(_READ_CHUNK):
        tail.feed(chunk)


async def _finish_reader(reader: asyncio.Future, seconds: float) -> None:
    """Give ``reader`` up to ``seconds`` to reach EOF, then stop it (a process that escaped the
    group may hold the pipe open forever)."""
    if not reader.done():
        await asyncio.wait({reader}, timeout=seconds)
    if not reader.done():
        reader.cancel()
    try:
        await reader
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # we are being cancelled ourselves, not just the reader
    except Exception:  # noqa: BLE001 - a failed read keeps the output gathered so far
        pass


async def _supervise(proc: asyncio.subprocess.Process, tail: _Tail) -> None:
    """Read output until the command exits, then kill leftovers in its group and drain the pipe."""
    assert proc.stdout is not None
    reader = asyncio.ensure_future(_pump(proc.stdout, tail))
    try:
        while proc.returncode is None:
            if reader.done():
                await asyncio.sleep(_POLL_S)
            else:
                await asyncio.wait({reader}, timeout=_POLL_S)
        # Background children of a finished command must not outlive it (nor hold the pipe open).
        _signal_group(proc.pid, signal.SIGKILL)
    finally:
        await _finish_reader(reader, _DRAIN_GRACE_S if proc.returncode is not None else 0)


# --------------------------------------------------------------------------------------------------
# junit parsing

_FRAME_COLON = re.compile(r"^(?P<path>[^\s:<>][^:\n]*?):(?P<line>\d+):", re.MULTILINE)
_FRAME_PYTHON = re.compile(r'File "(?P<path>[^"\n]+)", line (?P<line>\d+)')
_LIBRARY_PARTS = {"site-packages", "dist-packages", ".venv", "venv", ".tox", ".nox"}


def _location(text: str, cwd: Path) -> tuple[str | None, int | None]:
    """The last ``path:line`` frame in ``text`` that is a file inside ``cwd`` (relative to it)."""
    matches = [*_FRAME_COLON.finditer(text), *_FRAME_PYTHON.finditer(text)]
    matches.sort(key=lambda m: m.start())
    root = cwd.resolve()
    for m in reversed(matches):
        raw = Path(m.group("path").strip())
        path = raw if raw.is_absolute() else cwd / raw
        try:
            rel = path.resolve().relative_to(root)
        except (ValueError, OSError):
            continue
        if _LIBRARY_PARTS.intersection(rel.parts) or not path.is_file():
            continue
        return rel.as_posix(), int(m.group("line"))
    return None, None


def _test_id(classname: str, name: str, cwd: Path) -> str:
    """Turn junit ``classname``/``name`` back into a pytest node id (``pkg/test_x.py::Cls::test``).

    pytest writes ``classname="pkg.test_x.Cls"``; the longest dotted prefix naming an existing
    ``.py`` file under ``cwd`` is the module. Failing that, leading lower-case segments are taken
    as the module path. Collection errors have an empty classname and the module in ``name``.
    """
    segs = classname.split(".") if classname else name.split(".")
    if classname:
        segs.append(name)
    segs = [s for s in segs if s]
    if not segs:
        return name or classname
    for i in range(len(segs), 0, -1):
        candidate = "/".join(segs[:i]) + ".py"
        if (cwd / candidate).is_file():
            return "::".join([candidate, *segs[i:]])
    if not classname:
        return name
    i = 0
    while i < len(segs) - 1 and not segs[i][:1].isupper():
        i += 1
    if i == 0:
        return "::".join(segs)
    return "::".join(["/".join(segs[:i]) + ".py", *segs[i:]])


def _failure_message(element: ET.Element) -> str:
    """``message`` attribute plus the ``E`` lines of the traceback (or its first lines), trimmed."""
    attr = (element.get("message") or "").strip()
    text = element.text or ""
    e_lines = [
        (ln[4:] if ln.startswith("E   ") else ln[1:].lstrip()).rstrip()
        for ln in text.splitlines()
        if ln.startswith("E ")
    ]
    e_lines = [ln for ln in e_lines if ln.strip()]
    if not e_lines:
        e_lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()][:20]
    body = [ln for ln in e_lines if ln.strip() not in attr]
    message = "\n".join([attr, *body] if attr else body).strip()
    if len(message) > _MESSAGE_CAP:
        message = message[: _MESSAGE_CAP - 14].rstrip() + "\n...[trimmed]"
    return message


def _parse_junit(path: Path, cwd: Path, max_failures: int) -> dict | None:
    """Counts and failures from a pytest junit XML file, or None when it is missing or unreadable."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_JUNIT_BYTES:
            return None
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.iter("testsuite")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failures: list[TestFailure] = []
    for suite in suites:
        for key in counts:
            try:
                counts[key] += int(suite.get(key, "0"))
            except ValueError:
                pass
        for case in suite.iter("testcase"):
            for bad in (*case.findall("failure"), *case.findall("error")):
                if len(failures) >= max_failures:
                    break
                file, line = _location(bad.text or "", cwd)
                failures.append(
                    TestFailure(
                        name=_test_id(case.get("classname", ""), case.get("name", ""), cwd),
                        message=_failure_message(bad),
                        file=file,
                        line=line,
                    )
                )
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {
        "passed": max(passed, 0),
        "failed": counts["failures"],
        "errors": counts["errors"],
        "skipped": counts["skipped"],
        "failures": failures,
    }


# --------------------------------------------------------------------------------------------------
# entry point


async def run_tests(
    command: str,
    cwd: Path,
    *,
    timeout_s: float = 300,
    output_cap: int = 20_000,
    max_failures: int = 20,
) -> TestReport:
    """Run ``command`` with ``/bin/sh -c`` in ``cwd`` as untrusted code and report what happened.

    * Environment is :func:`scrubbed_env`; stdin is ``/dev/null``; stdout and stderr are merged.
    * The command gets its own session/process group. When ``timeout_s`` expires the group gets
      SIGTERM, then SIGKILL ~2 s later; the report has ``timed_out=True`` and ``exit_code=None``.
      If the awaiting task is cancelled the group is SIGKILLed and ``CancelledError`` re-raised.
      Leftover group members are also killed once the command itself exits.
    * At most ``output_cap`` characters of output are kept (the tail; a header counts the rest).
    * pytest commands (see :func:`_is_pytest_command`) get ``--junitxml=<tmp> -p no:cacheprovider``
      appended and per-test results; other commands count as one failure when the exit code is
      non-zero. ``failures`` holds at most ``max_failures`` entries.

    Raises :class:`~speedrun.errors.InputError` when ``cwd`` is not an existing directory.
    """
    cwd = Path(cwd)
    if not cwd.is_dir():
        raise InputError(f"Test directory {str(cwd)!r} does not exist or is not a directory.")

    is_pytest = _is_pytest_command(command)
    tail = _Tail(output_cap)
    timed_out = False
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="speedrun-junit-") as tmp:
        junit = Path(tmp) / "junit.xml"
        shell_command = command
        if is_pytest:
            shell_command = f"{command} --junitxml={shlex.quote(str(junit))} -p no:cacheprovider"
        proc = await asyncio.create_subprocess_shell(
            shell_command,
            cwd=str(cwd),
            env=scrubbed_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            try:
                await asyncio.wait_for(_supervise(proc, tail), timeout_s)
            except asyncio.TimeoutError:
                timed_out = True
                await _terminate_group(proc)
                assert proc.stdout is not None
                await _finish_reader(asyncio.ensure_future(_pump(proc.stdout, tail)), _DRAIN_GRACE_S)
        except BaseException:
            # Cancelled (or anything unexpected): nothing of the test run may survive us.
            _kill_now(proc)
            raise
        _close_transport(proc)
        duration_ms = int((time.monotonic() - started) * 1000)
        exit_code = None if timed_out else proc.returncode
        parsed = _parse_junit(junit, cwd, max_failures) if is_pytest and not timed_out else None

    footer = ""
    if timed_out:
        footer = f"\n[speedrun: timed out after {timeout_s:g} s; the test process group was killed]"
    output_tail = tail.render(footer)
    report = TestReport(
        command=command,
        exit_code=exit_code,
        output_tail=output_tail,
        duration_ms=duration_ms,
        timed_out=timed_out,
    )
    last = _last_lines(output_tail, _GENERIC_TAIL_LINES, _GENERIC_MESSAGE_CAP)

    if timed_out:
        report.errors = 1
        report.failures = [
            TestFailure(name=command, message=f"Timed out after {timeout_s:g} s.\n{last}".strip())
        ][:max_failures]
        return report

    if not is_pytest:
        if exit_code != 0:
            report.failed = 1
            report.failures = [
                TestFailure(name=command, message=last or f"exit code {exit_code}")
            ][:max_failures]
        return report

    if parsed is not None:
        report.passed = parsed["passed"]
        report.failed = parsed["failed"]
        report.errors = parsed["errors"]
        report.skipped = parsed["skipped"]
        report.failures = parsed["failures"]

    if exit_code == _PYTEST_NO_TESTS and report.failed == 0 and report.errors == 0:
        report.errors = 1
        report.failures = [
            TestFailure(
                name=command,
                message=f"no tests were collected (pytest exit code 5).\n{last}".strip(),
            )
        ][:max_failures]
    elif exit_code != 0 and report.failed == 0 and report.errors == 0:
        # No XML (collection crash, usage error, internal error) or XML without failures.
        report.errors = 1
        report.failures = [
            TestFailure(name=command, message=f"pytest exited with code {exit_code}.\n{last}".strip())
        ][:max_failures]
    return report
