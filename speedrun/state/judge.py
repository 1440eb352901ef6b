"""State and records of the judge: inputs, what code measured, what the LLM answered, scores, decision, result.

The judge splits its work three ways:

* :class:`Measurement` is produced deterministically by :func:`speedrun.judge.measure.measure_tree`
  (lines of code, readability violations) and completed by the caller (test report, model calls,
  fix cycles, generation time).
* :class:`Checklists` holds what the LLM answered: yes/no answers with evidence for the fixed
  checklist items in :mod:`speedrun.judge.scoring`, plus an estimate of how many lines a lean solution needs
  and a list of misleading names. The model answers through a schema built per run
  (:func:`speedrun.judge.panel.verdict_model`, one required property per label and per item); the answers
  are then turned into this record.
* :class:`CriterionScores`, :class:`Scorecard` and :class:`Decision` are computed by
  :mod:`speedrun.judge.scoring` from the two above; no model decides a score or a winner.
"""

from __future__ import annotations

import operator
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from speedrun.state.records import LedgerEntry, TestReport

__all__ = [
    "VIOLATION_KINDS",
    "ChecklistAnswer",
    "Checklists",
    "CriterionScores",
    "Decision",
    "MAX_SCORE",
    "MIN_SCORE",
    "Measurement",
    "Scorecard",
    "VerdictStability",
    "Violation",
    "ViolationKind",
]

ViolationKind = Literal["long_function", "deep_nesting", "single_letter_name", "magic_number"]

#: Every violation kind, in report order.
VIOLATION_KINDS: tuple[str, ...] = ("long_function", "deep_nesting", "single_letter_name", "magic_number")


class Violation(BaseModel):
    """One readability rule broken at one place."""

    kind: ViolationKind = Field(
        description="Which rule: long_function, deep_nesting, single_letter_name or magic_number."
    )
    file: str = Field(description="Path relative to the measured root, with forward slashes.")
    line: int = Field(description="1-based line the violation points at (the def, the block or the literal).")
    detail: str = Field(description="Short human explanation, e.g. 'parse spans 63 lines (limit 50)'.")


class Measurement(BaseModel):
    """What code measured about one implementation, plus run facts the caller fills in."""

    name: str = Field(description="Implementation name (runner or variant id).")
    loc: int = Field(
        description="Lines of code: lines that are neither blank nor comments (Python docstrings are not code either)."
    )
    files: int = Field(description="Number of source files measured (recognised languages only).")
    languages: list[str] = Field(description="Languages found, sorted, e.g. ['JavaScript', 'Python'].")
    loc_by_language: dict[str, int] = Field(default_factory=dict, description="LOC split per language.")
    test_loc: int = Field(0, description="The part of `loc` that is in test files.")
    violations: list[Violation] = Field(
        description="Readability violations outside test files, ordered by file "
        "then line; these count toward the readability score."
    )
    test_violations: list[Violation] = Field(
        default_factory=list,
        description="Readability violations in test files, listed apart: "
        "tests are often shipped with the task, so they are "
        "not scored.",
    )
    counted: str = Field(
        description="Human text stating what was counted per language and how, including files "
        "that could not be parsed."
    )
    tests: TestReport | None = Field(None, description="Final test run of this implementation, when known.")
    llm_calls: int = Field(0, description="Model calls spent producing this implementation (generation + fixes).")
    fix_cycles: int = Field(0, description="Test-fix cycles needed before the final test run.")
    generation_ms: int = Field(0, description="Wall-clock milliseconds spent generating and fixing.")

    def violation_counts(self) -> dict[str, int]:
        """Violations per kind; every kind is present, zero when none."""
        counts = {kind: 0 for kind in VIOLATION_KINDS}
        for violation in self.violations:
            counts[violation.kind] += 1
        return counts


class ChecklistAnswer(BaseModel):
    """One yes/no checklist answer from the judge model."""

    item: str = Field(description="The checklist item, copied verbatim from the question.")
    answer: bool = Field(description="True when the implementation satisfies the item.")
    evidence: str = Field(description="A short quote from the code or a concrete observation supporting the answer.")
    flipped: bool = Field(
        False,
        description="True when the judge answered this item differently with the implementations shown in the "
        "opposite order; a flipped item counts as not met.",
    )


