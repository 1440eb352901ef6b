"""State and records of the parallel workflows (showdown, any-percent): inputs, runner tasks and results, outcome."""

from __future__ import annotations

import operator
import re
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from speedrun.state.judge import JudgeResult
from speedrun.state.records import LedgerEntry, TestReport

#: How many runners (showdown) or approaches (any-percent) one run may fan out to.
MIN_RUNNERS, MAX_RUNNERS = 2, 5
#: A slug names a feature or an approach in branch names and paths: lowercase letters, digits and dashes.
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
#: Two implementations at least this similar (0-1) are flagged as near-duplicates.
SIMILARITY_FLAG = 0.95
#: Why a parallel run refuses the caller as fixer (the input check and the settings check share it).
CLIENT_FIXER_REFUSED = (
    "roles: fixer 'client' cannot work in parallel runners (each runner would stop and wait for you); "
    "leave the fixer on a model (drop roles.fixer or SPEEDRUN_FIXER=client), or use turbo to fix by hand"
)


def plans_dir(feature: str, mode: str) -> str:
    """Where a run's plans and result.md go, relative to the repo: docs/plans/<feature>/speed-run/<mode>.

    The folder is spelled 'any-percent' (as in the branch names' world), the mode 'any_percent'."""
    return f"docs/plans/{feature}/speed-run/{mode.replace('_', '-')}"


def _check_slug(value: str, what: str) -> str:
    if not SLUG.match(value):
        raise ValueError(
            f"{what} {value[:60]!r} is not a slug; use 1-40 lowercase letters, digits and dashes "
            "(e.g. 'rate-limiter'), starting and ending with a letter or digit"
        )
    return value


class Approach(BaseModel):
    """One approach of an any-percent run, along the design's primary architectural axis."""

    slug: str = Field(description="Short name used in the branch and paths, e.g. 'sqlite' or 'in-memory'.")
    summary: str = Field(description="The approach in one or two sentences.")
    pros: list[str] = Field(default_factory=list, description="What this approach is good at.")
    cons: list[str] = Field(default_factory=list, description="What it costs.")

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str) -> str:
        return _check_slug(value, "approach slug")


#: The seed's table: how many showdown runners a design of each complexity gets.
RUNNERS_BY_COMPLEXITY = {"low": 2, "medium": 3, "high": 4, "very high": 5}


class ComplexityRating(BaseModel):
    """The planner's rating of a design (showdown, runners='auto')."""

    level: Literal["low", "medium", "high", "very high"] = Field(description="How complex the design is to build.")
    reason: str = Field(description="One sentence saying why.")


def _slugify(value: object) -> object:
    # Models write 'In-Memory Cache' or 'event_driven'; make the slug rule's job easy before it checks.
    if not isinstance(value, str):
        return value
    return re.sub(r"[^a-z0-9]+", "-", value.strip().lower()).strip("-")[:40].strip("-")


class ApproachProposal(BaseModel):
    """The planner's approaches for an any-percent run without given ones."""

    axis: str = Field(description="The primary architectural axis the approaches differ along.")
    approaches: list[Approach] = Field(description="2-5 distinct approaches along that axis.")

    @model_validator(mode="before")
    @classmethod
    def _slugs(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("approaches"), list):
            fixed = [{**a, "slug": _slugify(a.get("slug"))} if isinstance(a, dict) else a for a in data["approaches"]]
            data = {**data, "approaches": fixed}
        return data


