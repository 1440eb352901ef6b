"""Run workspace tests as untrusted code: OS sandbox where available, scrubbed environment, hard timeout, capped output.

Entry points:

* :func:`run_tests` runs a shell command in a workspace and returns a
  :class:`~speedrun.state.records.TestReport`. For pytest commands it adds ``--junitxml`` and reads
  per-test results from the XML (:mod:`speedrun.loop.junit`); for anything else it reports the exit code
  and output tail. A command the shell cannot run (exit 127/126) is a test-infrastructure problem,
  not a failing test.
* :func:`check_test_command` refuses, before any work starts, a blank command or one whose program
  is not on the PATH the tests will see.
* :func:`scrubbed_env` builds the environment a test process sees: an allow-list (:data:`ALLOWED_ENV_NAMES`
  plus ``LC_*``) without secret-looking names or ``scheme://user:pass@`` values.
* :func:`isolation_summary` says which isolation is in force (``speedrun.procs.harden_process`` makes the
  speed-run process non-dumpable: its ``/proc/<pid>/environ`` unreadable to same-user processes).
* :func:`sweep_test_groups` kills the recorded test process groups of speed-run processes that died
  (the run manager calls it when it opens, before any run starts or resumes).

Isolation. ``mode="bwrap"`` (or ``"auto"`` when one probe shows bubblewrap works) runs the command in
a bubblewrap sandbox: own PID namespace (``/proc`` shows only the sandbox, nothing outlives it),
``--die-with-parent``, the file system read-only except the workspace and a fresh ``/tmp``, the real
HOME and SPEEDRUN_HOME replaced by empty tmpfs (the interpreter and virtualenvs under them are bound
back read-only), HOME an empty temporary home, network off unless asked for. ``mode="none"`` (or
``auto`` without a working bwrap, with one warning per process) is a hygiene boundary only: scrubbed
environment and a fresh temporary HOME, but the rest of the file system, including the real
``~/.claude``, stays readable to the tests.

Lifetime. Either way the command runs under a small watchdog process (own session and process
group, parent-death signal, child subreaper): when speed-run dies, even by SIGKILL, the watchdog
kills every descendant; after the command exits, descendants that left the group (``setsid``,
double fork) are killed too, because as subreaper they are reparented to the watchdog. Behind it, the
group record: while a command runs, its process group (the watchdog's pgid and start time) and the
owning speed-run process are recorded under ``SPEEDRUN_HOME/test-groups``; if speed-run dies after a
test killed the watchdog, the next start of the server or CLI (and a resume) kills what is left in that
group. Without bwrap this stays best effort: a test that kills the watchdog and then leaves the group
(``setsid``, double fork) escapes both, until the machine or the user ends it.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from speedrun.config import mask_url_credentials
from speedrun.errors import ConfigError, InputError
from speedrun.loop.junit import parse_junit
from speedrun.procs import group_alive, process_tag, tag_alive
from speedrun.state.records import TestFailure, TestReport

__all__ = [
    "ALLOWED_ENV_NAMES",
    "GroupRecord",
    "check_extra_env",
    "check_test_command",
    "group_records_dir",
    "isolation_summary",
    "run_tests",
    "scrubbed_env",
    "sweep_test_groups",
]

log = logging.getLogger(__name__)

#: Environment variables a test process may inherit (plus every ``LC_*``). Everything else is dropped.
ALLOWED_ENV_NAMES: frozenset[str] = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "TERM",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TMP",
        "TEMP",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "PYTHONPATH",
        "PYTHONHASHSEED",
        "PYTHONIOENCODING",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "JAVA_HOME",
        "GOPATH",
        "GOROOT",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "NODE_PATH",
        "NVM_DIR",
        "UV_CACHE_DIR",
        "PIP_CERT",
        "PIP_FIND_LINKS",
    }
)
_ALLOWED_PREFIXES = ("LC_",)

#: Names that are dropped even when allow-listed (e.g. ``LC_AUTH_TOKEN``).
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|SESSION|COOKIE", re.IGNORECASE)

_FORCED_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}

_TERM_GRACE_S = 2.0  # SIGTERM -> SIGKILL delay
_DRAIN_GRACE_S = 2.0  # how long to keep reading after the command exits / is killed
_READ_CHUNK = 64 * 1024
_GENERIC_TAIL_LINES = 40
_GENERIC_MESSAGE_CAP = 4000

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
        if _SECRET_NAME.search(name) or mask_url_credentials(value) != value:  # config owns the URL rule
            continue
        env[name] = value
    env.update(_FORCED_ENV)
    return env


#: A name a caller may add to the test environment: shell-safe, upper case, as environment variables are written.
_EXTRA_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")


def check_extra_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The variables a run adds to the test environment (e.g. SPEEDRUN_RUNNER), checked; InputError on a bad one.

    They are added after scrubbing, so the secret rules of :func:`scrubbed_env` are applied here again: a name
    that looks like a secret, or a value holding ``scheme://user:pass@`` credentials, is refused, not passed on.
    """
    out: dict[str, str] = {}
    for name, value in extra.items():
        shown = _echo(str(name))
        if not isinstance(name, str) or not _EXTRA_NAME.match(name):
            raise InputError(
                f"test environment variable {shown} is not a valid name; use upper-case letters, digits and "
                "underscores, e.g. SPEEDRUN_PORT_BASE"
            )
        if _SECRET_NAME.search(name):
            raise InputError(
                f"test environment variable {shown} looks like a secret; tests never get secrets, so rename it "
                "or leave it out"
            )
        if not isinstance(value, str) or mask_url_credentials(value) != value:
            raise InputError(f"test environment variable {shown} must be a plain string without credentials")
        out[name] = value
    return out


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
        if proc.returncode is not None and not await asyncio.to_thread(group_alive, pgid):
            break
        await asyncio.sleep(_POLL_S)
    _signal_group(pgid, signal.SIGKILL)
    await _wait_exit(proc, 5)