class Checklists(BaseModel):
    """The judge model's structured answers for ONE implementation. Every field is required."""

    label: str = Field(description="The neutral label the implementation was shown under, e.g. 'A'.")
    fitness: list[ChecklistAnswer] = Field(description="Answers to the 8 fitness-for-purpose items, in order.")
    robustness: list[ChecklistAnswer] = Field(description="Answers to the 12 robustness-and-scale items, in order.")
    maintainability: list[ChecklistAnswer] = Field(description="Answers to the 6 maintainability items, in order.")
    complexity_justified: bool = Field(
        description="True when the extra size beyond a lean solution buys something the design asks for."
    )
    complexity_evidence: str = Field(
        description="One or two sentences on what the extra code is for, or what is superfluous."
    )
    estimated_necessary_loc: int = Field(
        description="Estimated lines of code (no blanks or comments) that a lean, "
        "complete solution of the design needs; at least 1."
    )
    bad_names: list[str] = Field(
        description="Identifiers whose names mislead or say nothing (e.g. 'data2', 'do_stuff'); empty when none."
    )
    orders: int = Field(
        1,
        ge=1,
        le=2,
        description="Presentation orders these answers come from: 2 when the judge was also asked with the "
        "implementations in the opposite order (the answers are then merged), 1 when it was asked once.",
    )

    def answers(self) -> list[ChecklistAnswer]:
        """Every checklist answer: fitness, then robustness, then maintainability."""
        return [*self.fitness, *self.robustness, *self.maintainability]

    def flips(self) -> int:
        """How many checklist answers flipped between the two orders (0 when asked once)."""
        return sum(answer.flipped for answer in self.answers())


#: Lowest and highest score of one criterion.
MIN_SCORE = 1
MAX_SCORE = 5


class CriterionScores(BaseModel):
    """The five criteria of the seed, each scored 1-5."""

    fitness: int = Field(ge=MIN_SCORE, le=MAX_SCORE, description="Fitness for purpose: does it do what was asked.")
    complexity: int = Field(ge=MIN_SCORE, le=MAX_SCORE, description="Justified complexity: is its size earned.")
    readability: int = Field(ge=MIN_SCORE, le=MAX_SCORE, description="Readability: violations per 100 LOC.")
    robustness: int = Field(ge=MIN_SCORE, le=MAX_SCORE, description="Robustness and scale: will it hold up.")
    maintainability: int = Field(ge=MIN_SCORE, le=MAX_SCORE, description="Maintainability: can it evolve.")

    @property
    def total(self) -> int:
        """Sum of the five scores, 5-25."""
        return self.fitness + self.complexity + self.readability + self.robustness + self.maintainability

    def as_dict(self) -> dict[str, int]:
        """Criterion name -> score, in the seed's order."""
        return {
            "fitness": self.fitness,
            "complexity": self.complexity,
            "readability": self.readability,
            "robustness": self.robustness,
            "maintainability": self.maintainability,
        }


class Scorecard(BaseModel):
    """Everything the judge knows about one implementation."""

    name: str = Field(description="Implementation name (runner or variant id).")
    label: str = Field(description="Neutral label shown to the judge model, e.g. 'A'.")
    scores: CriterionScores = Field(description="The five criterion scores.")
    eliminated: bool = Field(False, description="True when a hard gate removed it from the running.")
    elimination_reasons: list[str] = Field(
        default_factory=list, description="Why it was eliminated, e.g. 'robustness scored 1'."
    )
    measurement: Measurement = Field(description="What code measured.")
    checklists: Checklists | None = Field(None, description="The judge model's answers; None if it gave none.")
    findings_count: dict[str, int] = Field(
        default_factory=dict, description="Deterministic findings per kind: the violation kinds plus 'bad_name'."
    )


class Decision(BaseModel):
    """The judge's verdict over all scorecards."""

    winner: str | None = Field(description="Winning implementation name; None when every one was eliminated.")
    ranking: list[str] = Field(description="All implementation names, best first; eliminated ones last.")
    gate_applied: str | None = Field(
        description="The rule that put the winner ahead of the rival with the highest total: 'elimination', "
        "'fitness gap', 'tiebreak: fix cycles', 'tiebreak: llm calls', 'tiebreak: generation time', "
        "'tiebreak: total then name'; None when the winner simply had the best total by 2 or more."
    )
    rationale: str = Field(description="One or two sentences explaining the verdict.")
    tradeoffs: list[str] = Field(
        default_factory=list, description="What the other implementations did better than the winner."
    )


