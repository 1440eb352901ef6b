#!/usr/bin/env bash
# The test command: install uv if needed, then run the offline suite in the locked environment.
# `uv run` syncs without removing extra groups, so a Studio install (uv sync --group studio) survives it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
uv="$(bash "$repo/scripts/ensure-uv.sh")"
cd "$repo"
exec "$uv" run --project "$repo" --frozen pytest -q "$@"