class _OutputPipe(asyncio.Protocol):
    """The read end of the command's stdout+stderr pipe, fed straight into a :class:`_Tail`.

    speed-run owns this pipe (``loop.connect_read_pipe``) instead of asking asyncio for one, so it can close
    it with public calls even while an escaped grandchild still holds the write end.
    """

    def __init__(self, tail: _Tail) -> None:
        self._tail = tail
        self._transport: asyncio.BaseTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._tail.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        """Stop reading and release the pipe (idempotent)."""
        if self._transport is not None:
            self._transport.close()


async def _open_output(tail: _Tail) -> tuple[_OutputPipe, int]:
    """A pipe whose read end feeds ``tail``; returns it and the write end for the child (the caller closes it)."""
    read_fd, write_fd = os.pipe()
    try:
        reader = os.fdopen(read_fd, "rb", buffering=0)
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    try:
        _, pipe = await asyncio.get_running_loop().connect_read_pipe(lambda: _OutputPipe(tail), reader)
    except BaseException:
        reader.close()
        os.close(write_fd)
        raise
    return pipe, write_fd


async def _drain(pipe: _OutputPipe, seconds: float) -> None:
    """Give the pipe up to ``seconds`` to reach EOF, then close it (a process that escaped the group may hold
    the write end open forever)."""
    if not pipe.closed.done():
        await asyncio.wait({pipe.closed}, timeout=seconds)
    pipe.close()


def _kill_now(proc: asyncio.subprocess.Process, pipe: _OutputPipe) -> None:
    """Synchronous SIGKILL of the group and release of the pipe (cancellation path).

    The process transport has no pipes of its own, so asyncio closes it once the leader is reaped.
    """
    _signal_group(proc.pid, signal.SIGKILL)
    pipe.close()


async def _supervise(proc: asyncio.subprocess.Process, pipe: _OutputPipe) -> None:
    """Wait until the command exits, then kill leftovers in its group and drain the pipe."""
    while proc.returncode is None:
        await asyncio.sleep(_POLL_S)
    # Background children of a finished command must not outlive it (nor hold the pipe open).
    _signal_group(proc.pid, signal.SIGKILL)
    await _drain(pipe, _DRAIN_GRACE_S)


# --------------------------------------------------------------------------------------------------
# the test command, checked before any work starts

#: Words that the shell runs itself (no program on PATH to look for).
_SHELL_WORDS = frozenset(
    {
        ":",
        ".",
        "source",
        "cd",
        "true",
        "false",
        "test",
        "[",
        "echo",
        "printf",
        "exit",
        "export",
        "set",
        "unset",
        "eval",
        "exec",
        "command",
        "builtin",
        "if",
        "for",
        "while",
        "until",
        "case",
        "{",
        "(",
        "!",
        "time",
        "ulimit",
        "umask",
        "trap",
        "wait",
        "read",
        "shift",
        "alias",
        "type",
        "hash",
    }
)
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_ECHO_CAP = 200
_FIX_HINT = "e.g. 'python -m pytest -q', or a script in the workspace such as 'bash tests/run.sh'"


