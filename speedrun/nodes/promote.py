"""promote: hand the winner to the user (branch, merge or ask) and remove every other runner's worktree and branch."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from langgraph.runtime import Runtime

from speedrun.config import RunContext
from speedrun.errors import SpeedRunError
from speedrun.nodes.common import progress
from speedrun.nodes.prepare_worktrees import run_journal
from speedrun.state.parallel import AnyPercentState, ParallelResult, ShowdownState, Worktree
from speedrun.state.records import one_line
from speedrun.worktrees import Journal, inspect_repo, remove_worktree
from speedrun.worktrees import promote as promote_worktree

Status = Literal["promoted", "awaiting_choice", "no_survivor", "failed"]
#: How promotion's line starts when git refused it (the branch is kept); the line is also a warning then.
NOT_PROMOTED = "not promoted"
PROMOTION_CHARS = 300


def pick_winner(state: ShowdownState | AnyPercentState) -> str | None:
    """The judge's winner if it survived the gates; a lone survivor wins without a judge; else None."""
    winner = state.judged.winner if state.judged else None
    if winner in state.survivors:
        return winner
    if state.judged is None and len(state.survivors) == 1:
        return state.survivors[0]
    return None


async def promote(state: ShowdownState | AnyPercentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Promote per `state.promote`, remove losers' and failed runners' worktrees and branches; never raises for git.

    branch: the winner's branch stays, its worktree goes. merge: it is merged into the caller's branch, then
    deleted (refused or conflicting: the branch stays, with a warning). ask: every worktree goes, the survivors'
    branches stay for the user to choose from, and the status is awaiting_choice. Worktrees already handled by an
    earlier attempt of this node (a resume) are skipped. Returns `warnings` and a partial `result` (mode, status,
    winner, winner_branch, why, flip_rate, worksheet_path, promotion) for the result writer to complete.
    """
    journal = run_journal(runtime, state)
    done = {e.path for e in await asyncio.to_thread(journal.entries) if e.state in {"removed", "promoted"}}
    status, target = _decide(state)
    kept = set(state.survivors) if state.promote == "ask" else set()
    keep_worktree = target if status == "promoted" else None  # promote_worktree removes it itself
    others = [wt for wt in state.worktrees if wt.path not in done and wt != keep_worktree]
    warnings = await _remove(state.repo_root, others, kept, journal)
    if keep_worktree is not None:
        line = await _hand_over(state, keep_worktree, journal, resumed=keep_worktree.path in done)
        if line.startswith(NOT_PROMOTED):
            warnings.append(line)
    elif status == "awaiting_choice":
        line = f"kept the branches of {', '.join(sorted(kept))}; choose one and merge it with `git merge <branch>`"
    else:
        line = "no winner: every runner's worktree and branch was removed"
    progress(runtime, "promote", line, **({"runner": keep_worktree.name} if keep_worktree else {}))
    result = _partial_result(state, status, target)
    result.promotion = one_line(line, PROMOTION_CHARS)
    return {"warnings": warnings, "result": result}


async def _hand_over(state: ShowdownState | AnyPercentState, wt: Worktree, journal: Journal, resumed: bool) -> str:
    """Promote the winner's worktree; one line saying what happened (NOT_PROMOTED... when git refused).

    A resumed node whose earlier attempt already handed the branch over only merges, and only if the branch is
    still there: the crash may have come between removing the worktree and the merge."""
    mode: Literal["branch", "merge"] = "merge" if state.promote == "merge" else "branch"
    if resumed and (mode == "branch" or wt.branch not in (await inspect_repo(state.repo_root)).branches):
        return f"{wt.branch}: handed over before the run was interrupted ({mode})"
    try:
        return await promote_worktree(state.repo_root, wt, mode, journal)
    except SpeedRunError as exc:  # merge refused or conflicting: the branch is kept, so the work is not lost
        return f"{NOT_PROMOTED}: {exc}"


def _decide(state: ShowdownState | AnyPercentState) -> tuple[Status, Worktree | None]:
    """The status promotion ends in, and the winner's worktree (None when nobody won)."""
    winner = pick_winner(state)
    target = next((wt for wt in state.worktrees if wt.name == winner), None)
    if target is None:
        return "no_survivor", None
    return ("awaiting_choice" if state.promote == "ask" else "promoted"), target


async def _remove(root: str, worktrees: list[Worktree], kept: set[str], journal: Journal) -> list[str]:
    """Remove each worktree, and its branch unless its runner is in `kept`; a failure becomes a warning."""
    warnings = []
    for wt in worktrees:
        try:
            await remove_worktree(root, wt, journal, keep_branch=wt.name in kept)
        except SpeedRunError as exc:
            warnings.append(f"{wt.name}: {exc}; `speedrun clean` retries it")
    return warnings


def _partial_result(state: ShowdownState | AnyPercentState, status: Status, target: Worktree | None) -> ParallelResult:
    """What promotion knows of the result; the result writer adds the runners table, similarity and paths."""
    judged = state.judged
    winner = target.name if target is not None else None
    return ParallelResult(
        mode=state.mode,
        status=status,
        winner=winner,
        winner_branch=target.branch if target is not None else None,
        why=judged.decision.rationale if judged is not None and winner == judged.winner else "",
        flip_rate=judged.flip_rate if judged is not None else None,
        worksheet_path=judged.worksheet_path if judged is not None else None,
    )
