"""The judge's arithmetic: checklist items, score tables, hard gates and the tiebreak. Pure functions.

The seed names five criteria scored 1-5 (25 points), an 8-item fitness checklist, a 12-item robustness
checklist, a 6-item maintainability checklist, line-count analysis for complexity, violation counting
for readability, and two hard gates: a fitness gap of 2 or more, and any score of 1. Everything finer
than that (the item wording, the bands below, the tiebreak) is ours and lives here, in one place:

* :data:`FITNESS_ITEMS`, :data:`ROBUSTNESS_ITEMS`, :data:`MAINTAINABILITY_ITEMS` are the questions the
  judge model answers yes/no (see :class:`~speedrun.state.judge.Checklists`).
* :data:`SCORE_TABLES` maps each criterion's measured value to a score; :func:`format_score_tables`
  prints it for the worksheet.
* :func:`score` turns a measurement plus checklists into :class:`~speedrun.state.judge.CriterionScores`;
  :func:`build_scorecard` also applies the elimination gate.
* :func:`decide` applies the gates and the tiebreak to all scorecards and explains the verdict.

No I/O and no model calls happen here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from speedrun.state.judge import (
    MAX_SCORE,
    MIN_SCORE,
    ChecklistAnswer,
    Checklists,
    CriterionScores,
    Decision,
    Measurement,
    Scorecard,
)

__all__ = [
    "CRITERIA",
    "FITNESS_GAP",
    "FITNESS_ITEMS",
    "MAINTAINABILITY_ITEMS",
    "ROBUSTNESS_ITEMS",
    "SCORE_TABLES",
    "TIE_MARGIN",
    "Band",
    "ScoreTable",
    "build_scorecard",
    "complexity_ratio",
    "decide",
    "elimination_reasons",
    "format_score_tables",
    "readability_rate",
    "score",
    "tally",
]

# --------------------------------------------------------------------------------------------------
# checklist items (the judge model answers each with yes/no plus evidence)

#: Fitness for purpose: does it do what the design asked? 8 items.
FITNESS_ITEMS: tuple[str, ...] = (
    "Every operation the design requires is implemented.",
    "Inputs are validated the way the design specifies.",
    "Outputs and return types match the design's contract.",
    "The algorithm the design names is the one used.",
    "Every edge case the design names is handled.",
    "Errors are reported the way the design says (types, messages, codes).",
    "The tests exercise the core behaviour, and they pass.",
    "No required feature is stubbed, faked or hard-coded to pass the tests.",
)

#: Robustness and scale: will it hold up? 12 items.
ROBUSTNESS_ITEMS: tuple[str, ...] = (
    "Input is validated at every external boundary (API, CLI, file, network).",
    "Bad input produces a clear error, never an unhandled exception or crash.",
    "Files, sockets, processes and other resources are always closed, also on error paths.",
    "No cache, queue, buffer or collection can grow without bound.",
    "Shared mutable state is protected against concurrent access (or there is none).",
    "Every network, subprocess or other blocking I/O call has a timeout.",
    "No quadratic or worse work on a hot path where n can be large.",
    "No global mutable state.",
    "Behaviour is deterministic: same input, same output (no hidden dependence on time, order or randomness).",
    "No exception is silently swallowed; failures are raised, returned or logged.",
    "Empty input and very large input are both handled safely.",
    "Paths, commands and other untrusted input are handled securely (no traversal, injection or eval).",
)

#: Maintainability: can it evolve? 6 items.
MAINTAINABILITY_ITEMS: tuple[str, ...] = (
    "Each module and function has a single responsibility.",
    "There is no copy-pasted or duplicated logic.",
    "The public API is small, clear and separate from internals.",
    "Configuration (limits, paths, URLs, credentials) is not hard-coded in the logic.",
    "Tests are readable and isolated from each other and from the environment.",
    "A new variant or feature can be added without editing core logic.",
)

_CHECKLISTS: dict[str, tuple[str, ...]] = {
    "fitness": FITNESS_ITEMS,
    "robustness": ROBUSTNESS_ITEMS,
    "maintainability": MAINTAINABILITY_ITEMS,
}

#: The five criteria, in the seed's order.
CRITERIA: tuple[str, ...] = ("fitness", "complexity", "readability", "robustness", "maintainability")

_CRITERION_TITLES = {
    "fitness": "Fitness for purpose",
    "complexity": "Justified complexity",
    "readability": "Readability",
    "robustness": "Robustness & scale",
    "maintainability": "Maintainability",
}

#: Hard gate: a survivor whose fitness is this much below the best survivor's cannot win.
FITNESS_GAP = 2
#: Totals this close to the best total are a tie, settled by the tiebreak.
TIE_MARGIN = 1
_PER_LINES = 100  # readability is measured per this many lines of code

# --------------------------------------------------------------------------------------------------
# score tables


@dataclass(frozen=True)
class Band:
    """One row of a score table: the score given when the measured value meets the bounds.

    ``at_least`` / ``at_most`` are inclusive; None means unbounded. Rows are tried in order, first match wins.
    """

    score: int
    at_least: float | None = None
    at_most: float | None = None

    def matches(self, value: float) -> bool:
        """True when ``value`` lies within this band's bounds."""
        if self.at_least is not None and value < self.at_least:
            return False
        return self.at_most is None or value <= self.at_most


