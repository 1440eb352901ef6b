"""fresh_eyes_review: the reviewer reads one blinded implementation and returns typed findings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from speedrun import prompts
from speedrun.config import RunContext
from speedrun.judge.panel import read_sources
from speedrun.llm import structured
from speedrun.nodes.common import progress, run_settings
from speedrun.state.judge import ImplementationReview, Review, ReviewTask

REVIEW_BUDGET = 60_000  # characters of code one review reads


async def fresh_eyes_review(task: ReviewTask, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Review one implementation (a Send branch). Its name and path never reach the prompt."""
    settings = run_settings(runtime)
    progress(runtime, "fresh_eyes_review", f"reviewing implementation {task.label}")
    sources = await asyncio.to_thread(read_sources, Path(task.impl.path), REVIEW_BUDGET)
    messages = [
        ("system", prompts.REVIEW_SYSTEM),
        ("user", prompts.REVIEW_USER.format(design=task.design, label=task.label, sources=sources)),
    ]
    review, ledger = await structured(settings, "reviewer", Review, messages)
    return {"reviews": [ImplementationReview(name=task.impl.name, findings=review.findings)], "ledger": ledger}
