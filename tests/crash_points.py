"""Crash points for kill/resume tests: seeded kill triggers over a CLI run's timeline, and what a kill may leave."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.fake_llm import FakeLLM, RecordedRequest
from tests.helpers import run_cli

POLL_S = 0.003
#: An answer that arrived this recently before the kill may not be saved yet (the node still parses it, returns,
#: and the checkpointer writes it): its node was in flight.
SAVE_GRACE_S = 0.05


@dataclass(frozen=True)
class Point:
    """Where on a run's timeline the process is killed: an event (the k-th of its kind), then `ms` milliseconds."""

    kind: str
    k: int
    ms: int
    seed: int

    def __str__(self) -> str:
        return f"{self.kind}{self.k}+{self.ms}ms-seed{self.seed}"


def seeded(kind: str, seed: int, ks: range, max_ms: int) -> Point:
    """A point of `kind` whose event number and delay come from a fixed seed (printed in the test id)."""
    rng = random.Random(f"{kind}:{seed}")
    return Point(kind, rng.choice(ks), rng.randrange(max_ms + 1) if max_ms else 0, seed)


@dataclass
class Killer:
    """SIGKILLs a process group when a trigger fires; polls from a thread, or is fired by the scripted server."""

    pgid: int
    fired: threading.Event = field(default_factory=threading.Event)
    killed_live: bool = False
    at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def kill(self) -> None:
        """Kill the whole group now (once); remember whether it was still running."""
        with self._lock:
            if self.fired.is_set():
                return
            try:
                os.killpg(self.pgid, 0)
                self.killed_live = True
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                self.killed_live = False
            self.at = time.monotonic()
            self.fired.set()

    def when(self, predicate: Callable[[], bool], then_ms: int = 0, within: float = 90) -> threading.Thread:
        """Kill `then_ms` after `predicate` first holds (checked every few ms, from a daemon thread)."""

        def watch() -> None:
            deadline = time.monotonic() + within
            while not self.fired.is_set() and time.monotonic() < deadline:
                if predicate():
                    time.sleep(then_ms / 1000)
                    self.kill()
                    return
                time.sleep(POLL_S)

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        return thread


def nth_answered(fake: FakeLLM, k: int) -> Callable[[], bool]:
    """True once the k-th chat request has been answered in full."""

    def check() -> bool:
        reqs = fake.chat_requests()
        return len(reqs) >= k and reqs[k - 1].finished is not None

    return check


def nth_arrived(fake: FakeLLM, k: int) -> Callable[[], bool]:
    return lambda: len(fake.chat_requests()) >= k


def lines_in(path: Path, n: int) -> Callable[[], bool]:
    """True once `path` has at least n lines (a test command appends one per run)."""

    def check() -> bool:
        try:
            return path.read_text().count("\n") >= n
        except OSError:
            return False

    return check


def start_cli(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """`python -m speedrun ARGS` in its own session (so the whole group can be killed), stderr to `log`."""
    with open(log, "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "speedrun", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )


def only_run_id(env: dict[str, str], cwd: Path) -> str:
    """The one run `speedrun runs` lists (each crash point has its own SPEEDRUN_HOME)."""
    listed = run_cli(["runs"], cwd, **env)
    ids = re.findall(r"^((?:turbo|showdown)-\S+)", listed.stdout, re.M)
    assert len(ids) == 1, (listed.stdout, listed.stderr)
    return ids[0]


def temp_leftovers(*roots: Path) -> list[Path]:
    """Temp files of speed-run's atomic writers (`.speedrun-*.tmp`) under `roots`."""
    return sorted(p for root in roots if root.exists() for p in root.rglob(".speedrun-*.tmp"))


def key(request: RecordedRequest, lane: Callable[[dict], str]) -> tuple[str, str]:
    """A request as the model saw it: its lane (role or runner) and its whole conversation."""
    body = request.body or {}
    return lane(body), repr(body.get("messages"))


def repeats(
    before: list[RecordedRequest], after: list[RecordedRequest], lane: Callable[[dict], str], killed_at: float
) -> list[tuple[str, str]]:
    """Requests of finished work asked again after the resume (lane and the end of the conversation).

    Only work in flight at the kill may be asked again, at most once: a request not yet answered when the kill
    came or less than SAVE_GRACE_S before it, or the last answered request of its lane (a runner, a role: its
    answer may not have been saved yet). Every other earlier request is finished work."""
    # A request the kill cut off while it was being sent reaches the server without a body: it asked nothing.
    before = [r for r in before if (r.body or {}).get("messages")]
    last: dict[str, tuple[str, str]] = {}
    in_flight = set()
    for r in before:
        k = key(r, lane)
        if r.finished is None or r.finished >= killed_at - SAVE_GRACE_S:
            in_flight.add(k)
        else:
            last[k[0]] = k
    seen_after: dict[tuple[str, str], int] = {}
    for r in after:
        k = key(r, lane)
        seen_after[k] = seen_after.get(k, 0) + 1
    bad = []
    for r in before:
        k = key(r, lane)
        allowed = 1 if k in in_flight or last.get(k[0]) == k else 0
        if seen_after.get(k, 0) > allowed:
            ago = "unanswered" if r.finished is None else f"answered {1000 * (killed_at - r.finished):.0f} ms before"
            bad.append((k[0], f"{ago} the kill: ...{k[1][-100:]}"))
    return bad