@dataclass(frozen=True)
class ScoreTable:
    """How one criterion's measured value becomes a 1-5 score."""

    criterion: str
    measures: str
    bands: tuple[Band, ...]
    direction: Literal["higher is better", "lower is better"]
    maximum: int | None = None
    note: str = ""

    def lookup(self, value: float) -> int:
        """The score of the first band that ``value`` falls in."""
        for band in self.bands:
            if band.matches(value):
                return band.score
        raise ValueError(f"{self.criterion}: no band for value {value}")  # tables end with a catch-all

    def rows(self) -> list[tuple[str, int]]:
        """(condition text, score) per band, e.g. ('5-6', 3) for counts or ('<= 1.3', 5) for ratios."""
        if self.direction == "lower is better":
            return [
                ("otherwise" if band.at_most is None else f"<= {band.at_most:g}", band.score) for band in self.bands
            ]
        rows: list[tuple[str, int]] = []
        upper = self.maximum
        for band in self.bands:
            lower = 0 if band.at_least is None else int(band.at_least)
            if upper is None:
                text = f"{lower}+"
            else:
                text = str(lower) if lower == upper else f"{lower}-{upper}"
            rows.append((text, band.score))
            upper = lower - 1
        return rows


#: Every criterion's table, in the seed's order. The checklist tables count "yes" answers.
SCORE_TABLES: dict[str, ScoreTable] = {
    "fitness": ScoreTable(
        criterion="fitness",
        measures=f"yes answers out of {len(FITNESS_ITEMS)} fitness items",
        direction="higher is better",
        maximum=len(FITNESS_ITEMS),
        bands=(Band(5, at_least=8), Band(4, at_least=7), Band(3, at_least=5), Band(2, at_least=3), Band(1)),
    ),
    "complexity": ScoreTable(
        criterion="complexity",
        measures="LOC / the judge's estimate of LOC a lean solution needs",
        direction="lower is better",
        bands=(Band(5, at_most=1.3), Band(4, at_most=1.8), Band(3, at_most=2.5), Band(2, at_most=4), Band(1)),
        note="one band better, capped at 5, when the judge finds the extra complexity justified",
    ),
    "readability": ScoreTable(
        criterion="readability",
        measures="(violations + bad names) per 100 LOC outside test files (at least 100 LOC assumed)",
        direction="lower is better",
        bands=(Band(5, at_most=1), Band(4, at_most=3), Band(3, at_most=6), Band(2, at_most=10), Band(1)),
        note="each name the judge lists as misleading counts as one violation; test files are listed apart",
    ),
    "robustness": ScoreTable(
        criterion="robustness",
        measures=f"yes answers out of {len(ROBUSTNESS_ITEMS)} robustness items",
        direction="higher is better",
        maximum=len(ROBUSTNESS_ITEMS),
        bands=(Band(5, at_least=11), Band(4, at_least=9), Band(3, at_least=6), Band(2, at_least=3), Band(1)),
    ),
    "maintainability": ScoreTable(
        criterion="maintainability",
        measures=f"yes answers out of {len(MAINTAINABILITY_ITEMS)} maintainability items",
        direction="higher is better",
        maximum=len(MAINTAINABILITY_ITEMS),
        bands=(Band(5, at_least=6), Band(4, at_least=5), Band(3, at_least=3), Band(2, at_least=2), Band(1)),
    ),
}


