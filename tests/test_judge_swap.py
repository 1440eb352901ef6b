"""The judge's position swap: asked in the blinded order and its reverse; an item that flips counts as not met."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from speedrun.config import RunContext, Settings
from speedrun.errors import ProviderError
from speedrun.graphs.judge import graph
from speedrun.judge.scoring import FITNESS_ITEMS, MAINTAINABILITY_ITEMS, ROBUSTNESS_ITEMS, SCORE_TABLES
from speedrun.judge.stability import reconcile
from speedrun.state.judge import ChecklistAnswer, Checklists
from tests.fake_llm import FakeLLM, Reply
from tests.helpers import PYTEST, TEST_CALC, make_settings, set_yes
from tests.schema_answers import follow_schema, request_schema, request_text

ITEMS_PER_IMPLEMENTATION = len(FITNESS_ITEMS) + len(ROBUSTNESS_ITEMS) + len(MAINTAINABILITY_ITEMS)
HEADER = re.compile(r"=== Implementation ([A-E]) ===")
BODIES = {
    "alpha-impl": "def add(first, second):\n    return first + second\n",
    "beta-impl": "def add(first, second):\n    return sum((first, second))\n",
    "gamma-impl": "def add(first, second):\n    total = first\n    total += second\n    return total\n",
}


@pytest.fixture
def settings(fake_llm: FakeLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return make_settings(monkeypatch, fake_llm, SPEEDRUN_HOME=tmp_path / "home")


def _impls(tmp_path: Path, names: list[str]) -> list[dict]:
    impls = []
    for name in names:
        root = tmp_path / name
        root.mkdir(parents=True)
        (root / "calc.py").write_text(BODIES[name])
        (root / "test_calc.py").write_text(TEST_CALC)
        impls.append({"name": name, "path": str(root), "test_command": PYTEST})
    return impls


def _is_review(body: dict) -> bool:
    return "fresh-eyes" in request_text(body)


def _judge_requests(fake_llm: FakeLLM) -> list:
    return [r for r in fake_llm.chat_requests() if not _is_review(r.body)]


def _shown(text: str) -> list[str]:
    """The labels in the order the prompt presents the implementations."""
    return HEADER.findall(text)


def _blocks(text: str) -> dict[str, str]:
    """label -> the text of its implementation block (without the JSON instructions that may follow the last)."""
    parts = HEADER.split(text)
    return {parts[i]: parts[i + 1].split("Answer with ONE JSON object")[0].strip() for i in range(1, len(parts), 2)}


def _label_of(text: str, marker: str) -> str:
    return next(label for label, block in _blocks(text).items() if marker in block)


def _all_yes(body: dict) -> dict:
    """What a schema-following judge answers when it finds every item met (complexity lean and justified)."""
    verdict = follow_schema(request_schema(body))
    for answers in verdict.values():
        set_yes(answers["fitness"], len(FITNESS_ITEMS))
        set_yes(answers["robustness"], len(ROBUSTNESS_ITEMS))
        set_yes(answers["maintainability"], len(MAINTAINABILITY_ITEMS))
        answers.update(complexity_justified=True, complexity_evidence="lean", estimated_necessary_loc=3, bad_names=[])
    return verdict


def _no_findings(body: dict) -> str:
    return json.dumps({"findings": []})


async def _judge(impls: list[dict], settings: Settings, tmp_path: Path) -> dict:
    return await graph.ainvoke(
        {"implementations": impls, "design": "add two integers", "worksheet_dir": str(tmp_path / "ws")},
        context=RunContext(settings),
    )


# --------------------------------------------------------------------------------------------------
# two requests, the second in the opposite order


@pytest.mark.anyio
async def test_the_judge_is_asked_twice_concurrently_the_second_time_in_the_opposite_order(
    fake_llm: FakeLLM, settings: Settings, tmp_path: Path
) -> None:
    def responder(body: dict) -> str | Reply:
        if _is_review(body):
            return _no_findings(body)
        return Reply(content=json.dumps(_all_yes(body)), delay=0.6)  # slow enough to see the two overlap

    fake_llm.responder = responder
    out = await _judge(_impls(tmp_path, ["alpha-impl", "beta-impl", "gamma-impl"]), settings, tmp_path)

    assert len(fake_llm.chat_requests()) == 5  # 3 reviews + 2 judge calls
    first, second = sorted(_judge_requests(fake_llm), key=lambda r: _shown(request_text(r.body)) != ["A", "B", "C"])
    first_text, second_text = request_text(first.body), request_text(second.body)
    assert _shown(first_text) == ["A", "B", "C"]
    assert _shown(second_text) == ["C", "B", "A"]  # reversed, not merely rotated or swapped
    assert "one top-level key each: A, B, C." in first_text and "one top-level key each: C, B, A." in second_text
    assert list(request_schema(second.body)["properties"]) == ["C", "B", "A"]  # answered in the order shown
    # Same labels for the same code: only the presentation order changed.
    assert _blocks(first_text) == _blocks(second_text)
    assert "return sum((first, second))" in _blocks(first_text)[_label_of(second_text, "sum((first, second))")]
    # Concurrent: each request arrived before the other was answered.
    assert second.started < first.finished and first.started < second.finished
    assert out["result"].flip_rate == 0.0
    worksheet = Path(out["result"].worksheet_path).read_text()
    assert (
        f"opposite orders; none of the {3 * ITEMS_PER_IMPLEMENTATION} checklist answers flipped (flip rate 0.0%)."
        in worksheet
    )
    assert out["result"].ledger_calls == 5


# --------------------------------------------------------------------------------------------------
# flips


@pytest.mark.anyio
async def test_an_item_that_flips_with_the_order_is_not_met_and_shows_in_the_flip_rate(
    fake_llm: FakeLLM, settings: Settings, tmp_path: Path
) -> None:
    """A judge with a primacy bias on one borderline item: F5 is met for beta only while beta is shown first."""
    edge_cases = FITNESS_ITEMS[4]

    def responder(body: dict) -> str:
        if _is_review(body):
            return _no_findings(body)
        text = request_text(body)
        verdict = _all_yes(body)
        beta = _label_of(text, "sum((first, second))")
        verdict[beta]["fitness"]["F5"] = {
            "answer": _shown(text)[0] == beta,
            "evidence": "handles overflow" if _shown(text)[0] == beta else "no edge case handling seen",
        }
        return json.dumps(verdict)

    fake_llm.responder = responder
    result = (await _judge(_impls(tmp_path, ["alpha-impl", "beta-impl"]), settings, tmp_path))["result"]

    cards = {card.name: card for card in result.scorecards}
    assert cards["alpha-impl"].scores.fitness == 5
    assert cards["beta-impl"].scores.fitness == 4  # 7 of 8: the flipped item is not met
    assert (cards["alpha-impl"].flips, cards["beta-impl"].flips) == (0, 1)
    answers = 2 * ITEMS_PER_IMPLEMENTATION
    assert result.flip_rate == round(1 / answers, 3)

    worksheet = Path(result.worksheet_path).read_text()
    line = next(line for line in worksheet.splitlines() if line.startswith("Verdict stability:"))
    assert f"1 of {answers} checklist answers flipped" in line and f"{1 / answers:.1%}" in line
    assert line.endswith(f"(flip rate {1 / answers:.1%}: beta-impl 1). A flipped item counts as not met.")
    beta_section = worksheet.split("### beta-impl")[1].split("###")[0]
    assert "**Fitness** (7/8 yes; 1 flipped between the two orders, so not met)" in beta_section
    item_line = next(line for line in beta_section.splitlines() if line.startswith(f"- [ ] {edge_cases}"))
    assert "flipped when the order was reversed" in item_line
    assert "handles overflow" in item_line and "no edge case handling seen" in item_line

    scorecard = json.loads(Path(result.scorecard_path).read_text())
    assert scorecard["verdict_stability"] == {
        "orders": 2,
        "answers": answers,
        "flipped": 1,
        "flip_rate": round(1 / answers, 3),
        "by_implementation": {"alpha-impl": 0, "beta-impl": 1},
    }
    beta_card = next(c for c in scorecard["scorecards"] if c["name"] == "beta-impl")
    flipped = [a["item"] for a in beta_card["checklists"]["fitness"] if a["flipped"]]
    assert flipped == [edge_cases]


@pytest.mark.anyio
async def test_a_judge_that_favours_whatever_it_reads_first_no_longer_picks_the_winner(
    fake_llm: FakeLLM, settings: Settings, tmp_path: Path
) -> None:
    """Both implementations are equally good; the judge marks three fitness items unmet for whichever it reads
    second. Asked once, that bias alone decided the winner by the fitness gap; asked both ways, it cancels out."""

    def responder(body: dict) -> str:
        if _is_review(body):
            return _no_findings(body)
        verdict = _all_yes(body)
        for label in _shown(request_text(body))[1:]:
            set_yes(verdict[label]["fitness"], len(FITNESS_ITEMS) - 3)
        return json.dumps(verdict)

    fake_llm.responder = responder
    result = (await _judge(_impls(tmp_path, ["alpha-impl", "beta-impl"]), settings, tmp_path))["result"]

    fitness = {card.name: card.scores.fitness for card in result.scorecards}
    assert fitness["alpha-impl"] == fitness["beta-impl"] == 3  # 5 of 8 for both: the three flipped items are unmet
    assert result.decision.gate_applied != "fitness gap"
    assert [card.flips for card in result.scorecards] == [3, 3]
    assert result.flip_rate == round(6 / (2 * ITEMS_PER_IMPLEMENTATION), 3)


@pytest.mark.anyio
async def test_the_size_estimate_names_and_justification_take_the_stricter_order(
    fake_llm: FakeLLM, settings: Settings, tmp_path: Path
) -> None:
    def responder(body: dict) -> str:
        if _is_review(body):
            return _no_findings(body)
        text = request_text(body)
        verdict = _all_yes(body)
        reversed_order = _shown(text)[0] != "A"
        for answers in verdict.values():
            answers.update(
                estimated_necessary_loc=1 if reversed_order else 2,
                bad_names=["data2"] if reversed_order else ["tmp", "data2"],
                complexity_justified=not reversed_order,
                complexity_evidence="extra loop for nothing" if reversed_order else "lean",
            )
        return json.dumps(verdict)

    fake_llm.responder = responder
    result = (await _judge(_impls(tmp_path, ["alpha-impl", "gamma-impl"]), settings, tmp_path))["result"]

    scorecard = json.loads(Path(result.scorecard_path).read_text())
    gamma = next(c for c in scorecard["scorecards"] if c["name"] == "gamma-impl")
    assert gamma["checklists"]["estimated_necessary_loc"] == 1
    assert gamma["checklists"]["bad_names"] == ["tmp", "data2"]
    assert gamma["checklists"]["complexity_justified"] is False
    assert gamma["checklists"]["complexity_evidence"].startswith("extra loop for nothing")
    assert gamma["findings_count"]["bad_name"] == 2
    # The smaller estimate gives the worse ratio, and no 'justified' bonus; the lenient order would score higher.
    loc = gamma["measurement"]["loc"]
    strict = SCORE_TABLES["complexity"].lookup(loc / 1)
    assert gamma["scores"]["complexity"] == strict < min(SCORE_TABLES["complexity"].lookup(loc / 2) + 1, 5)
    assert result.flip_rate == 0.0  # these are estimates, not checklist answers: they never count as flips


# --------------------------------------------------------------------------------------------------
# one implementation, and failures


@pytest.mark.anyio
async def test_one_implementation_is_judged_with_one_call_and_the_worksheet_says_so(
    fake_llm: FakeLLM, settings: Settings, tmp_path: Path
) -> None:
    fake_llm.responder = lambda body: _no_findings(body) if _is_review(body) else json.dumps(_all_yes(body))
    result = (await _judge(_impls(tmp_path, ["alpha-impl"]), settings, tmp_path))["result"]

    assert len(_judge_requests(fake_llm)) == 1
    assert result.flip_rate is None and result.scorecards[0].flips is None
    worksheet = Path(result.worksheet_path).read_text()
    assert "Verdict stability: one implementation, so the judge was asked once" in worksheet
    assert json.loads(Path(result.scorecard_path).read_text())["verdict_stability"]["orders"] == 1


@pytest.mark.anyio
async def test_when_one_order_gives_up_the_other_call_is_abandoned_and_nothing_is_written(
    fake_llm: FakeLLM, settings: Settings, tmp_path: Path
) -> None:
    def responder(body: dict) -> str | Reply:
        if _is_review(body):
            return _no_findings(body)
        if _shown(request_text(body))[0] == "A":
            return Reply(content=json.dumps(_all_yes(body)), delay=20)  # the blinded order hangs
        return "Sure! Here is my verdict: everything looks great."  # the reversed order never answers in JSON

    fake_llm.responder = responder
    started = time.monotonic()
    with pytest.raises(ProviderError, match="malformed Verdict twice"):
        await _judge(_impls(tmp_path, ["alpha-impl", "beta-impl"]), settings, tmp_path)
    assert time.monotonic() - started < 15, "the hanging order's call was waited for"
    assert not (tmp_path / "ws").exists()


# --------------------------------------------------------------------------------------------------
# the merge rule on its own


def _lists(label: str, fitness_yes: int, evidence: str = "seen") -> Checklists:
    def answers(items: tuple[str, ...], yes: int) -> list[ChecklistAnswer]:
        return [ChecklistAnswer(item=item, answer=i < yes, evidence=evidence) for i, item in enumerate(items)]

    return Checklists(
        label=label,
        fitness=answers(FITNESS_ITEMS, fitness_yes),
        robustness=answers(ROBUSTNESS_ITEMS, len(ROBUSTNESS_ITEMS)),
        maintainability=answers(MAINTAINABILITY_ITEMS, len(MAINTAINABILITY_ITEMS)),
        complexity_justified=True,
        complexity_evidence="lean",
        estimated_necessary_loc=10,
        bad_names=[],
    )


def test_agreeing_answers_keep_their_evidence_and_disagreeing_ones_are_not_met_either_way() -> None:
    blinded, reversed_order = _lists("B", 8, "first look"), _lists("B", 6, "second look")
    merged = reconcile(blinded, reversed_order)
    assert [a.answer for a in merged.fitness] == [True] * 6 + [False, False]
    assert [a.flipped for a in merged.fitness] == [False] * 6 + [True, True]
    assert merged.fitness[0].evidence == "first look"
    assert "yes in the blinded order (first look); no in the reversed order (second look)" in merged.fitness[7].evidence
    assert merged.orders == 2 and merged.flips() == 2
    # The other direction (no first, yes reversed) is just as unmet.
    assert [a.answer for a in reconcile(reversed_order, blinded).fitness][6:] == [False, False]


def test_answers_for_different_labels_are_never_merged() -> None:
    with pytest.raises(ValueError, match="label 'A'.*'B'"):
        reconcile(_lists("A", 8), _lists("B", 8))
