"""prepare_worktrees: one git worktree and branch per runner, from the caller's HEAD, journaled before git runs."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from langgraph.runtime import Runtime

from speedrun.config import RunContext
from speedrun.errors import SpeedRunError
from speedrun.nodes.common import progress, run_settings
from speedrun.state.parallel import AnyPercentState, ShowdownState, Worktree
from speedrun.words import plural
from speedrun.worktrees import (
    Journal,
    base_commit,
    create_worktree,
    discard_leftovers,
    inspect_repo,
    plan_worktrees,
    remove_worktree,
)


def run_id_of(runtime: Any, state: ShowdownState | AnyPercentState) -> str:
    """The run's id (its LangGraph thread); without a checkpointer, a stable id from the repo and feature."""
    thread_id = getattr(getattr(runtime, "execution_info", None), "thread_id", None)
    if not thread_id:
        from langgraph.config import get_config

        try:
            thread_id = get_config().get("configurable", {}).get("thread_id")
        except RuntimeError:  # called outside a graph run
            thread_id = None
    if thread_id:
        return str(thread_id)
    digest = hashlib.sha256(f"{state.repo}\0{state.feature}".encode()).hexdigest()[:12]
    return f"local-{state.feature}-{digest}"


def run_journal(runtime: Any, state: ShowdownState | AnyPercentState) -> Journal:
    """The worktree journal of this run, under the run's SPEEDRUN_HOME."""
    return Journal.for_run(run_settings(runtime).home, run_id_of(runtime, state))


def runner_names(state: ShowdownState | AnyPercentState) -> list[str]:
    """runner-1..runner-N for a showdown (N = count); variant-<slug> per approach for an any-percent."""
    if isinstance(state, AnyPercentState):
        return [f"variant-{a.slug}" for a in state.approaches]
    return [f"runner-{i}" for i in range(1, state.count + 1)]


async def prepare_worktrees(state: ShowdownState | AnyPercentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Inspect the repo, pick the base commit, and create every runner's worktree; all or none.

    If the k-th worktree fails, the ones made before it (and whatever the k-th left) are removed, then the error
    is raised. A retried prepare (a resume after a crash here) first removes what this run's journal lists.
    """
    journal = run_journal(runtime, state)
    leftovers = await discard_leftovers(journal)
    if leftovers:
        progress(
            runtime, "prepare_worktrees", f"removed {plural(len(leftovers), 'worktree')} an interrupted attempt left"
        )
    repo = await inspect_repo(state.repo)
    base = await base_commit(repo, state.include_uncommitted)
    planned = await asyncio.to_thread(plan_worktrees, repo, state.feature, runner_names(state))
    made: list[Worktree] = []
    try:
        for wt in planned:
            progress(runtime, "prepare_worktrees", f"{wt.name}: creating {wt.branch}", runner=wt.name)
            made.append(wt)  # before git runs: a failure halfway still leaves something to roll back
            await create_worktree(repo, wt, base, journal)
    except BaseException:
        await _roll_back(repo.root, made, journal)
        raise
    progress(runtime, "prepare_worktrees", f"{len(planned)} worktrees from {base[:12]}")
    return {"repo_root": repo.root, "base": base, "worktrees": planned}


async def _roll_back(root: str, made: list[Worktree], journal: Journal) -> None:
    """Remove what a failed prepare made; only entries git really started on (journal state planned/created)."""
    states = {e.path: e.state for e in await asyncio.to_thread(journal.entries)}
    for wt in reversed(made):
        if states.get(wt.path) not in {"planned", "created"}:
            continue  # never journaled, or refused because its branch/path belongs to someone else
        try:
            await remove_worktree(root, wt, journal)
        except SpeedRunError:  # the original error matters more; `speedrun clean` finds the rest in the journal
            continue
