"""The compiled graphs, by name: `from speedrun.graphs import turbo` gives the graph itself, ready to `.invoke`.

Each module (speedrun.graphs.turbo, ...) still exports `builder` and `graph`; langgraph.json, runs.py and
`import speedrun.graphs.turbo` use those. The names here are bound eagerly, not through a lazy `__getattr__`: the
import system sets `speedrun.graphs.turbo` to the submodule when it is first loaded, and a `__getattr__` is never
asked for a name that is already set. Loading the submodules here, before binding the names, means that first load
happens now and the graphs win. Importing all four costs about what importing one does (they share their imports).
"""

from __future__ import annotations

from speedrun.graphs.any_percent import graph as any_percent
from speedrun.graphs.judge import graph as judge
from speedrun.graphs.showdown import graph as showdown
from speedrun.graphs.turbo import graph as turbo

__all__ = ["any_percent", "judge", "showdown", "turbo"]