class RunMetrics(BaseModel):
    """Speed-run metrics of one implementation, from its runner's ledger."""

    llm_calls: int = Field(0, ge=0, description="Hosted model calls spent on it.")
    fix_cycles: int = Field(0, ge=0, description="Surgical fix cycles it needed.")
    generation_ms: int = Field(0, ge=0, description="Milliseconds spent generating and fixing.")


#: Bounds of the texts in the compact result (the worksheet keeps them whole).
RATIONALE_CHARS, MAX_TRADEOFFS, TRADEOFF_CHARS = 300, 3, 120
#: How many implementations one judgement compares.
MIN_IMPLEMENTATIONS, MAX_IMPLEMENTATIONS = 1, 5
_ECHO = 200  # characters of a bad input echoed back in an error


def _bad(message: str) -> PydanticCustomError:
    """A validation error whose text is the message alone (no pydantic prefix), for the edges to show."""
    return PydanticCustomError("judge_input", message)


class Implementation(BaseModel):
    """One implementation to judge."""

    name: str = Field(
        "",
        description="Its name (runner or variant id), shown in the scorecard but never to the "
        "judge model. Default: the last folder of `path`.",
    )
    path: str = Field(description="Directory holding it.")
    test_command: str | None = Field(None, description="Run to get a test report when none is given.")
    test_report: TestReport | None = Field(None, description="Its last test report, if already known.")
    metrics: RunMetrics | None = Field(None, description="Calls, fix cycles and generation time, if known.")

    @model_validator(mode="before")
    @classmethod
    def _name_from_path(cls, data: Any) -> Any:
        """A missing or blank name is the path's last folder (the path itself for a root such as '/')."""
        if isinstance(data, dict) and not str(data.get("name") or "").strip() and isinstance(data.get("path"), str):
            path = data["path"].strip()
            data = {**data, "name": os.path.basename(os.path.normpath(path)) or path} if path else data
        return data


class Finding(BaseModel):
    """One fresh-eyes review finding."""

    severity: Literal["critical", "major", "minor"] = Field(
        description="critical: wrong or unsafe; major: likely bug or real risk; minor: polish."
    )
    category: Literal["security", "logic", "edge case", "performance", "maintainability"] = Field(
        description="What kind of problem it is."
    )
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


class JudgeFields(BaseModel):
    """The judge's inputs, with the checks that need no file system (shared by the input and the state)."""

    implementations: list[Implementation] = Field(
        description="The implementations to compare (1–5), each with a distinct name.",
        json_schema_extra={"minItems": MIN_IMPLEMENTATIONS, "maxItems": MAX_IMPLEMENTATIONS},
    )
    design: str = Field(
        description="The design or plan they implement (its text); must not be empty.",
        json_schema_extra={"minLength": 1},
    )
    mode: Literal["showdown", "any_percent"] = Field(
        "showdown", description="showdown: same design; any_percent: different approaches."
    )
    worksheet_dir: str | None = Field(None, description="Where to write the worksheet; default under SPEEDRUN_HOME.")

    @model_validator(mode="after")
    def _valid_inputs(self) -> JudgeFields:
        """A non-blank design; 1–5 implementations, each with a path and a name, names distinct ignoring case.

        Case is ignored because the name is the only thing that tells implementations apart in the
        scorecard and the worksheet ('Alpha' and 'alpha' read as one), and it is often a folder name, which
        is one folder on macOS and Windows. (Model-level, so an edge shows each message as it is.)
        """
        if not self.design.strip():
            raise _bad("design is empty: pass the design or plan the implementations were built from (its text)")
        impls = self.implementations
        if not MIN_IMPLEMENTATIONS <= len(impls) <= MAX_IMPLEMENTATIONS:
            raise _bad(
                f"the judge compares {MIN_IMPLEMENTATIONS} to {MAX_IMPLEMENTATIONS} implementations and got "
                f"{len(impls)}; pass between {MIN_IMPLEMENTATIONS} and {MAX_IMPLEMENTATIONS}"
            )
        seen: dict[str, int] = {}
        for number, impl in enumerate(impls, 1):
            if not impl.path.strip():
                raise _bad(f"implementation {number} has an empty path; pass the directory that holds it")
            if not impl.name.strip():
                raise _bad(
                    f"implementation {number} has an empty name; give it a name, or leave the name out "
                    "to use the path's last folder"
                )
            key = impl.name.strip().casefold()
            if key in seen:
                raise _bad(
                    f"implementations {seen[key]} and {number} are both named {impl.name[:_ECHO]!r} "
                    "(a missing name is the path's last folder; case is ignored); give each a distinct "
                    "'name', or judge directories with distinct folder names"
                )
            seen[key] = number
        return self


