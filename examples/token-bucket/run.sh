#!/usr/bin/env bash
# The main job: have the fast model implement the token-bucket contract, test it, and fix it surgically.
# Usage: bash examples/token-bucket/run.sh [OUTPUT_DIR]     (default: build/token-bucket)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/build/token-bucket}"

uv="$(bash "$repo/scripts/ensure-uv.sh")"
# `uv run` installs what is missing without removing extra groups (a Studio install survives it).
speedrun() { "$uv" run --project "$repo" --frozen --quiet speedrun "$@"; }

# Stops here with the setup hint (how to set CEREBRAS_API_KEY, or use Ollama) when no provider is configured.
speedrun check

mkdir -p "$out/tests"
cp "$here/tests/test_token_bucket.py" "$out/tests/"
speedrun turbo --contract "$here/contract.md" --out "$out" \
  --test-cmd "python -m pytest -q -p no:cacheprovider tests" --max-fix-cycles 3
