"""promote=ask over MCP: ask the user to pick the winning branch (elicitation), when the client can ask."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal, cast

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field, create_model

from speedrun.state.records import RunStatus

if TYPE_CHECKING:
    from speedrun.runs import RunManager
    from speedrun.state.parallel import Worktree

log = logging.getLogger("speedrun.mcp")
NONE = "none"


def can_elicit(ctx: Context) -> bool:
    """True when the client declared form elicitation (an empty elicitation capability means form, per spec)."""
    caps = ctx.session.client_capabilities
    found = caps.elicitation if caps is not None else None
    return found is not None and (found.form is not None or found.url is None)


def awaits_choice(status: RunStatus) -> bool:
    """A finished showdown / any-percent whose promote=ask left branches for the user to choose from."""
    from speedrun.runs import PARALLEL

    return (
        status.workflow in PARALLEL
        and status.status == "done"
        and (status.result or {}).get("status") == ("awaiting_choice")
    )


def choice_form(branches: list[str], recommended: str | None) -> type[BaseModel]:
    """The elicitation form: a branch (or 'none') from an enum, and whether to merge it."""
    options = tuple([*branches, NONE])
    winner: Any = Literal.__getitem__(options)  # the enum is only known at run time
    return create_model(
        "PickWinner",
        branch=(
            winner,
            Field(
                recommended if recommended in branches else branches[0],
                description=f"The branch to keep; '{NONE}' deletes every kept branch.",
            ),
        ),
        merge=(bool, Field(False, description="Merge it into your current branch (else the branch is kept).")),
    )


async def maybe_choose(ctx: Context, runs: RunManager, status: RunStatus) -> RunStatus:
    """When `status` is a run awaiting its winner and the client can ask, ask once (per run and server); on accept
    promote the pick and delete the other kept branches, then return the new status. Otherwise `status` as is."""
    from speedrun.mcp_bridge.server import app_of

    app = app_of(ctx)
    if not awaits_choice(status) or status.run_id in app.asked or not can_elicit(ctx):
        return status
    app.asked.add(status.run_id)  # a declined question is not asked again on every poll
    graph = runs.graphs[status.workflow]
    config: dict[str, Any] = {"configurable": {"thread_id": status.run_id}}
    values = (await graph.aget_state(config)).values
    kept = _kept(values)
    if not kept:
        return status
    result = values["result"]
    recommended = next((wt.branch for wt in kept if wt.name == result.winner), None)
    form = choice_form([wt.branch for wt in kept], recommended)
    message = (
        f"speed-run {status.workflow} {status.run_id}: {len(kept)} runners passed every gate. Pick the branch to "
        f"keep (the judge recommends {recommended or 'none of them'}); the other kept branches are deleted."
    )
    try:
        answer = await ctx.elicit(message, form)
    except Exception as exc:  # the client broke the exchange: fall back to returning the choice
        log.warning("elicitation for %s failed: %s", status.run_id, exc)
        return status
    if answer.action != "accept":
        return status
    return await _apply(ctx, runs, status, values, kept, cast(Any, answer).data)


async def _apply(
    ctx: Context, runs: RunManager, status: RunStatus, values: Any, kept: list[Worktree], data: Any
) -> RunStatus:
    """Promote the pick, record it in the run (so run_status shows it) and in result.md; the new status."""
    from speedrun.choice import note_in_result, promote_choice
    from speedrun.mcp_bridge.server import app_of

    branch = None if data.branch == NONE else str(data.branch)
    mode: Literal["branch", "merge"] = "merge" if data.merge else "branch"
    settings = app_of(ctx).settings
    choice = await promote_choice(settings.home, status.run_id, values["repo_root"], kept, branch, mode)
    result = values["result"]
    picked = choice.winner if choice.status == "promoted" else None
    updated = result.model_copy(
        update={
            "status": choice.status,
            "winner": picked.name if picked else None,
            "winner_branch": picked.branch if picked else None,
            "why": result.why if picked and picked.name == result.winner else "",  # the judge's reason, if its pick
            "promotion": choice.line[:300],
            # A refused merge is said first: the compact result shows only the first warning.
            "warnings": [choice.line] * (choice.status == "awaiting_choice") + [*result.warnings, *choice.warnings],
        }
    )
    graph = runs.graphs[status.workflow]
    await graph.aupdate_state(
        {"configurable": {"thread_id": status.run_id}}, {"result": updated}, as_node="write_result"
    )
    await note_in_result(result.result_path, choice.line)
    return await runs.status(status.run_id)


def _kept(values: Any) -> list[Worktree]:
    """The survivors' worktrees (their branches are what promote=ask kept)."""
    from speedrun.state.parallel import Worktree

    survivors = set(values.get("survivors") or [])
    found = [Worktree.model_validate(w if isinstance(w, dict) else w.model_dump()) for w in values.get("worktrees", [])]
    return [wt for wt in found if wt.name in survivors]
