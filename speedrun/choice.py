"""Promote the branch a user picked after a promote=ask run, and delete the other branches that run kept."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from speedrun.errors import SpeedRunError
from speedrun.state.parallel import Worktree
from speedrun.worktrees import Journal, promote, remove_worktree


class Choice(BaseModel):
    """What happened to a promote=ask run's kept branches once the user chose."""

    status: Literal["promoted", "awaiting_choice", "no_survivor"] = Field(
        description="promoted: the pick was handed over; awaiting_choice: git refused, every branch is kept; "
        "no_survivor: the user picked none and every kept branch was deleted."
    )
    winner: Worktree | None = Field(None, description="The runner the user picked (None for 'none').")
    line: str = Field(description="What was done, in one line.")
    warnings: list[str] = Field(default_factory=list, description="Branches that could not be deleted, and why.")


async def promote_choice(
    home: Path, run_id: str, repo_root: str, kept: list[Worktree], branch: str | None, mode: Literal["branch", "merge"]
) -> Choice:
    """Hand over the kept branch named `branch` (None: none of them) with `mode`, then delete the others.

    branch keeps it for the user to merge; merge merges it into the current branch and deletes it. When git refuses
    the merge (dirty tree, detached HEAD, conflict), nothing is deleted: the user can still pick by hand.
    """
    journal = Journal.for_run(home, run_id)
    winner = next((wt for wt in kept if wt.branch == branch), None)
    if winner is not None:
        try:
            line = await promote(repo_root, winner, mode, journal)
        except SpeedRunError as exc:
            return Choice(status="awaiting_choice", winner=winner, line=f"not promoted: {exc}")
    else:
        line = f"none picked: deleted the branches {', '.join(wt.branch for wt in kept)}"
    warnings = []
    for wt in kept:
        if wt is winner:
            continue
        try:
            await remove_worktree(repo_root, wt, journal)  # its worktree went with promote=ask; this deletes the branch
        except SpeedRunError as exc:
            warnings.append(f"{wt.branch}: {exc}")
    return Choice(status="promoted" if winner else "no_survivor", winner=winner, line=line, warnings=warnings)


async def note_in_result(result_path: str, line: str) -> None:
    """Add the user's choice to result.md, which still says the branches await one."""
    if not result_path:
        return

    def append() -> None:
        path = Path(result_path)
        if path.is_file():
            with path.open("a", encoding="utf-8") as doc:
                doc.write(f"\n## Chosen by the user\n\n{line}\n")

    await asyncio.to_thread(append)