def _echo(text: str) -> str:
    """``text`` quoted for an error message, at most ~200 characters."""
    return repr(text if len(text) <= _ECHO_CAP else text[:_ECHO_CAP] + "…")


def _first_program(command: str) -> str | None:
    """The program the first simple command runs, or None when the shell decides (builtins, expansions)."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        raise InputError(f"test_command {_echo(command)} has an unbalanced quote; fix the quoting.") from None
    for tok in tokens:
        if _ASSIGNMENT.match(tok):
            continue  # FOO=1 pytest
        if tok in _SHELL_OPERATORS or tok in _SHELL_WORDS or any(c in tok for c in "$`*?~"):
            return None
        return tok
    return None


def check_test_command(command: str, workspace: Path) -> None:
    """Refuse a test command that cannot run, before any model call: blank, or its program missing.

    The first program must be on the PATH the tests will see (:func:`scrubbed_env`), an existing
    absolute path, or a relative path (``./run.sh``, ``.venv/bin/pytest``): those may be generated.
    Raises :class:`~speedrun.errors.InputError` naming the command and the fix.
    """
    if not command or not command.strip():
        raise InputError(f"test_command is empty: give the shell command that runs the tests, {_FIX_HINT}.")
    program = _first_program(command)
    if program is None:
        return
    if "/" in program:
        path = Path(program)
        if path.is_absolute() and not (path.is_file() and os.access(path, os.X_OK)):
            raise InputError(
                f"test_command {_echo(command)}: {_echo(program)} is not an executable file; "
                f"give a path that exists, or {_FIX_HINT}."
            )
        return  # relative to the workspace: the generator may write it
    search_path = scrubbed_env().get("PATH", os.defpath)
    if shutil.which(program, path=search_path) is None:
        raise InputError(
            f"test_command {_echo(command)}: program {_echo(program)} is not found on the PATH the "
            f"tests run with; install it, give its full path, or use {_FIX_HINT}."
        )


_NOT_RUNNABLE = {
    127: re.compile(r"not found|No such file or directory", re.IGNORECASE),
    126: re.compile(r"Permission denied|not executable|cannot execute|Is a directory", re.IGNORECASE),
}


def _infrastructure_problem(command: str, exit_code: int | None, output: str) -> str | None:
    """A sentence when the shell could not run the command (exit 127/126), else None."""
    pattern = _NOT_RUNNABLE.get(exit_code) if exit_code is not None else None
    if pattern is None:
        return None
    lines = [ln.strip() for ln in output.splitlines() if pattern.search(ln)]
    if not lines:
        return None
    what = "not found" if exit_code == 127 else "not executable"
    return (
        f"test infrastructure: the test command could not run (exit {exit_code}, {what}): "
        f"{lines[-1][:_ECHO_CAP]}. This is not a failing test: fix test_command {_echo(command)}, "
        f"{_FIX_HINT}."
    )


# --------------------------------------------------------------------------------------------------
# isolation: bubblewrap, probed once per process, and the fallback

_MODES = ("auto", "bwrap", "none")
_PROBE_TIMEOUT_S = 10.0
_SANDBOX_HOME = "/tmp/home"
_SANDBOX_JUNIT = "/tmp/.speedrun-junit"
_probe_lock = threading.Lock()
_probe_result: tuple[bool, str] | None = None
_warned = False


def _bwrap_binary() -> str | None:
    return shutil.which("bwrap")


def _bwrap_works() -> tuple[bool, str]:
    """(works, reason), from one quick real sandboxed command; cached for the process."""
    global _probe_result
    with _probe_lock:
        if _probe_result is not None:
            return _probe_result
        binary = _bwrap_binary()
        if binary is None:
            _probe_result = (False, "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
            return _probe_result
        import subprocess

        argv = [
            binary,
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-net",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
            "true",
        ]
        try:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=_PROBE_TIMEOUT_S, env=scrubbed_env()
            )
        except (OSError, subprocess.SubprocessError) as exc:
            _probe_result = (False, f"bwrap could not start: {exc}"[:300])
            return _probe_result
        if done.returncode != 0:
            why = done.stderr.decode(errors="replace").strip().splitlines()
            reason = why[-1] if why else f"exit code {done.returncode}"
            _probe_result = (
                False,
                f"bwrap cannot create a sandbox here ({reason[:200]}); user namespaces may be disabled",
            )
        else:
            _probe_result = (True, binary)
        return _probe_result


def _check_mode(mode: str) -> str:
    if mode not in _MODES:
        raise ConfigError(
            f"SPEEDRUN_SANDBOX={_echo(str(mode))} is not one of auto, bwrap, none; "
            "set it to auto (bwrap when it works), bwrap or none."
        )
    return mode


def _resolve_mode(mode: str) -> str:
    """``"bwrap"`` or ``"none"`` for ``mode``; ``bwrap`` that cannot run is a ConfigError, ``auto`` falls back."""
    global _warned
    if _check_mode(mode) == "none":
        return "none"
    works, reason = _bwrap_works()
    if works:
        return "bwrap"
    if mode == "bwrap":
        raise ConfigError(
            f"SPEEDRUN_SANDBOX=bwrap, but {reason}. Install bubblewrap, allow user namespaces, "
            "or set SPEEDRUN_SANDBOX=auto to fall back."
        )
    if not _warned:
        _warned = True
        log.warning(
            "tests run without an OS sandbox: %s. The fallback hides keys from the environment and "
            "HOME, but test code can read the rest of your files.",
            reason,
        )
    return "none"


def isolation_summary(mode: str = "auto", network: bool = False) -> str:
    """One line saying which isolation the tests run under (for check_status and ``speedrun check``)."""
    _check_mode(mode)
    works, reason = _bwrap_works() if mode != "none" else (False, "SPEEDRUN_SANDBOX=none")
    if works:
        return (
            "bwrap sandbox: own PID namespace, read-only file system except the workspace, empty HOME, "
            "secret places masked, network " + ("on (SPEEDRUN_SANDBOX_NETWORK=1)" if network else "off")
        )
    if mode == "bwrap":
        return f"bwrap requested but unavailable: {reason}; test runs will fail"
    return (
        f"no OS sandbox ({reason}): tests get a scrubbed environment and an empty temporary HOME, and a "
        "watchdog kills their processes, but they can read your files and use the network"
    )


def _secret_places(home: Path | None) -> list[Path]:
    """Places under HOME that hold credentials (masked even when HOME itself is bound back)."""
    if home is None:
        return []
    return [
        home / n
        for n in (
            ".claude",
            ".ssh",
            ".aws",
            ".config",
            ".netrc",
            ".docker",
            ".gnupg",
            ".git-credentials",
            ".pypirc",
            ".npmrc",
            ".kube",
        )
    ]


def _under(path: Path, parents: list[Path]) -> bool:
    return any(path == p or p in path.parents for p in parents)


def _toolchain_paths(cwd: Path, env: Mapping[str, str]) -> list[Path]:
    """Interpreter, virtualenvs and PATH entries the tests need, resolved (to bind back read-only)."""
    found: list[Path] = []
    candidates = [
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
    ]
    candidates += [p for p in env.get("PATH", "").split(os.pathsep) if p]
    venvs = [cwd / ".venv", cwd / "venv", *([Path(env["VIRTUAL_ENV"])] if env.get("VIRTUAL_ENV") else [])]
    for venv in venvs:
        cfg = venv / "pyvenv.cfg"
        if not cfg.is_file():
            continue
        candidates.append(str(venv))
        for line in cfg.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                candidates.append(os.path.dirname(os.path.realpath(value.strip())))  # the install, not just bin/
        python = venv / "bin" / "python"
        if python.exists():
            candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(python))))
    for raw in candidates:
        path = Path(os.path.realpath(raw))
        if path.exists() and path != Path("/") and path not in found:
            found.append(path)
    return found


def _bwrap_argv(
    binary: str,
    shell_command: str,
    cwd: Path,
    env: Mapping[str, str],
    *,
    network: bool,
    mask: list[Path],
    home: Path | None,
    binds: Sequence[tuple[Path, str]] = (),
) -> list[str]:
    """The bubblewrap command line: read-only root, fresh /tmp, masked HOME and secrets, workspace rw."""
    argv = [binary, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not network:
        argv.append("--unshare-net")
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    hidden: list[Path] = [Path("/tmp")]
    later: list[str] = []  # masks inside the workspace must come after its bind, or the bind undoes them

    def mask_argv(place: Path) -> list[str]:
        return ["--tmpfs", str(place)] if place.is_dir() else ["--ro-bind", "/dev/null", str(place)]

    # The real HOME goes whole (dotfiles hold tokens beyond the usual places), then SPEEDRUN_HOME.
    for place in [*([home] if home else []), *mask]:
        place = Path(os.path.realpath(place))
        if place in (Path("/"), cwd) or not place.is_dir():
            continue
        if _under(place, [cwd]):
            later += mask_argv(place)
            continue
        if _under(place, hidden):
            continue
        argv += mask_argv(place)
        hidden.append(place)
    # The toolchain that lived under a hidden place comes back read-only (pyenv, uv pythons, venvs).
    for path in _toolchain_paths(cwd, env):
        if _under(path, hidden) and not _under(path, [cwd]):
            argv += ["--ro-bind", str(path), str(path)]
    # Secret places stay hidden even inside what came back (or inside a workspace that is HOME).
    for secret in _secret_places(home):
        if secret.exists() and secret != cwd and not _under(cwd, [secret]):
            (later if _under(secret, [cwd]) else argv).extend(mask_argv(secret))
    argv += ["--bind", str(cwd), str(cwd)]
    for venv in (cwd / ".venv", cwd / "venv"):
        if (venv / "pyvenv.cfg").is_file():
            argv += ["--ro-bind", str(venv), str(venv)]
    argv += later
    for source, target in binds:
        argv += ["--bind", str(source), target]
    argv += ["--dir", _SANDBOX_HOME, "--chdir", str(cwd), "/bin/sh", "-c", shell_command]
    return argv


# --------------------------------------------------------------------------------------------------
# the watchdog: the direct child of speed-run, so nothing outlives speed-run or the command
#
# It runs as `python -I -S -c` in the untrusted workspace: isolated mode keeps the workspace's own modules (a
# `ctypes.py`, a fake `speedrun/`) from being imported in place of the real ones, and without site-packages it cannot
# import speedrun either. So it reads /proc itself: the one exception to "only procs.py parses /proc".

_WATCHDOG = r"""
import ctypes, os, signal, sys, time
parent = int(sys.argv[1])
argv = sys.argv[2:]
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: setsid/double-forked orphans come back to us
libc.prctl(1, int(signal.SIGHUP), 0, 0, 0)  # PR_SET_PDEATHSIG: speed-run died, even by SIGKILL

