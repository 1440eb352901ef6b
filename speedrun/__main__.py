"""`python -m speedrun`: the same entry point as the `speedrun` command."""

import sys

from speedrun.cli import main

sys.exit(main())
