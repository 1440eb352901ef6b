"""Whether a process (or group) is alive and who it is: pid + start time, so a recycled pid is never mistaken for it."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["group_alive", "owner_alive", "process_tag", "tag_alive"]

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
    """True while the process that tagged a run still runs; this process never counts (its tasks say)."""
    if not tag:
        return False
    return int(tag.split(":")[0]) != os.getpid() and tag_alive(tag)


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