def descendants():
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        kids.setdefault(int(fields[1]), []).append((int(name), fields[0]))
    out, todo = [], [os.getpid()]
    while todo:
        for pid, state in kids.get(todo.pop(), ()):
            out.append((pid, state))
            todo.append(pid)
    return out

def reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return

def sweep(*_):
    for _ in range(200):
        live = [pid for pid, state in descendants() if state not in "ZX"]
        if not live:
            break
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)
        reap()
    reap()

def orphaned(*_):
    sweep()
    os._exit(137)

def terminate(*_):
    for pid, state in descendants():  # members that left the group did not get the group's SIGTERM
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    signal.setitimer(signal.ITIMER_REAL, 1.5)

signal.signal(signal.SIGHUP, orphaned)
signal.signal(signal.SIGTERM, terminate)
signal.signal(signal.SIGALRM, sweep)
if os.getppid() != parent:
    os._exit(137)
# speed-run records this process group first, then says go on stdin: no test code runs unrecorded, and none at all
# when speed-run died before that (EOF).
if os.read(0, 1) != b"1":
    os._exit(137)
child = os.fork()
if child == 0:
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
status = 0
while True:
    try:
        pid, st = os.waitpid(-1, 0)
    except ChildProcessError:
        break
    if pid == child:
        status = st
        break
