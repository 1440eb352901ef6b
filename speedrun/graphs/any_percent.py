"""The any-percent graph: 2-5 variants, one per approach along the design's main axis, judged on their trade-offs."""

from __future__ import annotations

from speedrun.graphs.parallel import build
from speedrun.state.parallel import AnyPercentInput, AnyPercentState

builder = build(AnyPercentState, AnyPercentInput)
graph = builder.compile(name="any_percent")