class ParallelInput(BaseModel):
    """What both parallel workflows need."""

    design: str = Field(description="The design: its text, or the path of a file holding it (inside repo).")
    repo: str = Field(".", description="The git repository to work in; default the working directory.")
    feature: str = Field(description="A slug for the feature; names branches and docs/plans/<feature>/.")
    test_command: str = Field("pytest -q", description="Shell command that runs the tests in each worktree.")
    scenario_command: str | None = Field(
        None, description="Optional second gate: a shell command (e.g. scenario tests) every survivor must pass."
    )
    setup_command: str | None = Field(
        None, description="Optional command run once in each worktree before its tests, e.g. 'uv sync'."
    )
    max_fix_cycles: int = Field(3, ge=0, le=20, description="Surgical fix rounds per runner before giving up.")
    promote: Literal["branch", "merge", "ask"] = Field(
        "branch",
        description="branch: keep the winner's branch; merge: merge it into the current branch; "
        "ask: let the user pick (MCP elicitation), else return the choice.",
    )
    roles: dict[str, str] = Field(default_factory=dict, description="Per-role overrides, as in turbo.")
    include_uncommitted: bool = Field(
        False, description="Start the worktrees from a snapshot of uncommitted changes instead of refusing them."
    )
    test_timeout_s: float = Field(300, gt=0, description="Wall-clock limit for one test run.")

    @field_validator("feature")
    @classmethod
    def _feature(cls, value: str) -> str:
        return _check_slug(value, "feature")

    @field_validator("roles")
    @classmethod
    def _no_client_fixer(cls, value: dict[str, str]) -> dict[str, str]:
        if str(value.get("fixer", "")).strip().lower() == "client":
            raise ValueError(CLIENT_FIXER_REFUSED)
        return value

    @field_validator("test_command")
    @classmethod
    def _test_command(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("test_command is empty; give the command that runs the tests, e.g. 'pytest -q'")
        return value


class ShowdownInput(ParallelInput):
    """A showdown: 2-5 runners build the same design, each from its own plan."""

    runners: int | Literal["auto"] = Field(
        "auto", description="How many runners (2-5), or 'auto' to let the planner rate the design's complexity."
    )

    @field_validator("runners")
    @classmethod
    def _runners(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not MIN_RUNNERS <= value <= MAX_RUNNERS:
            raise ValueError(f"runners must be {MIN_RUNNERS}-{MAX_RUNNERS} or 'auto'; got {value}")
        return value


class AnyPercentInput(ParallelInput):
    """An any-percent: 2-5 variants, each built along a different approach."""

    approaches: list[Approach] = Field(
        default_factory=list, description="The approaches to build; empty lets the planner propose 2-5."
    )

    @model_validator(mode="after")
    def _approaches(self) -> AnyPercentInput:
        if self.approaches and not MIN_RUNNERS <= len(self.approaches) <= MAX_RUNNERS:
            raise ValueError(
                f"give {MIN_RUNNERS}-{MAX_RUNNERS} approaches (or none, to let the planner propose them); "
                f"got {len(self.approaches)}"
            )
        slugs = [a.slug for a in self.approaches]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"approach slugs must differ; got {slugs}")
        return self


class Worktree(BaseModel):
    """One runner's git worktree and branch."""

    name: str = Field(description="runner-N (showdown) or variant-<slug> (any-percent).")
    path: str = Field(description="Absolute path: <repo>/.worktrees/speed-run-<name>.")
    branch: str = Field(description="<feature>/speed-run/<name>.")


class RunnerTask(BaseModel):
    """What one fan-out branch gets (the Send payload)."""

    index: int = Field(description="1-based runner number; SPEEDRUN_RUNNER in its test environment.")
    worktree: Worktree
    base: str = Field(description="The commit every worktree starts from.")
    design: str = Field(description="The design text, byte-identical for every runner (prompt-cache prefix).")
    approach: Approach | None = Field(None, description="Any-percent: the approach this variant follows.")
    framing: str = Field("", description="Showdown: the angle this runner's planner takes, so plans differ.")
    temperature: float = Field(0.7, description="The planner's temperature for this runner.")
    plan_path: str = Field(description="docs/plans/<feature>/speed-run/<mode>/<name>/plan.md, repo-relative.")
    settings: ParallelInput = Field(description="The run's input (commands, fix cycles, roles).")


class RunnerResult(BaseModel):
    """What one runner produced; a failed runner is recorded, never raised."""

    name: str
    index: int
    branch: str
    worktree: str
    status: Literal["passed", "failed_tests", "failed_scenario", "error"] = Field(
        description="passed: tests (and scenario) green; error: the runner itself failed (see error)."
    )
    error: str | None = Field(None, description="Why the runner failed, one line, when status is error.")
    approach: str = Field("", description="The approach slug (any-percent) or the framing (showdown).")
    plan_summary: str = Field("", description="The plan's first lines, trimmed.")
    plan_path: str = ""
    tests: TestReport | None = None
    scenario: TestReport | None = None
    fix_cycles: int = 0
    ledger: list[LedgerEntry] = Field(default_factory=list, description="Every model call this runner made.")
    files_changed: list[str] = Field(default_factory=list, description="Paths changed against the base commit.")
    lines: int = Field(0, description="Lines of the files changed.")
    commit: str | None = Field(None, description="The commit holding the runner's work on its branch.")
    report_path: str | None = Field(
        None, description="The runner's full turbo report: SPEEDRUN_HOME/runs/<run_id>/<name>/report.json."
    )
    wall_ms: int = 0


class SimilarityFlag(BaseModel):
    """A pair of implementations that are near-duplicates."""

    first: str
    second: str
    ratio: float = Field(description="Similarity 0-1 of the two implementations' changed files.")


class RunnerRow(BaseModel):
    """One row of the compact runners table."""

    name: str
    status: str
    tests: str = Field("", description="e.g. '17 passed' or '3 failed, 14 passed'.")
    scenario: str = ""
    fix_cycles: int = 0
    llm_calls: int = 0
    lines: int = 0
    wall_s: float = 0


class ParallelResult(BaseModel):
    """The compact result of a showdown or any-percent run."""

    mode: Literal["showdown", "any_percent"]
    status: Literal["promoted", "awaiting_choice", "no_survivor", "failed"]
    winner: str | None = None
    winner_branch: str | None = None
    why: str = Field("", description="One or two sentences from the judge.")
    promotion: str = Field(
        "", description="What promotion did, in one line: the branch kept or merged, the branches left to choose from."
    )
    runners: list[RunnerRow] = Field(default_factory=list)
    similar: list[SimilarityFlag] = Field(default_factory=list)
    flip_rate: float | None = Field(None, description="Share of judge answers that flipped when the order was swapped.")
    result_path: str = Field("", description="docs/plans/<feature>/speed-run/<mode>/result.md.")
    worksheet_path: str | None = None
    caller_tokens_saved: int = 0
    warnings: list[str] = Field(default_factory=list)


class ParallelProgress(BaseModel):
    """What a showdown or any-percent graph tracks between nodes, beside its input."""

    design_text: str = Field("", description="The design, read from its file when a path was given.")
    count: int = Field(0, description="How many runners fan out.")
    base: str = Field("", description="The commit the worktrees start from.")
    repo_root: str = Field("", description="The repository's top-level directory.")
    worktrees: list[Worktree] = Field(default_factory=list)
    results: Annotated[list[RunnerResult], operator.add] = Field(default_factory=list)
    survivors: list[str] = Field(default_factory=list, description="Runners that passed every gate.")
    similar: list[SimilarityFlag] = Field(default_factory=list)
    judged: JudgeResult | None = None
    ledger: Annotated[list[LedgerEntry], operator.add] = Field(default_factory=list)
    warnings: Annotated[list[str], operator.add] = Field(default_factory=list)
    result: ParallelResult | None = None


class ShowdownState(ShowdownInput, ParallelProgress):
    """Everything the showdown graph tracks."""

    mode: Literal["showdown"] = "showdown"


class AnyPercentState(AnyPercentInput, ParallelProgress):
    """Everything the any-percent graph tracks; `approaches` is filled by the planner when not given."""

    mode: Literal["any_percent"] = "any_percent"


class ParallelOutput(BaseModel):
    """What a showdown or any-percent run returns."""

    result: ParallelResult | None = None