signal.setitimer(signal.ITIMER_REAL, 0)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
sweep()
if os.WIFSIGNALED(status):
    sig = os.WTERMSIG(status)
    signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)
"""


#: The watchdog needs Linux (prctl, /proc); elsewhere the command runs directly in its own session.
_WATCHED = sys.platform.startswith("linux")


def _watchdog_argv(argv: list[str]) -> list[str]:
    """``argv`` run under the watchdog (isolated, no site: starts in a few milliseconds)."""
    return [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(os.getpid()), *argv]


# --------------------------------------------------------------------------------------------------
# the group record: the second line of defence when the watchdog itself was killed

_RECORDS_DIR = "test-groups"
_SWEEP_WAIT_S = 1.0  # how long a sweep waits for the groups it killed to be gone


class GroupRecord(BaseModel):
    """A running test command's process group, as recorded under SPEEDRUN_HOME while it runs."""

    pgid: int = Field(description="The process group (and session) id: the watchdog's pid.")
    leader: str = Field(
        description="process_tag of the group leader when it started, so a recycled pgid is never taken for it."
    )
    owner: str = Field(description="process_tag of the speed-run process that runs the command.")


def group_records_dir(home: Path) -> Path:
    """Where running test groups are recorded: ``SPEEDRUN_HOME/test-groups``."""
    return Path(home) / _RECORDS_DIR


