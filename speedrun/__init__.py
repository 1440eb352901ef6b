"""speed-run: fast-model first pass, tests, surgical fixes, judged parallel runs."""
