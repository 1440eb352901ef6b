"""Whether a process (or group) is alive and who it is: pid + start time, so a recycled pid is never mistaken for it."""

from __future__ import annotations

import functools
import hashlib
import os
import socket
from pathlib import Path

__all__ = ["group_alive", "host_id", "owner_alive", "process_tag", "run_owner", "split_owner", "tag_alive"]

_PROC = Path("/proc")
_DEAD_STATES = ("Z", "X")  # a zombie runs nothing; it only waits to be reaped


def _stat_fields(stat: str) -> list[str]:
    """The fields of a /proc/<pid>/stat line after the command name (which may hold spaces and parentheses)."""
    return stat[stat.rfind(")") + 2 :].split()


def process_tag(pid: int | None = None) -> str | None:
    """'pid:start-time' of a process (None if it is gone or a zombie), so a recycled pid is not its owner."""
    pid = pid or os.getpid()
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (macOS): the pid alone
        return str(pid) if _pid_exists(pid) else None
    fields = _stat_fields(stat)
    return None if fields[0] in _DEAD_STATES else f"{pid}:{fields[19]}"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def tag_alive(tag: str | None) -> bool:
    """True while the process that `tag` names still runs (this process included)."""
    if not tag:
        return False
    return process_tag(int(tag.split(":")[0])) == tag


def owner_alive(tag: str | None) -> bool:
    """True while the process that tagged a run still runs; this process never counts (its tasks say).

    `tag` is a process_tag of this host; a run_owner of another host is never judged alive here (see split_owner).
    """
    if not tag:
        return False
    host, tag = split_owner(tag)
    if host is not None and host != host_id():
        return False
    return int(tag.split(":")[0]) != os.getpid() and tag_alive(tag)


@functools.cache
def host_id() -> str:
    """'hostname~hash': the scope in which a pid names one process. The hash covers the boot and the pid namespace,
    so two containers (or two boots) that share a hostname still count as different hosts."""
    scope = []
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            scope.append(os.readlink(path) if path.endswith("/pid") else Path(path).read_text().strip())
        except OSError:  # no /proc (macOS): the hostname alone
            scope.append("")
    digest = hashlib.sha256("\0".join(scope).encode()).hexdigest()[:8]
    return f"{socket.gethostname().replace('/', '_')}~{digest}"


def run_owner() -> str | None:
    """'host/pid:start-time' of this process: who drives a run, in a run store that several hosts may share."""
    tag = process_tag()
    return None if tag is None else f"{host_id()}/{tag}"


def split_owner(owner: str) -> tuple[str | None, str]:
    """(host, process_tag) of a run owner; host None for an owner recorded before hosts were (this host's)."""
    host, _, tag = owner.rpartition("/")
    return host or None, tag


def group_alive(pgid: int) -> bool:
    """True while some non-zombie process is in process group `pgid`. Blocking: reads all of /proc."""
    if not (_PROC / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields((entry / "stat").read_text())
        except OSError:
            continue
        if len(fields) >= 3 and fields[2] == str(pgid) and fields[0] not in _DEAD_STATES:
            return True
    return False


# prctl(2) option (the sandbox's watchdog script uses PR_SET_PDEATHSIG=1 and PR_SET_CHILD_SUBREAPER=36)
_PR_SET_DUMPABLE = 4


def harden_process() -> bool:
    """Mark this process non-dumpable so same-user processes cannot read its ``/proc/<pid>/environ``.

    Linux only; root can still read it. Returns True when the flag is set. Lives here rather than in the sandbox
    module so `speedrun mcp` can harden itself without importing the sandbox (and its junit/xml imports) at start.
    """
    import sys

    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return False
    return bool(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
