#!/usr/bin/env bash
# The test command: install uv if needed, then run the offline suite in the locked environment.
# `uv run` syncs without removing extra groups, so a Studio install (uv sync --group studio) survives it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
uv="$(bash "$repo/scripts/ensure-uv.sh")"
cd "$repo"
# -n auto: one pytest worker per core (pytest-xdist); most tests wait on subprocesses and servers, so this about
# halves the suite's time on 2 cores. Pass `-n 0` to run in one process (e.g. to debug with -x or --pdb).
exec "$uv" run --project "$repo" --frozen pytest -q -n auto "$@"
