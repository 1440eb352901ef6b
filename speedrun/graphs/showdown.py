"""The showdown graph: 2-5 runners build the same design from their own plans; the judge picks on evidence."""

from __future__ import annotations

from speedrun.graphs.parallel import build
from speedrun.state.parallel import ShowdownInput, ShowdownState

builder = build(ShowdownState, ShowdownInput)
graph = builder.compile(name="showdown")
