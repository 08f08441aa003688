"""Pilot measures on small hand-made records, each expected value worked out by hand."""

from __future__ import annotations

import math
from typing import Any

import pytest

from inference.pilot.measures import (
    DEFAULT_LOCAL_COST,
    EXAMPLE_API_PRICES,
    MEASURES,
    cost_breakdown,
    cost_per_1000,
    document_matches,
    percentile,
    question_scores,
    score,
    tokens_per_second,
)


def record(**fields: Any) -> dict[str, Any]:
    base = {
        "id": 1,
        "question": "q",
        "language": "en",
        "tags": [],
        "answerable": True,
        "expected_answer": "",
        "expected_sources": [],
        "answer": "",
        "refused": False,
        "answer_language": "",
        "retrieved": [],
        "cited": [],
        "ttft_ms": None,
        "total_ms": None,
        "prompt_tokens": 0,
        "output_tokens": 0,
        "judge_score": None,
        "error": "",
    }
    return base | fields


def passage(title: str, page: int | None = None, name: str = "") -> dict[str, Any]:
    return {"document_id": 0, "title": title, "name": name, "page": page}


def source(document: str, page: int | None = None) -> dict[str, Any]:
    return {"document": document, "page": page}


# --- the list of measures -----------------------------------------------------------------


def test_measures_are_named_and_ordered_as_the_run_output_expects() -> None:
    assert list(MEASURES) == [
        "questions",
        "recall_at_10",
        "ndcg_at_10",
        "mrr",
        "answer_f1",
        "exact_match",
        "judge_score",
        "citation_precision",
        "citation_recall",
        "refusal_accuracy",
        "false_refusal_rate",
        "answer_language_match",
        "ttft_p50_ms",
        "ttft_p95_ms",
        "total_p50_ms",
        "total_p95_ms",
        "tokens_per_s",
        "prompt_tokens",
        "output_tokens",
        "cost_per_1000_questions",
    ]
    assert all(m.label and m.definition for m in MEASURES.values())
    assert not MEASURES["false_refusal_rate"].higher_is_better
    assert not MEASURES["ttft_p95_ms"].higher_is_better


# --- documents ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "got", "matches"),
    [
        (source("Travel Policy"), passage("travel policy"), True),  # case
        (source("travel-policy"), passage("Policy", name="Travel-Policy.PDF"), True),  # no ext.
        (source("travel-policy.pdf"), passage("x", name="travel-policy"), True),  # other side
        (source("travel-policy.pdf"), passage("travel-policy.docx"), False),  # another file
        (source("Budget 2.1"), passage("Budget 2"), False),  # a version is not an extension
        (source("Travel Policy", 3), passage("Travel Policy", 3), True),
        (source("Travel Policy", 3), passage("Travel Policy", 4), False),
        (source("Travel Policy", 3), passage("Travel Policy", None), False),
        (source("Travel Policy"), passage("Travel Policy", 9), True),  # no page: any page
        (source(""), passage(""), False),
        (source("Handbook", 2), {"document": "handbook.pdf", "page": 2}, True),  # stored form
    ],
)
def test_document_matches_title_or_file_name(expected: dict, got: dict, matches: bool) -> None:
    assert document_matches(expected, got) is matches


# --- retrieval ----------------------------------------------------------------------------


def test_retrieval_measures_by_hand() -> None:
    # Expected A (any page) and B page 3. A first appears at rank 2 (and again at 3, which
    # must not count twice); B page 3 at rank 5 (B page 2 at rank 4 is another page).
    r = record(
        expected_sources=[source("A"), source("B", 3)],
        retrieved=[
            passage("X"),
            passage("A", 1),
            passage("A", 2),
            passage("B", 2),
            passage("B", 3),
        ],
    )
    scores = question_scores(r)
    assert scores["recall_at_10"] == 1.0
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    ideal = 1 + 1 / math.log2(3)
    assert scores["ndcg_at_10"] == pytest.approx(dcg / ideal)  # 0.6241
    assert scores["ndcg_at_10"] == pytest.approx(0.6241, abs=1e-4)
    assert scores["mrr"] == 0.5


