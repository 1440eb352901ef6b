"""What generated test code can reach: keys, secret files, other runs' data, the network; with bwrap and without."""

from __future__ import annotations

import logging
import shlex
import socket
import subprocess
import sys
import sysconfig
import textwrap
import threading
from pathlib import Path

import pytest

from speedrun import sandbox
from speedrun.errors import ConfigError
from speedrun.sandbox import _bwrap_works, isolation_summary, run_tests

BWRAP_OK, BWRAP_WHY = _bwrap_works()
needs_bwrap = pytest.mark.skipif(not BWRAP_OK, reason=f"bwrap unavailable: {BWRAP_WHY}")
MODES = ["none", pytest.param("bwrap", marks=needs_bwrap)]
PYTEST = f"{shlex.quote(sys.executable)} -m pytest -q -p no:langsmith_plugin -p no:anyio"
KEY = "csk-fake0123456789abcdefSECRET"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A user with a key in the environment, in ~/.claude/settings.json, in ~/.ssh and in SPEEDRUN_HOME."""
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").write_text(f'{{"env": {{"CEREBRAS_API_KEY": "{KEY}"}}}}')
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text(KEY)
    (home / ".netrc").write_text(f"machine api.cerebras.ai password {KEY}\n")
    speedrun_home = tmp_path / "speedrun-home"
    (speedrun_home / "runs").mkdir(parents=True)
    (speedrun_home / "runs" / "other-run.json").write_text(f'{{"contract": "{KEY}"}}')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CEREBRAS_API_KEY", KEY)
    monkeypatch.setenv("DATABASE_URL", f"postgres://app:{KEY}@db/x")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    return {"home": home, "speedrun_home": speedrun_home, "workspace": workspace}


def _probe_command(paths: list[Path]) -> str:
    """Shell that tries every way in and appends what it got to dump.txt (errors included)."""
    reads = " ".join(shlex.quote(str(p)) for p in paths)
    return (
        "env > dump.txt; cat /proc/$PPID/environ >> dump.txt 2>&1; "
        "cat ~/.claude/settings.json ~/.ssh/id_ed25519 ~/.netrc >> dump.txt 2>&1; "
        f'for f in {reads}; do cat "$f" >> dump.txt 2>&1; done; echo HOME=$HOME >> dump.txt; true'
    )


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_no_key_in_env_parent_environ_or_home(secrets: dict[str, Path], mode: str) -> None:
    ws = secrets["workspace"]
    assert KEY in (secrets["home"] / ".claude" / "settings.json").read_text()  # the key is really there
    report = await run_tests(_probe_command([]), ws, mode=mode)
    assert report.ok, report.output_tail
    dump = (ws / "dump.txt").read_text(errors="replace")
    assert "HOME=" in dump and "CEREBRAS_API_KEY" not in dump
    assert KEY not in dump
    assert str(secrets["home"]) not in dump  # HOME is a fresh, empty one


@pytest.mark.anyio
@needs_bwrap
async def test_bwrap_hides_secret_files_other_runs_and_other_processes(secrets: dict[str, Path]) -> None:
    ws, home = secrets["workspace"], secrets["home"]
    paths = [
        home / ".claude" / "settings.json",
        home / ".ssh" / "id_ed25519",
        home / ".netrc",
        secrets["speedrun_home"] / "runs" / "other-run.json",
    ]
    command = _probe_command(paths) + "; cat /proc/*/environ >> dump.txt 2>&1; ls /proc | grep -c '^[0-9]' > pids.txt"
    report = await run_tests(command, ws, mode="bwrap", mask=(secrets["speedrun_home"],))
    assert report.ok, report.output_tail
    dump = (ws / "dump.txt").read_text(errors="replace")
    assert KEY not in dump
    assert "No such file" in dump  # the reads were attempted and found nothing
    assert int((ws / "pids.txt").read_text()) < 10  # own PID namespace: only the sandbox's processes


@pytest.mark.anyio
@needs_bwrap
async def test_bwrap_file_system_is_read_only_outside_the_workspace(tmp_path: Path) -> None:
    ws, outside = tmp_path / "ws", tmp_path / "outside"
    ws.mkdir()
    outside.mkdir()
    command = (
        f"echo x > {shlex.quote(str(outside / 'f'))} 2>/dev/null; echo y > inside.txt; "
        "echo z > /tmp/scratch && cat /tmp/scratch > tmp-ok.txt; echo h > ~/h && echo ok > home-ok.txt"
    )
    report = await run_tests(command, ws, mode="bwrap")
    assert report.ok, report.output_tail
    assert not (outside / "f").exists()
    assert (ws / "inside.txt").read_text() == "y\n"
    assert (ws / "tmp-ok.txt").read_text() == "z\n"  # a writable temp dir for tools
    assert (ws / "home-ok.txt").read_text() == "ok\n"  # and a writable (empty) home


def _workspace_project(ws: Path) -> None:
    (ws / "tests").mkdir(parents=True)
    (ws / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (ws / "tests" / "test_calc.py").write_text(
        textwrap.dedent("""
        import os, sys
        from calc import add

        def test_add():
            assert add(2, 3) == 5

        def test_interpreter():
            with open("interpreter.txt", "w") as f:
                f.write(sys.prefix)
    """)
    )


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_project_with_its_own_venv_runs(tmp_path: Path, mode: str) -> None:
    """A .venv inside the workspace (its interpreter lives under the masked HOME here) works and stays read-only."""
    ws = tmp_path / "ws"
    _workspace_project(ws)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(ws / ".venv")], check=True)
    # Borrow pytest from speed-run's environment rather than installing it (offline).
    site = next((ws / ".venv" / "lib").glob("python3*/site-packages"))
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (ws / "tests" / "test_venv_ro.py").write_text(
        textwrap.dedent(f"""
        def test_venv_is_read_only():
            try:
                open(".venv/planted.pth", "w").close()
            except OSError:
                return
            assert {mode!r} == "none", "the sandbox let a test write into the virtualenv"
    """)
    )
    report = await run_tests(".venv/bin/python -m pytest -q -p no:langsmith_plugin -p no:anyio", ws, mode=mode)
    assert report.ok, report.output_tail
    assert report.passed == 3
    assert (ws / "interpreter.txt").read_text() == str(ws / ".venv")
    if mode == "bwrap":
        assert not (ws / ".venv" / "planted.pth").exists()


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_project_using_speedruns_python_runs(tmp_path: Path, mode: str) -> None:
    ws = tmp_path / "ws"
    _workspace_project(ws)
    report = await run_tests(PYTEST, ws, mode=mode)
    assert report.ok, report.output_tail
    assert report.passed == 2
    assert (ws / "interpreter.txt").read_text() == sys.prefix


@pytest.fixture
def loopback_server():
    """A TCP listener on the host's loopback that answers 'pong'."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(10)

    def serve() -> None:
        try:
            while True:
                conn, _ = srv.accept()
                conn.sendall(b"pong")
                conn.close()
        except OSError:
            return

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


@pytest.mark.anyio
@needs_bwrap
@pytest.mark.parametrize("network", [False, True])
async def test_network_is_off_unless_asked_for(tmp_path: Path, loopback_server: int, network: bool) -> None:
    script = (
        f"import socket\ntry:\n    s = socket.create_connection(('127.0.0.1', {loopback_server}), timeout=3)\n"
        "    print('GOT', s.recv(4).decode())\nexcept OSError as e:\n    print('BLOCKED', e)\n"
    )
    report = await run_tests(
        f"{shlex.quote(sys.executable)} -c {shlex.quote(script)}", tmp_path, mode="bwrap", network=network
    )
    assert report.ok, report.output_tail
    assert ("GOT pong" in report.output_tail) is network
    assert ("BLOCKED" in report.output_tail) is not network


# --------------------------------------------------------------------------------------------------
# modes, the probe, the summary


def test_isolation_summary_names_the_isolation_in_force() -> None:
    assert isolation_summary("none").startswith("no OS sandbox (SPEEDRUN_SANDBOX=none)")
    assert "can read your files" in isolation_summary("none")
    if BWRAP_OK:
        assert isolation_summary("auto").startswith("bwrap sandbox")
        assert "network off" in isolation_summary("bwrap")
        assert "network on" in isolation_summary("bwrap", network=True)
    with pytest.raises(ConfigError, match="SPEEDRUN_SANDBOX='docker' is not one of auto, bwrap, none"):
        isolation_summary("docker")


