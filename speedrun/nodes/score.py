"""score: the judge model fills the checklists in two opposite orders; code merges them and turns them into scores."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from langgraph.runtime import Runtime

from speedrun import prompts
from speedrun.config import RunContext, Settings
from speedrun.judge.panel import blind, checklists_from, numbered_items, read_sources, verdict_model
from speedrun.judge.scoring import build_scorecard
from speedrun.judge.stability import reconcile
from speedrun.llm import structured
from speedrun.nodes.common import progress, run_settings
from speedrun.state.judge import Checklists, ImplementationReview, JudgeState, Measurement, Scorecard
from speedrun.state.records import LedgerEntry
from speedrun.words import plural

JUDGE_BUDGET = 120_000  # characters of code across all implementations in one judge prompt

T = TypeVar("T")


async def score(state: JudgeState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Ask the judge over all implementations under neutral labels, in the blinded order and, when there are two or
    more, again in the reverse order (concurrently); an item whose answer flips between the two is not met."""
    settings = run_settings(runtime)
    by_label = {label: name for name, label in blind(state).items()}
    order = sorted(by_label)
    blocks = await _implementation_blocks(state, by_label)
    orders = [order, order[::-1]] if len(order) > 1 else [order]
    progress(
        runtime,
        "score",
        f"judge is scoring {plural(len(order), 'implementation')}"
        + (" in both orders" if len(orders) > 1 else " (one implementation: asked once)"),
    )
    answered = await _concurrently([_ask(settings, state, shown, blocks) for shown in orders])
    ledger = [entry for _lists, entries in answered for entry in entries]
    lists = answered[0][0]
    if len(answered) > 1:
        lists = {label: reconcile(lists[label], answered[1][0][label]) for label in order}
    names = [impl.name for impl in state.implementations]
    cards = [_card(state, by_label[label], checklists) for label, checklists in lists.items()]
    cards.sort(key=lambda card: names.index(card.name))
    return {"cards": cards, "ledger": ledger}


async def _implementation_blocks(state: JudgeState, by_label: dict[str, str]) -> dict[str, str]:
    """label -> the prompt block of that implementation: measured facts, review findings and bounded sources."""
    measured = {m.name: m for m in state.measurements}
    reviews = {r.name: r for r in state.reviews}
    paths = {impl.name: Path(impl.path) for impl in state.implementations}
    budget = JUDGE_BUDGET // max(1, len(paths))
    blocks = {}
    for label in sorted(by_label):
        name = by_label[label]
        sources = await asyncio.to_thread(read_sources, paths[name], budget)
        blocks[label] = _block(label, measured[name], reviews.get(name), sources)
    return blocks


def _block(label: str, measurement: Measurement, review: ImplementationReview | None, sources: str) -> str:
    """One implementation as the judge sees it."""
    tests = measurement.tests
    findings = review.findings if review else []
    return prompts.JUDGE_IMPLEMENTATION.format(
        label=label,
        loc=measurement.loc,
        files=measurement.files,
        violations=", ".join(f"{kind} {count}" for kind, count in measurement.violation_counts().items()),
        tests="not run" if tests is None else tests.summary(),
        findings="; ".join(f"{f.severity} {f.category} {f.file}:{f.line} {f.message}" for f in findings) or "none",
        sources=sources,
    )


def _messages(state: JudgeState, shown: list[str], blocks: dict[str, str]) -> list[tuple[str, str]]:
    """The judge prompt with the implementations (and the labels to answer for) in the order `shown`."""
    user = prompts.JUDGE_USER.format(
        mode_text=prompts.JUDGE_MODE_TEXT[state.mode],
        design=state.design,
        fitness=numbered_items("fitness"),
        robustness=numbered_items("robustness"),
        maintainability=numbered_items("maintainability"),
        labels=", ".join(shown),
        implementations="\n".join(blocks[label] for label in shown),
    )
    return [("system", prompts.JUDGE_SYSTEM), ("user", user)]


async def _ask(
    settings: Settings, state: JudgeState, shown: list[str], blocks: dict[str, str]
) -> tuple[dict[str, Checklists], list[LedgerEntry]]:
    """One judge call with the implementations in the order `shown`; label -> its checklists, and the ledger.

    The schema names every label (in the order shown) and every item as a required property, so no check beyond
    it is needed: an answer that follows the schema is always usable.
    """
    verdict, ledger = await structured(settings, "judge", verdict_model(shown), _messages(state, shown, blocks))
    return {label: checklists_from(label, getattr(verdict, label)) for label in shown}, ledger


def _card(state: JudgeState, name: str, checklists: Checklists) -> Scorecard:
    """The scorecard of one implementation, with its fresh-eyes findings counted per severity."""
    measurement = next(m for m in state.measurements if m.name == name)
    card = build_scorecard(measurement, checklists, name=name)
    review = next((r for r in state.reviews if r.name == name), None)
    for finding in review.findings if review else []:
        key = f"review_{finding.severity}"
        card.findings_count[key] = card.findings_count.get(key, 0) + 1
    return card


async def _concurrently(calls: list[Awaitable[T]]) -> list[T]:
    """Await every call at once; when one fails, cancel the others before raising its error (not a group)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