def format_score_tables() -> str:
    """The score tables and gates as Markdown, for the judge's worksheet."""
    lines = ["| Criterion | Measured value | Bands (value -> score) |", "|---|---|---|"]
    for name in CRITERIA:
        table = SCORE_TABLES[name]
        bands = "; ".join(f"{condition} -> {points}" for condition, points in table.rows())
        if table.note:
            bands += f" ({table.note})"
        lines.append(f"| {_CRITERION_TITLES[name]} | {table.measures} | {bands} |")
    lines += [
        "",
        "Hard gates: any score of 1 eliminates; among survivors, fitness "
        f"{FITNESS_GAP} or more below the best survivor's loses regardless of total.",
        f"Tiebreak: totals within {TIE_MARGIN} point of the best are a tie, settled by fewer fix cycles, "
        "then fewer model calls, then less generation time, then the higher total, then name order.",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# scoring one implementation


def tally(answers: list[ChecklistAnswer]) -> int:
    """Number of "yes" answers."""
    return sum(1 for answer in answers if answer.answer)


def readability_rate(measurement: Measurement, bad_names: int = 0) -> float:
    """(violations + bad names) per 100 lines of code outside test files.

    Test files count neither way (see :mod:`speedrun.judge.measure`). Code shorter than 100 lines is rated as if
    it had 100: two short names in a 5-line function are two violations, not a rate of 40 per 100 lines.
    """
    code_loc = measurement.loc - measurement.test_loc
    return (len(measurement.violations) + bad_names) * _PER_LINES / max(code_loc, _PER_LINES)


def complexity_ratio(loc: int, estimated_necessary_loc: int) -> float:
    """Actual LOC over the judge's estimate of what a lean solution needs."""
    if estimated_necessary_loc < 1:
        raise ValueError(f"estimated_necessary_loc must be at least 1, got {estimated_necessary_loc}")
    return loc / estimated_necessary_loc


def _check_counts(checklists: Checklists) -> None:
    for name, items in _CHECKLISTS.items():
        answers = getattr(checklists, name)
        if len(answers) != len(items):
            raise ValueError(f"checklists.{name} has {len(answers)} answers; expected {len(items)}")


def score(measurement: Measurement, checklists: Checklists) -> CriterionScores:
    """The five criterion scores of one implementation.

    Raises ValueError when a checklist does not have exactly its item count (the message names the list
    and the expected count), or when ``estimated_necessary_loc`` is below 1.
    """
    _check_counts(checklists)
    ratio = complexity_ratio(measurement.loc, checklists.estimated_necessary_loc)
    complexity = SCORE_TABLES["complexity"].lookup(ratio)
    if checklists.complexity_justified:
        complexity = min(complexity + 1, MAX_SCORE)
    rate = readability_rate(measurement, len(checklists.bad_names))
    return CriterionScores(
        fitness=SCORE_TABLES["fitness"].lookup(tally(checklists.fitness)),
        complexity=complexity,
        readability=SCORE_TABLES["readability"].lookup(rate),
        robustness=SCORE_TABLES["robustness"].lookup(tally(checklists.robustness)),
        maintainability=SCORE_TABLES["maintainability"].lookup(tally(checklists.maintainability)),
    )


def elimination_reasons(scores: CriterionScores) -> list[str]:
    """One reason per criterion scored 1, e.g. 'robustness scored 1'."""
    return [f"{name} scored {MIN_SCORE}" for name, value in scores.as_dict().items() if value <= MIN_SCORE]


def build_scorecard(measurement: Measurement, checklists: Checklists, *, name: str | None = None) -> Scorecard:
    """Score one implementation and apply the elimination gate. ``name`` defaults to the measurement's."""
    scores = score(measurement, checklists)
    reasons = elimination_reasons(scores)
    findings = measurement.violation_counts()
    findings["bad_name"] = len(checklists.bad_names)
    return Scorecard(
        name=name or measurement.name,
        label=checklists.label,
        scores=scores,
        eliminated=bool(reasons),
        elimination_reasons=reasons,
        measurement=measurement,
        checklists=checklists,
        findings_count=findings,
    )


# --------------------------------------------------------------------------------------------------
# deciding between implementations

_TIEBREAKS: tuple[tuple[str, str], ...] = (
    ("fix cycles", "fix_cycles"),
    ("llm calls", "llm_calls"),
    ("generation time", "generation_ms"),
)


def _reasons(card: Scorecard) -> list[str]:
    """The card's own reasons plus any criterion scored 1 (deduplicated, in order)."""
    reasons = list(card.elimination_reasons)
    for reason in elimination_reasons(card.scores):
        if reason not in reasons:
            reasons.append(reason)
    if card.eliminated and not reasons:
        reasons.append("eliminated")
    return reasons


def _tiebreak_key(card: Scorecard) -> tuple[int, int, int, int, str]:
    run = card.measurement
    return (run.fix_cycles, run.llm_calls, run.generation_ms, -card.scores.total, card.name)


def _pick(pool: list[Scorecard]) -> tuple[Scorecard, list[Scorecard]]:
    """The best survivor of ``pool`` under the fitness gap and tiebreak, and who the fitness gap excluded."""
    best_fitness = max(card.scores.fitness for card in pool)
    contenders = [card for card in pool if best_fitness - card.scores.fitness < FITNESS_GAP]
    gapped = [card for card in pool if card not in contenders]
    top_total = max(card.scores.total for card in contenders)
    tied = [card for card in contenders if top_total - card.scores.total <= TIE_MARGIN]
    return min(tied, key=_tiebreak_key), gapped


def _rank(survivors: list[Scorecard]) -> tuple[list[Scorecard], set[str]]:
    """Survivors best first (repeating :func:`_pick` on whoever is left), and the names the fitness gap
    excluded from the first pick."""
    ranked: list[Scorecard] = []
    pool = list(survivors)
    gapped: set[str] = set()
    while pool:
        best, excluded = _pick(pool)
        if not ranked:
            gapped = {card.name for card in excluded}
        ranked.append(best)
        pool.remove(best)
    return ranked, gapped


def _tiebreak_gate(winner: Scorecard, rival: Scorecard) -> str:
    for gate, attribute in _TIEBREAKS:
        if getattr(winner.measurement, attribute) != getattr(rival.measurement, attribute):
            return f"tiebreak: {gate}"
    return "tiebreak: total then name"


def _gate(winner: Scorecard, rival: Scorecard | None, eliminated: dict[str, list[str]], gapped: set[str]) -> str | None:
    """The rule that put ``winner`` ahead of ``rival`` (the other card with the highest total).

    None when there is no rival or the winner's total beats the rival's by more than :data:`TIE_MARGIN`:
    then no gate was needed, whatever else happened to the rival.
    """
    if rival is None or winner.scores.total - rival.scores.total > TIE_MARGIN:
        return None
    if rival.name in eliminated:
        return "elimination"
    if rival.name in gapped:
        return "fitness gap"
    return _tiebreak_gate(winner, rival)


def _describe_tiebreak(gate: str, winner: Scorecard, rival: Scorecard) -> str:
    ours, theirs = winner.measurement, rival.measurement
    if gate == "tiebreak: fix cycles":
        return f"it needed fewer fix cycles ({ours.fix_cycles} vs {theirs.fix_cycles})"
    if gate == "tiebreak: llm calls":
        return f"fix cycles were equal and it used fewer model calls ({ours.llm_calls} vs {theirs.llm_calls})"
    if gate == "tiebreak: generation time":
        return (
            f"fix cycles and model calls were equal and it generated faster "
            f"({ours.generation_ms} ms vs {theirs.generation_ms} ms)"
        )
    return "fix cycles, model calls and generation time were all equal, so the higher total and then name order decided"


def _rationale(
    winner: Scorecard,
    rival: Scorecard | None,
    gate: str | None,
    eliminated: dict[str, list[str]],
    gapped: set[str],
    best_fitness: int,
) -> str:
    total = f"{winner.scores.total}/{MAX_SCORE * len(CRITERIA)}"
    head = f"{winner.name} wins with {total} (fitness {winner.scores.fitness})"
    explained: set[str] = set()
    if rival is None:
        text = f"{head}; it was the only implementation."
    elif gate is None:
        text = f"{head}, {winner.scores.total - rival.scores.total} points ahead of {rival.name}."
    elif gate == "elimination":
        text = (
            f"{head}; {rival.name} totalled {rival.scores.total} but was eliminated "
            f"({', '.join(eliminated[rival.name])})."
        )
        explained.add(rival.name)
    elif gate == "fitness gap":
        text = (
            f"{head}; {rival.name} totalled {rival.scores.total} but its fitness ({rival.scores.fitness}) is "
            f"{best_fitness - rival.scores.fitness} below the best ({best_fitness}), which loses outright."
        )
        explained.add(rival.name)
    else:
        text = (
            f"{head}; {rival.name} was within {TIE_MARGIN} point ({rival.scores.total}) and "
            f"{winner.name} won the tiebreak: {_describe_tiebreak(gate, winner, rival)}."
        )
    others = [name for name in eliminated if name not in explained]
    if others:
        text += " Eliminated: " + "; ".join(f"{name} ({', '.join(eliminated[name])})" for name in others) + "."
    gapped_others = sorted(gapped - explained)
    if gapped_others:
        text += f" Lost on the fitness gap (best fitness {best_fitness}): {', '.join(gapped_others)}."
    return text


def _tradeoffs(winner: Scorecard, others: list[Scorecard]) -> list[str]:
    notes: list[str] = []
    for card in others:
        better = [
            f"{name} {value} vs {winner.scores.as_dict()[name]}"
            for name, value in card.scores.as_dict().items()
            if value > winner.scores.as_dict()[name]
        ]
        if better:
            notes.append(f"{card.name} scored higher on " + ", ".join(better) + ".")
        theirs, ours = card.measurement, winner.measurement
        if theirs.fix_cycles < ours.fix_cycles:
            notes.append(f"{card.name} needed fewer fix cycles ({theirs.fix_cycles} vs {ours.fix_cycles}).")
        if 0 < theirs.loc < ours.loc:
            notes.append(f"{card.name} is smaller ({theirs.loc} vs {ours.loc} LOC).")
    return notes


def decide(cards: list[Scorecard]) -> Decision:
    """Apply the hard gates and the tiebreak to every scorecard and name the winner.

    1. A card is eliminated when it is marked so or any criterion scored 1.
    2. Among survivors, one whose fitness is :data:`FITNESS_GAP` or more below the best survivor's loses
       to every card within the gap, whatever the totals.
    3. Among the rest, totals within :data:`TIE_MARGIN` of the best are a tie, settled by fewer fix
       cycles, then fewer model calls, then lower generation time, then the higher total, then name.

    The full ranking repeats the same choice on whoever is left, then lists eliminated cards (by total,
    then name). ``gate_applied`` names the rule that put the winner ahead of the card with the highest
    total among the others. Raises ValueError on an empty list or duplicate names.
    """
    if not cards:
        raise ValueError("decide needs at least one scorecard")
    names = [card.name for card in cards]
    if len(set(names)) != len(names):
        raise ValueError(f"scorecard names must be unique, got {names}")

    eliminated = {card.name: _reasons(card) for card in cards if card.eliminated or elimination_reasons(card.scores)}
    survivors = [card for card in cards if card.name not in eliminated]
    dropped = sorted(
        (card for card in cards if card.name in eliminated), key=lambda card: (-card.scores.total, card.name)
    )

    if not survivors:
        reasons = "; ".join(f"{name} ({', '.join(why)})" for name, why in eliminated.items())
        return Decision(
            winner=None,
            ranking=[card.name for card in dropped],
            gate_applied="elimination",
            rationale=f"No winner: every implementation was eliminated by a hard gate: {reasons}.",
            tradeoffs=[],
        )

    ranked, gapped = _rank(survivors)
    winner = ranked[0]
    others = [card for card in cards if card is not winner]
    order = [card.name for card in ranked + dropped]
    rival = min(others, key=lambda card: (-card.scores.total, order.index(card.name))) if others else None
    gate = _gate(winner, rival, eliminated, gapped)
    return Decision(
        winner=winner.name,
        ranking=order,
        gate_applied=gate,
        rationale=_rationale(
            winner, rival, gate, eliminated, gapped, best_fitness=max(card.scores.fitness for card in survivors)
        ),
        tradeoffs=_tradeoffs(winner, [card for card in ranked[1:] + dropped]),
    )
