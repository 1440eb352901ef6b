"""`python -m bench [NAME ...] [--quick]`: run the benchmarks, each in its own process, then print the table."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time

from bench.common import ROOT, Result, parse_results

#: name -> (module, what it measures). Run in this order: the quick, quiet ones first.
BENCHES = {
    "startup": ("bench.startup", "MCP spawn→initialize vs a bare MCPServer (<= 1.15x)"),
    "overhead": ("bench.overhead", "per-call overhead of generate / generate_and_write_files over MCP (< 5 ms)"),
    "sustained": ("bench.generate_calls", "25 small generate calls in a row, Cerebras limits: no wait"),
    "streaming": ("bench.streaming", "closing tag leaves the server → file on disk (<= 20 ms)"),
    "parallel": ("bench.showdown", "5-runner showdown vs 1 runner at 500 ms model latency (<= 1.25x)"),
    "turbo": ("bench.turbo_overhead", "turbo's own share of the wall time (<= 10%)"),
    "memory": ("bench.memory", "MCP server RSS after start and after a 5-runner showdown"),
}


def machine() -> str:
    """Cores, architecture and Python, as the README table states them."""
    return f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"


def run_one(name: str, quick: bool) -> tuple[list[Result], float]:
    """Run one benchmark in a fresh interpreter (its own environment, budgets and memory), echoing its output."""
    module, _ = BENCHES[name]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *(["--quick"] if quick else [])],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if not line.startswith("BENCH-RESULT "):
            print(line, end="", flush=True)
    code = proc.wait()
    results = parse_results("".join(lines))
    if code != 0 or not results:
        results.append(
            Result(name=name, title=BENCHES[name][1], measured=f"failed (exit {code})", target="—", ok=False)
        )
    return results, time.perf_counter() - started


def table(results: list[Result], quick: bool) -> str:
    """The Markdown table the README carries."""
    command = "uv run python -m bench" + (" --quick" if quick else "")
    head = [
        f"Measured {datetime.date.today().isoformat()} on {machine()}; command: `{command}` "
        "(one benchmark: `uv run python -m bench NAME`).",
        "",
        "| Benchmark | Measured | Target | Verdict | Command |",
        "|---|---|---|---|---|",
    ]
    rows = [
        f"| {r.title} | {r.measured} | {r.target} | {r.verdict}{' — ' + r.note if r.note else ''} "
        f"| `uv run python -m bench {r.name}` |"
        for r in results
    ]
    return "\n".join(head + rows)


def main(argv: list[str] | None = None) -> int:
    """Parse the names, run them one after another, print the summary; exit 1 if any missed its target."""
    listing = "\n".join(f"  {name:<10} {what}" for name, (_, what) in BENCHES.items())
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="speed-run's benchmarks, against the scripted server on loopback. Each prints its measurement, "
        "its target and OK or MISS.",
        epilog="benchmarks:\n" + listing,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a rough reading in about half the time")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    print(f"speed-run benchmarks on {machine()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    results: list[Result] = []
    for name in args.names or list(BENCHES):
        print(f"\n## {name}: {BENCHES[name][1]}", flush=True)
        found, seconds = run_one(name, args.quick)
        print(f"  ({seconds:.0f} s)", flush=True)
        results += found
    print("\n" + table(results, args.quick))
    return 1 if any(r.ok is False for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
