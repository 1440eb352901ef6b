"""Real PostgreSQL and Redis servers on loopback for the tests, from the system's packages (Debian's here)."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["postgres_server", "redis_server"]


def _missing(what: str) -> None:
    """Skip where the package is not installed; fail in CI, which installs it (.ci/run sets the variable)."""
    if os.environ.get("SPEEDRUN_TEST_SERVERS_REQUIRED"):
        pytest.fail(f"{what} is not installed, but .ci/run installs it: see its apt-get line")
    pytest.skip(f"{what} is not installed (Debian: apt-get install {what})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {within} s: {log.read_text(errors='replace')[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL cluster on 127.0.0.1 with a password; yields its postgresql:// URL.

    PostgreSQL refuses to run as root, so as root (CI) the cluster belongs to the packages' `postgres` user."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        _missing("postgresql")
    bindir = Path(found[-1]).parent
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            _missing("postgresql")  # the package creates the user
        as_user = ["runuser", "-u", "postgres", "--"]
    top = Path(tempfile.mkdtemp(prefix="speedrun-pg-"))
    password = secrets.token_urlsafe(12)
    (top / "pw").write_text(password)
    if owner is not None:
        for path in (top, top / "pw"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    log = top / "server.log"
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(top / "data"), "-U", "speedrun", "--pwfile", str(top / "pw"),
         "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True,
    )  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*as_user, str(bindir / "postgres"), "-D", str(top / "data"), "-h", "127.0.0.1", "-p", str(port),
             "-k", str(top), "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_port(port, proc, log)
        url = f"postgresql://speedrun:{password}@127.0.0.1:{port}/postgres"
        _wait_ready(url)
        yield url
    finally:
        _stop(proc)
        shutil.rmtree(top, ignore_errors=True)


def _wait_ready(url: str, within: float = 30) -> None:
    """The port opens before the server accepts logins ('the database system is starting up')."""
    import psycopg

    deadline = time.monotonic() + within
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextmanager
def redis_server() -> Iterator[str]:
    """A fresh Redis on 127.0.0.1 with a password and no persistence; yields its redis:// URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server")
    top = Path(tempfile.mkdtemp(prefix="speedrun-redis-"))
    password = secrets.token_urlsafe(12)
    port = _free_port()
    log = top / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(top), "--requirepass", password],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_port(port, proc, log)
        yield f"redis://:{password}@127.0.0.1:{port}/0"
    finally:
        _stop(proc)
        shutil.rmtree(top, ignore_errors=True)
