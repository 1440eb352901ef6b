"""The judge's arithmetic: score tables, score(), the hard gates and the tiebreak in decide()."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from speedrun.judge.scoring import (
    FITNESS_ITEMS,
    MAINTAINABILITY_ITEMS,
    ROBUSTNESS_ITEMS,
    SCORE_TABLES,
    build_scorecard,
    decide,
    format_score_tables,
    score,
    tally,
)
from speedrun.state.judge import (
    ChecklistAnswer,
    Checklists,
    CriterionScores,
    Measurement,
    Scorecard,
    Violation,
)

# --------------------------------------------------------------------------------------------------
# builders


def _answers(items: tuple[str, ...], yes: int) -> list[ChecklistAnswer]:
    return [ChecklistAnswer(item=item, answer=index < yes, evidence="seen") for index, item in enumerate(items)]


def _checklists(
    fitness: int = 8,
    robustness: int = 12,
    maintainability: int = 6,
    *,
    estimate: int = 100,
    justified: bool = False,
    bad_names: list[str] | None = None,
) -> Checklists:
    return Checklists(
        label="A",
        fitness=_answers(FITNESS_ITEMS, fitness),
        robustness=_answers(ROBUSTNESS_ITEMS, robustness),
        maintainability=_answers(MAINTAINABILITY_ITEMS, maintainability),
        complexity_justified=justified,
        complexity_evidence="n/a",
        estimated_necessary_loc=estimate,
        bad_names=bad_names or [],
    )


def _measurement(
    loc: int = 100,
    violations: int = 0,
    *,
    name: str = "impl",
    fix_cycles: int = 0,
    llm_calls: int = 0,
    generation_ms: int = 0,
) -> Measurement:
    return Measurement(
        name=name,
        loc=loc,
        files=1,
        languages=["Python"],
        violations=[
            Violation(kind="magic_number", file="a.py", line=n + 1, detail="literal 7") for n in range(violations)
        ],
        counted="Python",
        fix_cycles=fix_cycles,
        llm_calls=llm_calls,
        generation_ms=generation_ms,
    )


def _card(
    name: str,
    scores: tuple[int, int, int, int, int],
    *,
    fix: int = 0,
    calls: int = 0,
    ms: int = 0,
    eliminated: bool = False,
) -> Scorecard:
    fitness, complexity, readability, robustness, maintainability = scores
    return Scorecard(
        name=name,
        label=name,
        scores=CriterionScores(
            fitness=fitness,
            complexity=complexity,
            readability=readability,
            robustness=robustness,
            maintainability=maintainability,
        ),
        eliminated=eliminated,
        elimination_reasons=["tests fail"] if eliminated else [],
        measurement=_measurement(name=name, fix_cycles=fix, llm_calls=calls, generation_ms=ms),
        checklists=None,
    )


# --------------------------------------------------------------------------------------------------
# tables


@pytest.mark.parametrize(
    ("criterion", "expected"),
    [
        ("fitness", [1, 1, 1, 2, 2, 3, 3, 4, 5]),
        ("robustness", [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5, 5]),
        ("maintainability", [1, 1, 2, 3, 3, 4, 5]),
    ],
)
def test_checklist_tables(criterion: str, expected: list[int]) -> None:
    assert [SCORE_TABLES[criterion].lookup(yes) for yes in range(len(expected))] == expected


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(0, 5), (1, 5), (1.01, 4), (3, 4), (3.5, 3), (6, 3), (6.1, 2), (10, 2), (10.5, 1)],
)
def test_readability_table(rate: float, expected: int) -> None:
    assert SCORE_TABLES["readability"].lookup(rate) == expected


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.5, 5), (1.3, 5), (1.31, 4), (1.8, 4), (1.81, 3), (2.5, 3), (2.51, 2), (4, 2), (4.01, 1)],
)
def test_complexity_table(ratio: float, expected: int) -> None:
    assert SCORE_TABLES["complexity"].lookup(ratio) == expected


def test_item_counts_and_printable_tables() -> None:
    assert (len(FITNESS_ITEMS), len(ROBUSTNESS_ITEMS), len(MAINTAINABILITY_ITEMS)) == (8, 12, 6)
    text = format_score_tables()
    assert "5-6 -> 3" in text and "11-12 -> 5" in text and "<= 1.3 -> 5" in text and "otherwise -> 1" in text
    assert SCORE_TABLES["fitness"].rows() == [("8", 5), ("7", 4), ("5-6", 3), ("3-4", 2), ("0-2", 1)]


# --------------------------------------------------------------------------------------------------
# score()


def test_tally() -> None:
    assert tally(_answers(FITNESS_ITEMS, 5)) == 5
    assert tally([]) == 0


def test_score_all_criteria() -> None:
    # 200 LOC, 4 violations + 2 bad names = 3 per 100 LOC -> 4; 200/100 = 2.0 -> 3
    scores = score(
        _measurement(loc=200, violations=4),
        _checklists(fitness=7, robustness=9, maintainability=3, estimate=100, bad_names=["d", "tmp2"]),
    )
    assert scores == CriterionScores(fitness=4, complexity=3, readability=4, robustness=4, maintainability=3)
    assert scores.total == 18


@pytest.mark.parametrize(
    ("loc", "justified", "expected"),
    [(300, False, 2), (300, True, 3), (100, True, 5), (500, False, 1), (500, True, 2)],
)
def test_complexity_leniency(loc: int, justified: bool, expected: int) -> None:
    assert score(_measurement(loc=loc), _checklists(estimate=100, justified=justified)).complexity == expected


def test_empty_tree_scores_readability_five() -> None:
    assert score(_measurement(loc=0), _checklists(estimate=10)).readability == 5


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ((7, 12, 6), "checklists.fitness has 7 answers; expected 8"),
        ((8, 13, 6), "checklists.robustness has 13 answers; expected 12"),
        ((8, 12, 5), "checklists.maintainability has 5 answers; expected 6"),
    ],
)
def test_wrong_item_count_raises(counts: tuple[int, int, int], message: str) -> None:
    fitness, robustness, maintainability = counts
    checklists = _checklists()
    checklists.fitness = [ChecklistAnswer(item="x", answer=True, evidence="e")] * fitness
    checklists.robustness = [ChecklistAnswer(item="x", answer=True, evidence="e")] * robustness
    checklists.maintainability = [ChecklistAnswer(item="x", answer=True, evidence="e")] * maintainability
    with pytest.raises(ValueError, match=message):
        score(_measurement(), checklists)


def test_estimate_below_one_raises() -> None:
    with pytest.raises(ValueError, match="estimated_necessary_loc"):
        score(_measurement(), _checklists(estimate=0))


def test_build_scorecard_eliminates_on_a_one() -> None:
    card = build_scorecard(_measurement(loc=100, violations=2, name="r1"), _checklists(robustness=2, bad_names=["x"]))
    assert card.name == "r1" and card.label == "A"
    assert card.scores.robustness == 1
    assert card.eliminated and card.elimination_reasons == ["robustness scored 1"]
    assert card.findings_count == {
        "long_function": 0,
        "deep_nesting": 0,
        "single_letter_name": 0,
        "magic_number": 2,
        "bad_name": 1,
    }


# --------------------------------------------------------------------------------------------------
# decide()


@dataclass
class Case:
    id: str
    cards: list[Scorecard]
    winner: str | None
    ranking: list[str]
    gate: str | None
    rationale_has: str


CASES = [
    Case(
        "fitness gap",
        [_card("A", (5, 4, 3, 3, 3)), _card("B", (3, 5, 5, 5, 4))],
        "A",
        ["A", "B"],
        "fitness gap",
        "fitness (3) is 2 below the best (5)",
    ),
    Case(
        "elimination by a 1",
        [_card("A", (5, 5, 5, 1, 5)), _card("B", (4, 4, 3, 3, 3))],
        "B",
        ["B", "A"],
        "elimination",
        "robustness scored 1",
    ),
    Case(
        "tie broken by fix cycles",
        [_card("A", (4, 4, 4, 4, 4), fix=2, calls=1), _card("B", (4, 4, 4, 4, 3), fix=1, calls=9)],
        "B",
        ["B", "A"],
        "tiebreak: fix cycles",
        "fewer fix cycles (1 vs 2)",
    ),
    Case(
        "tie broken by llm calls",
        [_card("A", (4, 4, 4, 4, 4), fix=1, calls=5), _card("B", (4, 4, 4, 4, 4), fix=1, calls=3)],
        "B",
        ["B", "A"],
        "tiebreak: llm calls",
        "fewer model calls (3 vs 5)",
    ),
    Case(
        "tie broken by generation time",
        [_card("A", (4, 4, 4, 4, 4), ms=900), _card("B", (4, 4, 4, 4, 4), ms=400)],
        "B",
        ["B", "A"],
        "tiebreak: generation time",
        "400 ms vs 900 ms",
    ),
    Case(
        "still tied: higher total, then name",
        [_card("B", (4, 4, 4, 4, 4)), _card("A", (4, 4, 4, 4, 3)), _card("C", (4, 4, 4, 4, 4))],
        "B",
        ["B", "C", "A"],
        "tiebreak: total then name",
        "name order decided",
    ),
    Case(
        "clear winner by total",
        [_card("A", (5, 5, 4, 4, 4)), _card("B", (4, 4, 4, 4, 3))],
        "A",
        ["A", "B"],
        None,
        "3 points ahead of B",
    ),
    Case(
        "all eliminated",
        [_card("A", (1, 5, 5, 5, 5)), _card("B", (4, 4, 4, 4, 4), eliminated=True)],
        None,
        ["A", "B"],
        "elimination",
        "every implementation was eliminated",
    ),
    Case("single implementation", [_card("A", (3, 3, 3, 3, 3))], "A", ["A"], None, "only implementation"),
    Case(
        "fitness gap among three, then total",
        [_card("A", (5, 3, 3, 3, 3)), _card("B", (4, 4, 4, 4, 4)), _card("C", (3, 5, 5, 5, 5))],
        "B",
        ["B", "A", "C"],
        "fitness gap",
        "C totalled 23 but its fitness (3) is 2 below the best (5)",
    ),
    Case(
        "loser eliminated anyway: no gate needed",
        [_card("A", (5, 5, 5, 5, 5)), _card("B", (1, 4, 4, 4, 4))],
        "A",
        ["A", "B"],
        None,
        "Eliminated: B (fitness scored 1)",
    ),
    Case(
        "loser eliminated within tie margin",
        [_card("A", (4, 4, 4, 4, 4), fix=3), _card("B", (4, 4, 4, 4, 4), eliminated=True)],
        "A",
        ["A", "B"],
        "elimination",
        "B totalled 20 but was eliminated (tests fail)",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_decide(case: Case) -> None:
    decision = decide(case.cards)
    assert decision.winner == case.winner
    assert decision.ranking == case.ranking
    assert decision.gate_applied == case.gate
    assert case.rationale_has in decision.rationale


def test_decide_tradeoffs_name_what_losers_did_better() -> None:
    decision = decide([_card("A", (5, 5, 5, 3, 4), fix=1), _card("B", (4, 3, 3, 5, 4), fix=0)])
    assert decision.winner == "A"
    assert decision.tradeoffs == ["B scored higher on robustness 5 vs 3.", "B needed fewer fix cycles (0 vs 1)."]


def test_decide_lists_other_eliminations_in_rationale() -> None:
    decision = decide(
        [_card("A", (5, 5, 5, 5, 5)), _card("B", (4, 4, 4, 4, 4)), _card("C", (4, 4, 4, 4, 4), eliminated=True)]
    )
    assert decision.winner == "A" and decision.ranking == ["A", "B", "C"]
    assert decision.gate_applied is None
    assert "Eliminated: C (tests fail)" in decision.rationale


def test_decide_rejects_empty_and_duplicates() -> None:
    with pytest.raises(ValueError):
        decide([])
    with pytest.raises(ValueError, match="unique"):
        decide([_card("A", (3, 3, 3, 3, 3)), _card("A", (4, 4, 4, 4, 4))])


def test_short_code_is_rated_per_100_lines_not_per_its_own_length() -> None:
    # Two violations in 5 lines are two violations, not a rate of 40 per 100 lines (which would eliminate).
    assert score(_measurement(loc=5, violations=2), _checklists(estimate=5)).readability == 4
    assert score(_measurement(loc=200, violations=8), _checklists(estimate=200)).readability == 3


def test_readability_counts_neither_the_lines_nor_the_violations_of_test_files() -> None:
    # 400 LOC of which 300 are tests: 6 violations in the 100 lines of code is 6 per 100 (score 3), not 1.5 per
    # 100 (score 4) diluted by test lines; the 40 test-file violations are listed apart and never scored.
    measured = _measurement(loc=400, violations=6).model_copy(
        update={
            "test_loc": 300,
            "test_violations": [
                Violation(
                    kind="single_letter_name", file="tests/test_a.py", line=n + 1, detail="'b' is assigned in test_x"
                )
                for n in range(40)
            ],
        }
    )
    assert score(measured, _checklists(estimate=400)).readability == 3
    card = build_scorecard(measured, _checklists(estimate=400))
    assert not card.eliminated and card.findings_count["single_letter_name"] == 0
