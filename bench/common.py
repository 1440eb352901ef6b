"""What every benchmark shares: its result record, the verdict line, and the scripted server's environment."""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, Field

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/x.py` as well as `python -m bench.x`
    sys.path.insert(0, str(ROOT))

RESULT_MARK = "BENCH-RESULT "  # the line bench/__main__.py collects from each benchmark's output
KEY = "sk-bench-not-a-secret"


class Result(BaseModel):
    """One benchmark's verdict, printed for people and collected as JSON for the summary table."""

    name: str = Field(description="Benchmark name, as given to `python -m bench NAME`.")
    title: str = Field(description="What was measured, in a few words.")
    measured: str = Field(description="The measurement, with units.")
    target: str = Field(description="The target it is held to, or '—' for a reading without one.")
    ok: bool | None = Field(description="True: meets the target; False: misses it; None: no target.")
    note: str = Field("", description="One line of context, e.g. why a target is missed.")

    @property
    def verdict(self) -> str:
        """OK, MISS, or 'reading' for a measurement without a target."""
        return "reading" if self.ok is None else ("OK" if self.ok else "MISS")


def emit(result: Result) -> Result:
    """Print the verdict line (and the note), then the machine-readable line bench/__main__.py collects."""
    print(f"  => {result.title}: {result.measured} (target {result.target}) {result.verdict}")
    if result.note:
        print(f"     {result.note}")
    print(RESULT_MARK + result.model_dump_json(), flush=True)
    return result


def parse_results(output: str) -> list[Result]:
    """The Result lines in a benchmark's output."""
    return [
        Result.model_validate(json.loads(line[len(RESULT_MARK) :]))
        for line in output.splitlines()
        if line.startswith(RESULT_MARK)
    ]


def median(values: list[float]) -> float:
    """The median; the statistic every benchmark reports, as it shrugs off a round disturbed by other load."""
    return statistics.median(values)


def spread(values: list[float], scale: float = 1.0, unit: str = "", digits: int = 0) -> str:
    """'min-max' of a series, for showing how stable a median is."""
    return f"{min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f}{unit}"


def provider_env(base_url: str, home: Path, **extra: str) -> dict[str, str]:
    """The variables that point speed-run's default provider (cerebras) at the scripted server."""
    env = {
        "CEREBRAS_API_KEY": KEY,
        "CEREBRAS_URL": base_url,
        "CEREBRAS_MODEL": "fake-model",
        "SPEEDRUN_HOME": str(home),
    }
    env.update(extra)
    return env


@contextmanager
def environ(env: dict[str, str]) -> Iterator[None]:
    """Set variables for the block, dropping any SPEEDRUN_LIMITS_* / CEREBRAS_* the caller's shell had."""
    saved = dict(os.environ)
    for name in [k for k in os.environ if k.startswith(("SPEEDRUN_LIMITS", "CEREBRAS_", "SPEEDRUN_PROVIDER"))]:
        del os.environ[name]
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def server_env(base_url: str | None, tmp: Path, **extra: str) -> dict[str, str]:
    """Only what `speedrun mcp` needs (stdio_client passes nothing else), pointed at the scripted server."""
    (tmp / "root").mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp / "home"),
        "SPEEDRUN_HOME": str(tmp / "state"),
        "SPEEDRUN_ROOTS": str(tmp / "root"),
    }
    if base_url is not None:
        env.update(provider_env(base_url, tmp / "state"))
    env.update(extra)
    return env


def vm_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def child_pids(parent: int | None = None) -> list[int]:
    """Direct children of a process (this one by default), read from /proc."""
    parent = os.getpid() if parent is None else parent
    pids: list[int] = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids
