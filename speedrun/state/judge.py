"""Records of the judge: what code measured, what the LLM answered, the scores and the decision.

The judge splits its work three ways:

* :class:`Measurement` is produced deterministically by :func:`speedrun.measure.measure_tree`
  (lines of code, readability violations) and completed by the caller (test report, model calls,
  fix cycles, generation time).
* :class:`Checklists` holds what the LLM answered: yes/no answers with evidence for the fixed
  checklist items in :mod:`speedrun.scoring`, plus an estimate of how many lines a lean solution needs
  and a list of misleading names. The model answers through a schema built per run
  (:func:`speedrun.judging.verdict_model`, one required property per label and per item); the answers
  are then turned into this record.
* :class:`CriterionScores`, :class:`Scorecard` and :class:`Decision` are computed by
  :mod:`speedrun.scoring` from the two above; no model decides a score or a winner.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from speedrun.state.records import TestReport

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
    "Violation",
    "ViolationKind",
]

ViolationKind = Literal["long_function", "deep_nesting", "single_letter_name", "magic_number"]

#: Every violation kind, in report order.
VIOLATION_KINDS: tuple[str, ...] = ("long_function", "deep_nesting", "single_letter_name", "magic_number")


class Violation(BaseModel):
    """One readability rule broken at one place."""

    kind: ViolationKind = Field(description="Which rule: long_function, deep_nesting, single_letter_name or "
                                            "magic_number.")
    file: str = Field(description="Path relative to the measured root, with forward slashes.")
    line: int = Field(description="1-based line the violation points at (the def, the block or the literal).")
    detail: str = Field(description="Short human explanation, e.g. 'parse spans 63 lines (limit 50)'.")


class Measurement(BaseModel):
    """What code measured about one implementation, plus run facts the caller fills in."""

    name: str = Field(description="Implementation name (runner or variant id).")
    loc: int = Field(description="Lines of code: lines that are neither blank nor comments (Python docstrings "
                                 "are not code either).")
    files: int = Field(description="Number of source files measured (recognised languages only).")
    languages: list[str] = Field(description="Languages found, sorted, e.g. ['JavaScript', 'Python'].")
    loc_by_language: dict[str, int] = Field(default_factory=dict, description="LOC split per language.")
    test_loc: int = Field(0, description="The part of `loc` that is in test files.")
    violations: list[Violation] = Field(description="Readability violations outside test files, ordered by file "
                                                    "then line; these count toward the readability score.")
    test_violations: list[Violation] = Field(default_factory=list,
                                             description="Readability violations in test files, listed apart: "
                                                         "tests are often shipped with the task, so they are "
                                                         "not scored.")
    counted: str = Field(description="Human text stating what was counted per language and how, including files "
                                     "that could not be parsed.")
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


class Checklists(BaseModel):
    """The judge model's structured answers for ONE implementation. Every field is required."""

    label: str = Field(description="The neutral label the implementation was shown under, e.g. 'A'.")
    fitness: list[ChecklistAnswer] = Field(description="Answers to the 8 fitness-for-purpose items, in order.")
    robustness: list[ChecklistAnswer] = Field(description="Answers to the 12 robustness-and-scale items, in order.")
    maintainability: list[ChecklistAnswer] = Field(description="Answers to the 6 maintainability items, in order.")
    complexity_justified: bool = Field(description="True when the extra size beyond a lean solution buys something "
                                                   "the design asks for.")
    complexity_evidence: str = Field(description="One or two sentences on what the extra code is for, or what is "
                                                 "superfluous.")
    estimated_necessary_loc: int = Field(description="Estimated lines of code (no blanks or comments) that a lean, "
                                                     "complete solution of the design needs; at least 1.")
    bad_names: list[str] = Field(description="Identifiers whose names mislead or say nothing (e.g. 'data2', "
                                             "'do_stuff'); empty when none.")


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
    elimination_reasons: list[str] = Field(default_factory=list,
                                           description="Why it was eliminated, e.g. 'robustness scored 1'.")
    measurement: Measurement = Field(description="What code measured.")
    checklists: Checklists | None = Field(None, description="The judge model's answers; None if it gave none.")
    findings_count: dict[str, int] = Field(default_factory=dict,
                                           description="Deterministic findings per kind: the violation kinds plus "
                                                       "'bad_name'.")


class Decision(BaseModel):
    """The judge's verdict over all scorecards."""

    winner: str | None = Field(description="Winning implementation name; None when every one was eliminated.")
    ranking: list[str] = Field(description="All implementation names, best first; eliminated ones last.")
    gate_applied: str | None = Field(
        description="The rule that put the winner ahead of the rival with the highest total: 'elimination', "
                    "'fitness gap', 'tiebreak: fix cycles', 'tiebreak: llm calls', 'tiebreak: generation time', "
                    "'tiebreak: total then name'; None when the winner simply had the best total by 2 or more.")
    rationale: str = Field(description="One or two sentences explaining the verdict.")
    tradeoffs: list[str] = Field(default_factory=list,
                                 description="What the other implementations did better than the winner.")
