"""State and records of the judge graph: inputs, fresh-eyes findings, the verdict the LLM gives, the result."""

from __future__ import annotations

import operator
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from speedrun.state.judge import Checklists, Decision, Measurement, Scorecard
from speedrun.state.records import LedgerEntry, TestReport


class RunMetrics(BaseModel):
    """Speed-run metrics of one implementation, from its runner's ledger."""

    llm_calls: int = Field(0, ge=0, description="Hosted model calls spent on it.")
    fix_cycles: int = Field(0, ge=0, description="Surgical fix cycles it needed.")
    generation_ms: int = Field(0, ge=0, description="Milliseconds spent generating and fixing.")


class Implementation(BaseModel):
    """One implementation to judge."""

    name: str = Field(description="Its name (runner or variant id); never shown to the judge model.")
    path: str = Field(description="Directory holding it.")
    test_command: str | None = Field(None, description="Run to get a test report when none is given.")
    test_report: TestReport | None = Field(None, description="Its last test report, if already known.")
    metrics: RunMetrics | None = Field(None, description="Calls, fix cycles and generation time, if known.")


class Finding(BaseModel):
    """One fresh-eyes review finding."""

    severity: Literal["critical", "major", "minor"] = Field(description="critical: wrong or unsafe; major: likely "
                                                                      "bug or real risk; minor: polish.")
    category: Literal["security", "logic", "edge case", "performance", "maintainability"] = Field(
        description="What kind of problem it is.")
    file: str = Field(description="File path as shown in the excerpt.")
    line: int = Field(description="Line number as shown in the excerpt (0 when it concerns the whole file).")
    message: str = Field(description="The problem and its consequence, in one or two sentences.")


class Review(BaseModel):
    """The reviewer's structured answer for one implementation."""

    findings: list[Finding] = Field(description="Problems found; empty when none.")


class ImplementationReview(BaseModel):
    """Findings attached to an implementation's name (names stay out of prompts)."""

    name: str
    findings: list[Finding] = Field(default_factory=list)


class Verdict(BaseModel):
    """The judge model's structured answer: one set of checklists per blinded label."""

    implementations: list[Checklists] = Field(description="One entry per implementation label shown, each with "
                                                          "every checklist answered in order.")


class JudgeInput(BaseModel):
    """What the judge needs."""

    implementations: list[Implementation] = Field(min_length=1, max_length=5,
                                                  description="The implementations to compare (1–5).")
    design: str = Field(description="The design or plan they implement.")
    mode: Literal["showdown", "any_percent"] = Field("showdown", description="showdown: same design; any_percent: "
                                                                           "different approaches.")
    worksheet_dir: str | None = Field(None, description="Where to write the worksheet; default under SPEEDRUN_HOME.")


class JudgeResult(BaseModel):
    """The compact verdict a caller sees."""

    mode: str
    winner: str | None
    decision: Decision
    scorecards: list[dict] = Field(description="Per implementation: scores, total, elimination, metrics, findings.")
    worksheet_path: str
    scorecard_path: str
    ledger_calls: int = 0


class JudgeState(JudgeInput):
    """Everything the judge graph tracks."""

    measurements: Annotated[list[Measurement], operator.add] = Field(default_factory=list)
    reviews: Annotated[list[ImplementationReview], operator.add] = Field(default_factory=list)
    cards: list[Scorecard] = Field(default_factory=list)
    decision: Decision | None = None
    ledger: Annotated[list[LedgerEntry], operator.add] = Field(default_factory=list)
    result: JudgeResult | None = None


class JudgeOutput(BaseModel):
    """What the judge graph returns."""

    result: JudgeResult | None = None


class MeasureTask(BaseModel):
    """Send payload: measure one implementation."""

    impl: Implementation


class ReviewTask(BaseModel):
    """Send payload: review one implementation under its blinded label."""

    impl: Implementation
    label: str
    design: str