class JudgeInput(JudgeFields):
    """What the judge needs; validating it also checks that every path is a directory.

    The file-system check lives here and not on the graph state, which LangGraph validates again at every
    step, inside the event loop. Edges call ``parse_input(JudgeInput, ...)`` before they create a run.
    """

    @model_validator(mode="after")
    def _paths_are_directories(self) -> JudgeInput:
        first: dict[Path, str] = {}
        for impl in self.implementations:
            name, shown = impl.name[:80], impl.path[:_ECHO]
            path = Path(impl.path).expanduser()
            if not path.exists():
                raise _bad(
                    f"implementation {name!r}: path {shown!r} does not exist; pass the directory that "
                    "holds the implementation"
                )
            if not path.is_dir():
                raise _bad(
                    f"implementation {name!r}: path {shown!r} is a file, not a directory; pass the "
                    "directory that holds the implementation"
                )
            real = path.resolve()
            if real in first:
                raise _bad(
                    f"implementations {first[real]!r} and {name!r} are the same directory ({shown!r}); "
                    "judge each directory once"
                )
            first[real] = name
        return self


class VerdictStability(BaseModel):
    """How stable the judge's checklist answers were when the implementations were shown in the opposite order."""

    orders: int = Field(
        description="Presentation orders the judge was asked in: 2 (the blinded order and its reverse), "
        "or 1 when there was a single implementation and so no order to swap."
    )
    answers: int = Field(description="Checklist answers compared across the two orders (0 when asked once).")
    flipped: int = Field(description="Answers that differed between the two orders; each counts as not met.")
    flip_rate: float | None = Field(description="flipped / answers, rounded to 3 places; None when asked once.")
    by_implementation: dict[str, int] = Field(description="Flipped answers per implementation name.")


class ScorecardSummary(BaseModel):
    """One implementation's numbers in the compact result; the full scorecard is in scorecard.json."""

    name: str = Field(description="Implementation name.")
    label: str = Field(description="Neutral label it was shown to the judge model under.")
    scores: CriterionScores = Field(description="The five criterion scores, 1-5.")
    total: int = Field(description="Sum of the five scores, 5-25.")
    eliminated: bool = Field(description="True when a hard gate removed it.")
    elimination_reasons: list[str] = Field(description="e.g. 'robustness scored 1' (at most one per criterion).")
    metrics: RunMetrics = Field(description="Model calls, fix cycles and generation time.")
    loc: int = Field(description="Lines of code measured.")
    violations: int = Field(description="Readability violations outside test files (per kind in scorecard.json).")
    findings: int = Field(description="Number of fresh-eyes review findings.")
    flips: int | None = Field(
        None,
        description="Checklist answers that flipped when the order was reversed (counted as not met); "
        "None when the judge was asked once.",
    )


class JudgeResult(BaseModel):
    """The compact verdict a caller sees: numbers, the decision with bounded texts, and where the full record is."""

    mode: str
    winner: str | None
    decision: Decision = Field(
        description=f"Rationale cut at {RATIONALE_CHARS} characters and at most "
        f"{MAX_TRADEOFFS} trade-offs of {TRADEOFF_CHARS}; the worksheet has "
        "the full text."
    )
    scorecards: list[ScorecardSummary] = Field(
        description="Per implementation: scores, total, elimination, metrics, LOC, violation and finding counts."
    )
    worksheet_path: str = Field(description="judge-worksheet.md: the full worksheet, with evidence.")
    scorecard_path: str = Field(description="scorecard.json: every scorecard, answer and finding.")
    ledger_calls: int = Field(0, description="Model calls the judgement made.")
    flip_rate: float | None = Field(
        None,
        description="Share of checklist answers that flipped when the judge was asked again with the "
        "implementations in the opposite order (flipped items count as not met); None when it was asked once.",
    )


class JudgeState(JudgeFields):
    """Everything the judge graph tracks (the inputs without the file-system check, see JudgeInput)."""

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