@pytest.mark.anyio
async def test_auto_falls_back_with_one_warning_and_bwrap_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No working bwrap (here: not on PATH): auto warns once and runs; an explicit bwrap is a config error."""
    monkeypatch.setattr(sandbox, "_probe_result", None)
    monkeypatch.setattr(sandbox, "_warned", False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    caplog.set_level(logging.WARNING, logger="speedrun.sandbox")
    for _ in range(2):
        report = await run_tests("echo fine", tmp_path, mode="auto")
        assert report.ok and "fine" in report.output_tail
    warnings = [r.getMessage() for r in caplog.records if r.name == "speedrun.sandbox"]
    assert len(warnings) == 1 and "without an OS sandbox" in warnings[0] and "bwrap is not installed" in warnings[0]
    assert "bwrap is not installed" in isolation_summary("auto")
    with pytest.raises(ConfigError, match="SPEEDRUN_SANDBOX=bwrap, but bwrap is not installed"):
        await run_tests("echo no", tmp_path, mode="bwrap")
    with pytest.raises(ConfigError, match="not one of auto, bwrap, none"):
        await run_tests("echo no", tmp_path, mode="firejail")


def test_harden_process_makes_the_process_non_dumpable() -> None:
    code = (
        "import ctypes; from speedrun.procs import harden_process; libc = ctypes.CDLL(None); "
        "before = libc.prctl(3, 0, 0, 0, 0); ok = harden_process(); print(before, ok, libc.prctl(3, 0, 0, 0, 0))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "True", "0"]


@pytest.mark.anyio
@needs_bwrap
async def test_bwrap_masks_secrets_even_when_the_workspace_is_home(
    secrets: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user running in their home directory: the workspace bind must not bring ~/.claude back."""
    home = secrets["home"]
    inner_state = home / ".local" / "state" / "speed-run"
    inner_state.mkdir(parents=True)
    (inner_state / "runs.json").write_text(KEY)
    paths = [
        home / ".claude" / "settings.json",
        home / ".ssh" / "id_ed25519",
        home / ".netrc",
        inner_state / "runs.json",
    ]
    report = await run_tests(_probe_command(paths) + "; echo mine > mine.txt", home, mode="bwrap", mask=(inner_state,))
    assert report.ok, report.output_tail
    assert (home / "mine.txt").read_text() == "mine\n"
    dump = (home / "dump.txt").read_text(errors="replace")
    assert KEY not in dump
    assert (home / ".claude" / "settings.json").read_text().count(KEY) == 1  # masked, not emptied


@pytest.mark.anyio
async def test_set_up_does_not_block_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The bwrap probe, temp dirs and junit parsing run in threads: no loop callback takes 100 ms."""
    (tmp_path / "test_many.py").write_text(
        "import pytest\n\n@pytest.mark.parametrize('i', range(3000))\ndef test_i(i):\n    assert i % 2 == 0, 'odd'\n"
    )
    monkeypatch.setattr(sandbox, "_probe_result", None)  # the first run of the process probes bwrap
    loop = __import__("asyncio").get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.1
    caplog.set_level(logging.WARNING, logger="asyncio")
    try:
        report = await run_tests(PYTEST, tmp_path, max_failures=2000)
    finally:
        loop.set_debug(False)
    assert report.failed == 1500 and len(report.failures) == 1500
    slow = [r.getMessage() for r in caplog.records if r.name == "asyncio" and "took" in r.getMessage()]
    assert not slow, slow