def _record_path(record_dir: Path, pgid: int) -> Path:
    return record_dir / f"{os.getpid()}-{pgid}.json"  # one owner, one live group per name


def _record_group(record_dir: Path, pgid: int) -> None:
    """Write the record of group ``pgid`` (blocking). The directory is private: 0700, as SPEEDRUN_HOME is."""
    from speedrun.config import ensure_home
    from speedrun.files import write_text_atomic

    leader, owner = process_tag(pgid), process_tag()
    if leader is None or owner is None:  # the command is already over: nothing to record
        return
    if not record_dir.is_dir():
        ensure_home(record_dir.parent)  # SPEEDRUN_HOME: 0700 wherever speed-run first writes into it
    record = GroupRecord(pgid=pgid, leader=leader, owner=owner)
    write_text_atomic(_record_path(record_dir, pgid), record.model_dump_json(), private=True)


async def _start_record(record_dir: Path | None, pgid: int) -> None:
    if record_dir is None:
        return
    try:
        await asyncio.to_thread(_record_group, record_dir, pgid)
    except OSError as exc:  # a second line of defence only: the watchdog still guards the run
        log.warning(
            "could not record the test process group in %s (%s); if speed-run and the watchdog are "
            "both killed, its processes will not be cleaned up on the next start",
            record_dir,
            exc,
        )


async def _drop_record(record_dir: Path | None, pgid: int) -> None:
    if record_dir is not None:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(_record_path(record_dir, pgid).unlink, True)


def _kill_recorded(record: GroupRecord) -> bool:
    """SIGKILL the recorded group if any of it is left; True when it was.

    The group is ours when its leader still runs with the recorded start time, or when the leader is gone
    (killed by the test) but members remain: Linux does not reuse a pid while a group still carries it as its
    id. A leader pid that now belongs to another process means the group is long gone: nothing is killed.
    """
    now = process_tag(record.pgid)
    if now is not None and now != record.leader:
        return False
    if not group_alive(record.pgid):
        return False
    _signal_group(record.pgid, signal.SIGKILL)
    return True


def sweep_test_groups(record_dir: Path) -> int:
    """Kill the test process groups that dead speed-run processes left running; returns how many were killed.

    Reads every record in ``record_dir``. A record whose owner still runs (this process included) is left
    alone: that owner is driving the command. Otherwise the recorded group is SIGKILLed if anything of it is
    left (see :func:`_kill_recorded`) and the record is removed. Waits up to a second for killed groups to go.
    Only the recorded group is reached: processes that also left the group (``setsid``) after the watchdog
    was killed are beyond it. Blocking (reads /proc, sends signals): use asyncio.to_thread in async code.
    """
    try:
        paths = sorted(p for p in Path(record_dir).iterdir() if p.suffix == ".json")
    except OSError:  # no records yet
        return 0
    killed: list[int] = []
    for path in paths:
        try:
            record = GroupRecord.model_validate_json(path.read_text(encoding="utf-8"))
        except OSError:
            continue  # removed meanwhile by its owner
        except ValueError:  # not ours, or damaged: nothing it names can be trusted
            log.warning("removing an unreadable test-group record %s", path)
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            continue
        if tag_alive(record.owner):
            continue
        if _kill_recorded(record):
            killed.append(record.pgid)
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    left, deadline = killed, time.monotonic() + _SWEEP_WAIT_S
    while left and time.monotonic() < deadline:  # SIGKILL is delivered, not awaited: let them go first
        time.sleep(_POLL_S)
        left = [pgid for pgid in left if group_alive(pgid)]
    if killed:
        log.warning("killed %d test process group(s) left running by a speed-run process that died", len(killed))
    return len(killed)


# --------------------------------------------------------------------------------------------------
# entry point