def test_only_the_first_ten_passages_count() -> None:
    retrieved = [passage(f"filler {i}") for i in range(10)] + [passage("B")]
    r = record(expected_sources=[source("A"), source("B")], retrieved=[passage("A"), *retrieved])
    scores = question_scores(r)
    # A at rank 1; B at rank 12, past the cut-off.
    assert scores["recall_at_10"] == 0.5
    assert scores["ndcg_at_10"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert scores["mrr"] == 1.0
    assert question_scores(r, k=12)["recall_at_12"] == 1.0


def test_nothing_relevant_scores_zero_and_no_sources_scores_none() -> None:
    missed = question_scores(record(expected_sources=[source("A")], retrieved=[passage("B")]))
    assert (missed["recall_at_10"], missed["ndcg_at_10"], missed["mrr"]) == (0.0, 0.0, 0.0)
    none = question_scores(record(retrieved=[passage("B")]))
    assert none["recall_at_10"] is none["ndcg_at_10"] is none["mrr"] is None
    assert none["citation_recall"] is none["citation_precision"] is None


# --- answers ------------------------------------------------------------------------------


def test_f1_and_exact_match_on_a_generated_sentence() -> None:
    # Normalised: expected [eiffel, tower]; answer [it, is, eiffel, tower] ("the" and the
    # citation mark go). Precision 2/4, recall 2/2, F1 = 2 * 0.5 * 1 / 1.5 = 2/3.
    r = record(expected_answer="The Eiffel Tower", answer="It is the Eiffel tower [1].")
    scores = question_scores(r)
    assert scores["answer_f1"] == pytest.approx(2 / 3)
    assert scores["exact_match"] == 1.0  # the whole phrase, in a short answer


def test_exact_match_equality_whole_words_and_length() -> None:
    def em(expected: str, answer: str, language: str = "en") -> float | None:
        r = record(expected_answer=expected, answer=answer, language=language)
        return question_scores(r)["exact_match"]

    assert em("Eiffel Tower", "the eiffel tower!") == 1.0
    assert em("art", "A party.") == 0.0  # not a whole word
    long = "Paris " + "and many other cities " * 10 + "Eiffel Tower"  # 43 words
    assert em("Eiffel Tower", long) == 0.0
    assert em("die Hauptstadt", "Hauptstadt", language="de") == 1.0
    assert em("det store huset", "store huset", language="nb") == 1.0


def test_f1_partial_overlap() -> None:
    # Expected [red, green, and, blue] ("and" is no article); answer [red, yellow]:
    # precision 1/2, recall 1/4, F1 = 2 * (1/2 * 1/4) / (1/2 + 1/4) = 1/3.
    r = record(expected_answer="red, green and blue", answer="red; yellow")
    assert question_scores(r)["answer_f1"] == pytest.approx(1 / 3)


def test_refusals_on_answerable_and_unanswerable_questions() -> None:
    refused = question_scores(
        record(
            expected_answer="Oslo", answer="I could not find this in the documents.", refused=True
        )
    )
    assert refused["answer_f1"] == 0.0 and refused["exact_match"] == 0.0
    assert refused["false_refusal_rate"] == 1.0 and refused["refusal_accuracy"] is None
    unanswerable = question_scores(record(answerable=False, expected_answer="x", refused=True))
    assert unanswerable["refusal_accuracy"] == 1.0
    assert unanswerable["false_refusal_rate"] is None
    assert unanswerable["answer_f1"] is None and unanswerable["exact_match"] is None
    answered = question_scores(record(answerable=False, answer="Oslo"))
    assert answered["refusal_accuracy"] == 0.0


def test_a_question_out_of_the_persons_reach_is_measured_as_one_to_refuse() -> None:
    # Answerable in the organisation, but only from documents the run's person may not
    # read: runner.record marks it so, and retrieval and citations do not apply to it.
    hidden = {"document": "budget-2025.xlsx", "page": None}
    out = dict(answerable=False, out_of_scope=True, expected_sources=[hidden], expected_answer="x")
    refused = question_scores(record(**out, refused=True))
    assert refused["refusal_accuracy"] == 1.0 and refused["false_refusal_rate"] is None
    assert refused["recall_at_10"] is None and refused["citation_recall"] is None
    answered = question_scores(record(**out, answer="NOK 26.9 million"))
    assert answered["refusal_accuracy"] == 0.0


def test_citations_precision_and_recall() -> None:
    # Cited: A p1 (expected A), C (not expected), A p2 (A again): precision 2/3.
    # Expected A and B; only A is cited: recall 1/2.
    r = record(
        expected_sources=[source("A"), source("B")],
        cited=[passage("A", 1), passage("C"), passage("A", 2)],
    )
    scores = question_scores(r)
    assert scores["citation_precision"] == pytest.approx(2 / 3)
    assert scores["citation_recall"] == 0.5
    uncited = question_scores(record(expected_sources=[source("A")]))
    assert uncited["citation_precision"] is None and uncited["citation_recall"] == 0.0


@pytest.mark.parametrize(
    ("asked", "answered", "expected"),
    [
        ("en", "en", 1.0),
        ("en-GB", "EN", 1.0),
        ("nb", "no", 1.0),
        ("de", "en", 0.0),
        ("", "en", None),
        ("en", "", None),
    ],
)
def test_answer_language_match(asked: str, answered: str, expected: float | None) -> None:
    scores = question_scores(record(language=asked, answer_language=answered))
    assert scores["answer_language_match"] == expected


def test_judge_score_is_taken_as_given() -> None:
    assert question_scores(record(judge_score=0.75))["judge_score"] == 0.75
    assert question_scores(record())["judge_score"] is None


# --- speed --------------------------------------------------------------------------------


def test_nearest_rank_percentiles() -> None:
    values = [100 * i for i in range(20, 0, -1)]  # 100..2000, unsorted
    assert percentile(values, 50) == 1000  # rank ceil(0.5 * 20) = 10
    assert percentile(values, 95) == 1900  # rank ceil(0.95 * 20) = 19
    assert percentile([300, 100, 200], 50) == 200  # rank ceil(1.5) = 2
    assert percentile([300, 100, 200], 95) == 300
    assert percentile([], 50) is None


def test_tokens_per_second_uses_generation_time_only() -> None:
    records = [
        record(ttft_ms=500, total_ms=2500, output_tokens=100),  # 2 s writing
        record(ttft_ms=1000, total_ms=2000, output_tokens=50),  # 1 s writing
        record(ttft_ms=None, total_ms=3000, output_tokens=999),  # unknown: left out
    ]
    assert tokens_per_second(records) == pytest.approx(150 / 3)
    assert tokens_per_second([record()]) is None


# --- cost ---------------------------------------------------------------------------------


def timed() -> list[dict[str, Any]]:
    return [
        record(id=1, total_ms=2500, ttft_ms=500, prompt_tokens=1000, output_tokens=100),
        record(id=2, total_ms=2000, ttft_ms=1000, prompt_tokens=2000, output_tokens=50),
        record(id=3, total_ms=3000, ttft_ms=None, prompt_tokens=3000, output_tokens=999),
    ]


def test_local_cost_per_1000_questions() -> None:
    # Hardware: 4000 / 36 months / 20000 questions * 1000 = 5.5556.
    # Energy: mean 2.5 s * 350 W = 875 J = 875 / 3.6e6 kWh, * 0.15 EUR, * 1000 = 0.0365.
    parts = cost_breakdown({}, timed())
    assert parts["kind"] == "local" and parts["currency"] == "EUR"
    assert parts["hardware"] == pytest.approx(5.5556)
    assert parts["energy"] == pytest.approx(0.0365)
    assert cost_per_1000({}, timed()) == pytest.approx(5.5920, abs=1e-4)
    assert parts["parameters"]["watts"] == DEFAULT_LOCAL_COST["watts"]
    cheaper = cost_per_1000({"hardware_price": 0, "watts": 1000}, timed())
    assert cheaper == pytest.approx(1000 * 2.5 * 0.15 / 3.6e6 * 1000, abs=1e-4)


def test_api_cost_per_1000_questions() -> None:
    # Mean prompt 2000 tokens, mean output (100 + 50 + 999) / 3 = 383 tokens.
    # (2000 * 2.50 + 383 * 10.00) / 1e6 * 1000 = 8.83.
    cost = {"kind": "api", "input_per_million": 2.5, "output_per_million": 10, "currency": "USD"}
    assert cost_per_1000(cost, timed()) == pytest.approx(8.83)
    parts = cost_breakdown(cost, timed())
    assert (parts["input"], parts["output"]) == (pytest.approx(5.0), pytest.approx(3.83))


def test_cost_without_a_model_or_timings() -> None:
    assert cost_per_1000(None, timed()) is None
    assert cost_per_1000({}, [record()]) is None  # local energy needs a total time


@pytest.mark.parametrize(
    ("cost", "message"),
    [
        ({"kind": "api", "input_per_million": 1}, "output_per_million"),
        ({"questions_per_month": 0}, "questions_per_month"),
        ({"watts": "lots"}, "watts"),
        ({"kind": "cloud"}, "kind"),
    ],
)
def test_bad_cost_models_say_which_figure(cost: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cost_per_1000(cost, timed())


def test_example_api_prices_are_dated_examples() -> None:
    names = {p["name"] for p in EXAMPLE_API_PRICES}
    assert {"gpt-4.1-mini", "gpt-4o", "claude-sonnet", "mistral-large"} <= names
    for price in EXAMPLE_API_PRICES:
        assert price["example"] is True and price["as_of"] == "2026-12-01"
        assert "check" in price["note"].lower()
        assert price["input_per_million"] > 0 and price["output_per_million"] > 0


# --- a whole run --------------------------------------------------------------------------


def run_records() -> list[dict[str, Any]]:
    return [
        record(
            id=1,
            language="en",
            tags=["hr"],
            expected_answer="Oslo",
            answer="Oslo",
            answer_language="en",
            expected_sources=[source("A")],
            retrieved=[passage("A")],
            ttft_ms=100,
            total_ms=1100,
            prompt_tokens=500,
            output_tokens=20,
            judge_score=1.0,
        ),
        record(
            id=2,
            language="en",
            tags=["hr", "travel"],
            expected_answer="Bergen",
            answer="Oslo",
            answer_language="de",
            expected_sources=[source("A")],
            retrieved=[passage("B"), passage("A")],
            ttft_ms=300,
            total_ms=2300,
            prompt_tokens=700,
            output_tokens=60,
        ),
        record(
            id=3,
            language="de",
            answerable=False,
            refused=True,
            ttft_ms=200,
            total_ms=700,
            prompt_tokens=300,
            output_tokens=10,
            error="",
        ),
    ]


def test_score_means_over_the_questions_where_each_applies() -> None:
    result = score(run_records())
    assert result["questions"] == 3
    assert result["recall_at_10"] == 1.0
    assert result["mrr"] == 0.75  # (1 + 1/2) / 2
    assert result["answer_f1"] == 0.5 and result["exact_match"] == 0.5
    assert result["judge_score"] == 1.0  # only question 1 was judged
    assert result["refusal_accuracy"] == 1.0 and result["false_refusal_rate"] == 0.0
    assert result["answer_language_match"] == 0.5
    assert result["citation_precision"] is None  # nothing was cited
    assert (result["ttft_p50_ms"], result["ttft_p95_ms"]) == (200, 300)
    assert (result["total_p50_ms"], result["total_p95_ms"]) == (1100, 2300)
    # (20 + 60 + 10) tokens over (1.0 + 2.0 + 0.5) s.
    assert result["tokens_per_s"] == pytest.approx(round(90 / 3.5, 4))
    assert result["prompt_tokens"] == 500.0 and result["output_tokens"] == 30.0
    assert result["cost_per_1000_questions"] is None and result["errors"] == 0
    assert result["ndcg_at_10"] == pytest.approx(round((1 + 1 / math.log2(3)) / 2, 4))


def test_score_groups_by_language_and_tag() -> None:
    result = score(run_records(), cost={})
    assert set(result["by_language"]) == {"de", "en"}
    english = result["by_language"]["en"]
    assert english["questions"] == 2 and english["answer_f1"] == 0.5
    assert english["refusal_accuracy"] is None
    assert result["by_language"]["de"]["refusal_accuracy"] == 1.0
    assert result["by_tag"]["hr"]["questions"] == 2
    assert result["by_tag"]["travel"]["answer_f1"] == 0.0
    assert english["cost_per_1000_questions"] is not None
    unknown = score([record(language="")])
    assert list(unknown["by_language"]) == ["unknown"]


def test_score_rounds_to_four_decimals_and_is_none_when_nothing_applies() -> None:
    result = score([record(expected_answer="b c d", answer="b x y")])
    assert result["answer_f1"] == 0.3333
    assert result["ttft_p50_ms"] is None and result["tokens_per_s"] is None
    assert result["judge_score"] is None and result["recall_at_10"] is None
    empty = score([])
    assert empty["questions"] == 0 and empty["answer_f1"] is None
