"""speed-run's benchmarks: `uv run python -m bench` runs them all against the scripted server on loopback."""
