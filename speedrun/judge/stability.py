"""Position swap: merge the judge's answers from two opposite orders (a flipped item is not met) and rate stability.

Judge models favour whatever they read first (or last). The score node therefore asks twice, with the
implementations in the blinded order and in its reverse, and this module owns the rules that turn the two answers
into one: an item answered differently is not met, and the size estimate, the justification and the bad names take
the more conservative of the two. No I/O and no model calls happen here.
"""

from __future__ import annotations

from speedrun.state.judge import ChecklistAnswer, Checklists, Scorecard, VerdictStability

__all__ = ["reconcile", "stability_line", "verdict_stability"]

_CHECKLISTS = ("fitness", "robustness", "maintainability")


def _yes_no(answer: bool) -> str:
    return "yes" if answer else "no"


def _merge_answer(first: ChecklistAnswer, second: ChecklistAnswer) -> ChecklistAnswer:
    """One item from both orders: the shared answer, or not met with both answers as evidence when it flipped."""
    if first.item != second.item:
        raise ValueError(f"the two orders answered different items: {first.item!r} and {second.item!r}")
    if first.answer == second.answer:
        return first.model_copy(update={"flipped": False})
    return ChecklistAnswer(
        item=first.item,
        answer=False,
        evidence=(
            f"flipped when the order was reversed, so not met: {_yes_no(first.answer)} in the blinded order "
            f"({first.evidence}); {_yes_no(second.answer)} in the reversed order ({second.evidence})"
        ),
        flipped=True,
    )


def _complexity(first: Checklists, second: Checklists) -> tuple[bool, str]:
    """Justified only when both orders say so; the evidence of the order that said no when they disagree."""
    if first.complexity_justified == second.complexity_justified:
        return first.complexity_justified, first.complexity_evidence
    doubter = second if first.complexity_justified else first
    return False, f"{doubter.complexity_evidence} (the other order found it justified; the stricter answer counts)"


def reconcile(first: Checklists, second: Checklists) -> Checklists:
    """One implementation's answers from the blinded order (`first`) and the reversed order (`second`).

    An item answered differently in the two orders counts as not met and is marked ``flipped``. The more
    conservative of the two is taken elsewhere: the smaller lean-size estimate (a worse complexity ratio), the
    union of the misleading names, and "justified" only when both orders say so. Raises ValueError when the two
    describe different labels or items.
    """
    if first.label != second.label:
        raise ValueError(f"cannot merge answers for label {first.label!r} with answers for {second.label!r}")
    lists = {}
    for name in _CHECKLISTS:
        ours, theirs = getattr(first, name), getattr(second, name)
        if len(ours) != len(theirs):
            raise ValueError(f"{name}: {len(ours)} answers in one order and {len(theirs)} in the other")
        lists[name] = [_merge_answer(a, b) for a, b in zip(ours, theirs, strict=True)]
    justified, evidence = _complexity(first, second)
    return Checklists(
        label=first.label,
        **lists,
        complexity_justified=justified,
        complexity_evidence=evidence,
        estimated_necessary_loc=min(first.estimated_necessary_loc, second.estimated_necessary_loc),
        bad_names=list(dict.fromkeys([*first.bad_names, *second.bad_names])),
        orders=2,
    )


def verdict_stability(cards: list[Scorecard]) -> VerdictStability:
    """Flipped checklist answers over all answers compared, overall and per implementation."""
    checked = [(card.name, card.checklists) for card in cards if card.checklists is not None]
    swapped = [(name, lists) for name, lists in checked if lists.orders == 2]
    if not swapped:
        return VerdictStability(orders=1, answers=0, flipped=0, flip_rate=None, by_implementation={})
    answers = sum(len(lists.answers()) for _name, lists in swapped)
    by_name = {name: lists.flips() for name, lists in swapped}
    flipped = sum(by_name.values())
    return VerdictStability(
        orders=2,
        answers=answers,
        flipped=flipped,
        flip_rate=round(flipped / answers, 3) if answers else 0.0,
        by_implementation=by_name,
    )


def stability_line(stability: VerdictStability) -> str:
    """The worksheet's one-line "Verdict stability" statement."""
    if stability.orders == 1:
        return (
            "Verdict stability: one implementation, so the judge was asked once (there is no order to swap); "
            "no flip rate."
        )
    head = "Verdict stability: the judge was asked twice, with the implementations in opposite orders; "
    if not stability.flipped:
        return head + f"none of the {stability.answers} checklist answers flipped (flip rate 0.0%)."
    per = ", ".join(f"{name} {count}" for name, count in stability.by_implementation.items() if count)
    return (
        head + f"{stability.flipped} of {stability.answers} checklist answers flipped "
        f"(flip rate {stability.flipped / stability.answers:.1%}: {per}). A flipped item counts as not met."
    )