def _prepare(
    command: str,
    cwd: Path,
    mode: str,
    network: bool,
    mask: tuple[Path, ...],
    extra_env: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str], str, Path]:
    """Blocking set-up (runs in a thread): argv, environment, the resolved mode and a temp dir to remove."""
    if not cwd.is_dir():
        raise InputError(f"Test directory {_echo(str(cwd))} does not exist or is not a directory.")
    cwd = cwd.resolve()
    resolved = _resolve_mode(mode)
    env = scrubbed_env()
    # After scrubbing, so the caller's variables (runner number, port range) survive the allow-list.
    env.update(check_extra_env(extra_env or {}))
    # The workspace root is importable, as with `python -m pytest`: tests in tests/ import the module at
    # the root under the default `pytest -q` too.
    env["PYTHONPATH"] = os.pathsep.join([str(cwd), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    tmp = Path(tempfile.mkdtemp(prefix="speedrun-tests-"))
    real_home = Path(os.path.expanduser("~")) if os.path.expanduser("~") != "~" else None
    if resolved == "bwrap":
        env["HOME"] = _SANDBOX_HOME
        env["TMPDIR"] = "/tmp"
        env.pop("TMP", None)
        env.pop("TEMP", None)
        # The junit file is written inside the sandbox into a bind of our temp dir.
        shell_command = _with_junit(command, f"{_SANDBOX_JUNIT}/junit.xml")
        argv = _bwrap_argv(
            _bwrap_works()[1],
            shell_command,
            cwd,
            env,
            network=network,
            mask=list(mask),
            home=real_home,
            binds=[(tmp, _SANDBOX_JUNIT)],
        )
    else:
        home = tmp / "home"
        home.mkdir()
        env["HOME"] = str(home)
        shell_command = _with_junit(command, str(tmp / "junit.xml"))
        argv = ["/bin/sh", "-c", shell_command]
    if _WATCHED:
        argv = _watchdog_argv(argv)
    return argv, env, resolved, tmp


def _with_junit(command: str, junit: str) -> str:
    if _is_pytest_command(command):
        return f"{command} --junitxml={shlex.quote(junit)} -p no:cacheprovider"
    return command


async def run_tests(
    command: str,
    cwd: Path,
    *,
    timeout_s: float = 300,
    output_cap: int = 20_000,
    max_failures: int = 20,
    mode: str = "auto",
    network: bool = False,
    mask: tuple[Path, ...] = (),
    record_dir: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> TestReport:
    """Run ``command`` with ``/bin/sh -c`` in ``cwd`` as untrusted code and report what happened.

    * Isolation follows ``mode`` (``auto``/``bwrap``/``none``, see the module docs); ``network``
      leaves the network on inside bwrap; ``mask`` adds directories to hide (SPEEDRUN_HOME).
    * Environment is :func:`scrubbed_env` with the workspace on PYTHONPATH and an empty HOME; stdin
      is ``/dev/null``; stdout and stderr are merged. ``extra_env`` is added after scrubbing, checked by
      :func:`check_extra_env` (InputError for a secret-looking name), e.g. a runner's number and port range.
    * The command gets its own process group under a watchdog. When ``timeout_s`` expires the group
      gets SIGTERM, then SIGKILL ~2 s later; the report has ``timed_out=True`` and ``exit_code=None``.
      If the awaiting task is cancelled everything is SIGKILLed and ``CancelledError`` re-raised.
      Leftover processes are also killed once the command itself exits.
    * ``record_dir`` (speed-run passes :func:`group_records_dir`): while the command runs, its process group
      is recorded there, so that :func:`sweep_test_groups` can kill it after speed-run and the watchdog both
      died. None: no record.
    * At most ``output_cap`` characters of output are kept (the tail; a header counts the rest).
    * pytest commands get ``--junitxml=<tmp> -p no:cacheprovider`` appended and per-test results;
      other commands count as one failure when the exit code is non-zero. A command the shell could
      not run (127/126) is reported as one error whose message starts with "test infrastructure"
      (and in ``problem``), not as a failing test. ``failures`` holds at most ``max_failures`` entries.

    Raises :class:`~speedrun.errors.InputError` when ``cwd`` is not an existing directory, and
    :class:`~speedrun.errors.ConfigError` for an unknown mode or ``bwrap`` that cannot run.
    """
    cwd = Path(cwd)
    argv, env, _resolved, tmp = await asyncio.to_thread(_prepare, command, cwd, mode, network, tuple(mask), extra_env)
    try:
        return await _run(
            command,
            cwd,
            argv,
            env,
            tmp,
            timeout_s=timeout_s,
            output_cap=output_cap,
            max_failures=max_failures,
            record_dir=record_dir,
        )
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)


async def _say_go(proc: asyncio.subprocess.Process) -> None:
    """Let the watchdog start the command, now that its group is recorded (a watchdog that already exited is fine)."""
    if proc.stdin is None:
        return
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(b"1")
        await proc.stdin.drain()
    proc.stdin.close()


@dataclass
class _Outcome:
    """What a finished (or killed) test command left: its exit, its time and the tail of its output."""

    exit_code: int | None
    timed_out: bool
    duration_ms: int
    output_tail: str


async def _run(
    command: str,
    cwd: Path,
    argv: list[str],
    env: dict[str, str],
    tmp: Path,
    *,
    timeout_s: float,
    output_cap: int,
    max_failures: int,
    record_dir: Path | None,
) -> TestReport:
    outcome = await _execute(argv, cwd, env, timeout_s=timeout_s, output_cap=output_cap, record_dir=record_dir)
    parsed = None
    if _is_pytest_command(command) and not outcome.timed_out:
        parsed = await asyncio.to_thread(parse_junit, tmp / "junit.xml", cwd, max_failures)
    return _report(command, outcome, parsed, timeout_s=timeout_s, max_failures=max_failures)


async def _execute(
    argv: list[str], cwd: Path, env: dict[str, str], *, timeout_s: float, output_cap: int, record_dir: Path | None
) -> _Outcome:
    """Run argv in its own session under the watchdog; on timeout or cancel, its whole process group goes."""
    tail = _Tail(output_cap)
    timed_out = False
    started = time.monotonic()
    pipe, write_fd = await _open_output(tail)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd),
            env=env,
            stdin=asyncio.subprocess.PIPE if _WATCHED else asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except BaseException:
        pipe.close()
        raise
    finally:
        os.close(write_fd)  # the child has its copy; EOF must come when the child's side closes
    try:
        try:
            await _start_record(record_dir, proc.pid)
            await _say_go(proc)
            await asyncio.wait_for(_supervise(proc, pipe), timeout_s)
        except TimeoutError:
            timed_out = True
            await _terminate_group(proc)
            await _drain(pipe, _DRAIN_GRACE_S)
    except BaseException:
        # Cancelled (or anything unexpected): nothing of the test run may survive us.
        _kill_now(proc, pipe)
        raise
    finally:
        await _drop_record(record_dir, proc.pid)
    footer = f"\n[speedrun: timed out after {timeout_s:g} s; the test process group was killed]" if timed_out else ""
    return _Outcome(
        exit_code=None if timed_out else proc.returncode,
        timed_out=timed_out,
        duration_ms=int((time.monotonic() - started) * 1000),
        output_tail=tail.render(footer),
    )


def _report(
    command: str, outcome: _Outcome, parsed: dict[str, Any] | None, *, timeout_s: float, max_failures: int
) -> TestReport:
    """The test report of an outcome: junit counts for pytest, one failure or error otherwise."""
    exit_code, output_tail = outcome.exit_code, outcome.output_tail
    problem = None if outcome.timed_out else _infrastructure_problem(command, exit_code, output_tail)
    report = TestReport(
        command=command,
        exit_code=exit_code,
        output_tail=output_tail,
        duration_ms=outcome.duration_ms,
        timed_out=outcome.timed_out,
        problem=problem,
    )
    last = _last_lines(output_tail, _GENERIC_TAIL_LINES, _GENERIC_MESSAGE_CAP)

    def fail(name: str, message: str, *, error: bool = True) -> TestReport:
        if error:
            report.errors = 1
        else:
            report.failed = 1
        report.failures = [TestFailure(name=name, message=message.strip())][:max_failures]
        return report

    if outcome.timed_out:
        return fail(command, f"Timed out after {timeout_s:g} s.\n{last}")
    if problem is not None and not (parsed and (parsed["passed"] or parsed["failed"] or parsed["errors"])):
        return fail("test infrastructure", problem)
    if not _is_pytest_command(command):
        return fail(command, last or f"exit code {exit_code}", error=False) if exit_code != 0 else report
    if parsed is not None:
        report.passed = parsed["passed"]
        report.failed = parsed["failed"]
        report.errors = parsed["errors"]
        report.skipped = parsed["skipped"]
        report.failures = parsed["failures"]
    if report.failed or report.errors or exit_code == 0:
        return report
    if exit_code == _PYTEST_NO_TESTS:
        return fail(command, f"no tests were collected (pytest exit code 5).\n{last}")
    # No XML (collection crash, usage error, internal error) or XML without failures.
    return fail(command, f"pytest exited with code {exit_code}.\n{last}")
