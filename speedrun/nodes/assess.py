"""assess: read the design, then decide the fan-out — showdown's runner count, any-percent's approaches."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from speedrun import prompts
from speedrun.config import RunContext
from speedrun.errors import InputError, echo
from speedrun.llm import structured
from speedrun.nodes.common import progress, run_settings
from speedrun.state.parallel import (
    CLIENT_FIXER_REFUSED,
    MAX_RUNNERS,
    MIN_RUNNERS,
    RUNNERS_BY_COMPLEXITY,
    AnyPercentState,
    ApproachProposal,
    ComplexityRating,
    ShowdownState,
)

DESIGN_FILE_BYTES = 200_000  # a design longer than this is not a design, and would not fit a prompt anyway
_DESIGN_SUFFIXES = (".md", ".txt", ".rst", ".markdown")


def read_design(design: str, repo: str) -> str:
    """The design text: `design` itself, or the file it names inside `repo`. Blocking (reads a file).

    A single line without spaces that ends like a document (.md, .txt...) or holds a '/' is taken for a path; if
    no such file exists inside the repo, that is an InputError rather than a one-line design nobody meant.
    """
    candidate = design.strip()
    if not candidate or "\n" in candidate or len(candidate) > 1024:
        return design
    root = Path(repo).expanduser().resolve()
    path = (root / candidate).resolve()
    looks_like_path = " " not in candidate and ("/" in candidate or candidate.lower().endswith(_DESIGN_SUFFIXES))
    if path.is_file():
        if not path.is_relative_to(root):
            raise InputError(f"design file {echo(candidate)} is outside the repo {echo(str(root))}; move it inside")
        if path.stat().st_size > DESIGN_FILE_BYTES:
            raise InputError(f"design file {echo(candidate)} is over {DESIGN_FILE_BYTES} bytes; shorten the design")
        return path.read_text(encoding="utf-8", errors="replace")
    if looks_like_path:
        raise InputError(
            f"design {echo(candidate)} looks like a file path, but no such file is in the repo {echo(str(root))}; "
            "pass the design's text, or the path of an existing file relative to the repo"
        )
    return design


async def assess(state: ShowdownState | AnyPercentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Resolve the design, refuse a client fixer, and set `count` (and any-percent's `approaches`)."""
    settings = run_settings(runtime, state.roles)
    if settings.fixer_is_client:  # the input check sees roles; this one also sees SPEEDRUN_FIXER
        raise InputError(CLIENT_FIXER_REFUSED)
    design = await asyncio.to_thread(read_design, state.design, state.repo)
    if not design.strip():
        raise InputError("design is empty; pass the design's text or the path of a file holding it")
    out: dict[str, Any] = {"design_text": design}
    if isinstance(state, AnyPercentState):
        if state.approaches:
            out["count"] = len(state.approaches)
            progress(runtime, "assess", f"{len(state.approaches)} approaches given")
            return out
        progress(runtime, "assess", "planner is proposing approaches")
        messages = [
            ("system", prompts.ASSESS_SYSTEM),
            ("user", prompts.ASSESS_APPROACHES_USER.format(design=design, low=MIN_RUNNERS, high=MAX_RUNNERS)),
        ]
        proposal, ledger = await structured(settings, "planner", ApproachProposal, messages, check=_check_proposal)
        approaches = proposal.approaches[:MAX_RUNNERS]  # the cap: more would only be extra cost
        progress(runtime, "assess", f"axis: {proposal.axis}; approaches: {', '.join(a.slug for a in approaches)}")
        return {**out, "approaches": approaches, "count": len(approaches), "ledger": ledger}
    if state.runners != "auto":
        progress(runtime, "assess", f"{state.runners} runners")
        return {**out, "count": state.runners}
    progress(runtime, "assess", "planner is rating the design's complexity")
    messages = [("system", prompts.ASSESS_SYSTEM), ("user", prompts.ASSESS_COMPLEXITY_USER.format(design=design))]
    rating, ledger = await structured(settings, "planner", ComplexityRating, messages)
    count = RUNNERS_BY_COMPLEXITY[rating.level]
    progress(runtime, "assess", f"complexity {rating.level}: {count} runners", level=rating.level)
    return {**out, "count": count, "ledger": ledger}


def _check_proposal(proposal: ApproachProposal) -> str | None:
    """Too few approaches or a repeated slug is a malformed answer (the model gets one retry)."""
    slugs = [a.slug for a in proposal.approaches]
    if len(slugs) < MIN_RUNNERS:
        return f"propose at least {MIN_RUNNERS} approaches; got {len(slugs)}"
    if len(set(slugs[:MAX_RUNNERS])) != len(slugs[:MAX_RUNNERS]):
        return f"every approach needs its own slug; got {slugs}"
    return None
