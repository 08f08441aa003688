"""Comparing pilot runs: pairing, bootstrap intervals, the gate, plots and the exports."""

from __future__ import annotations

import csv
import io
import json
import random
import re
from typing import Any

import pytest

from inference.pilot import plots
from inference.pilot.compare import compare, gate, parse_tolerances
from inference.pilot.measures import MEASURES, score
from inference.pilot.report import html_report, questions_csv, questions_json


def record(question_id: int, **fields: Any) -> dict[str, Any]:
    base = {
        "id": question_id,
        "question": f"Question {question_id}?",
        "language": "en" if question_id % 2 else "de",
        "tags": ["policy"] if question_id % 3 == 0 else [],
        "answerable": True,
        "expected_answer": "",
        "expected_sources": [{"document": "Handbook", "page": None}],
        "answer": f"Answer {question_id}",
        "refused": False,
        "answer_language": "en",
        "retrieved": [{"document_id": 1, "title": "Handbook", "name": "handbook.pdf", "page": 1}],
        "cited": [],
        "ttft_ms": 400 + 10 * question_id,
        "total_ms": 2000 + 50 * question_id,
        "prompt_tokens": 900,
        "output_tokens": 80,
        "judge_score": None,
        "error": "",
    }
    return base | fields


def judged_runs(n: int = 60, shift: float = 0.3) -> tuple[list[dict], list[dict], float]:
    """A baseline and a candidate whose judge grade is ``shift`` higher, give or take 0.1
    per question; returns both and the observed mean difference."""
    rng = random.Random(7)
    baseline, candidate, diffs = [], [], []
    for i in range(n):
        before = rng.uniform(0.1, 0.5)
        after = before + shift + rng.uniform(-0.1, 0.1)
        baseline.append(record(i, judge_score=before))
        candidate.append(record(i, judge_score=after, ttft_ms=200 + 5 * i))
        diffs.append(after - before)
    return baseline, candidate, sum(diffs) / n


# --- pairing and intervals ----------------------------------------------------------------


def test_runs_are_paired_on_the_questions_all_of_them_answered() -> None:
    baseline = [record(i) for i in range(1, 6)]
    candidate = [record(i) for i in (5, 3, 1, 2, 9)]  # no 4, an extra 9, another order
    comparison = compare([("base", baseline), ("new", candidate)], resamples=50)
    assert comparison.question_ids == [1, 2, 3, 5]
    assert comparison.unpaired == {"base": 1, "new": 1}
    assert [r["id"] for r in comparison.records[1]] == [1, 2, 3, 5]
    assert comparison.row("questions").values == [4, 4]


def test_a_clearly_better_run_has_an_interval_that_excludes_zero() -> None:
    baseline, candidate, true_difference = judged_runs()
    comparison = compare([("base", baseline), ("better", candidate)], resamples=2000, seed=1)
    row = comparison.row("judge_score")
    low, high = row.intervals[0]
    assert row.differences[0] == pytest.approx(true_difference, abs=1e-4)
    assert low <= true_difference <= high
    assert low <= 0.3 <= high  # the shift the data was made with
    assert low > 0  # clearly better: zero is outside
    assert high - low < 0.05  # paired: the shared question difficulty cancels out


def test_no_difference_gives_an_interval_around_zero_and_is_repeatable() -> None:
    baseline, _, _ = judged_runs()
    runs = [("a", baseline), ("b", [dict(r) for r in baseline])]
    first = compare(runs, resamples=300, seed=3)
    assert first.row("judge_score").differences == [0.0]
    assert first.row("judge_score").intervals == [(0.0, 0.0)]
    assert compare(runs, resamples=300, seed=3).as_dict() == first.as_dict()
    json.dumps(first.as_dict())  # plain numbers only, no numpy types


def test_point_values_agree_with_score_for_every_measure() -> None:
    baseline, candidate, _ = judged_runs(n=25)
    for r in candidate[::4]:
        r.update(ttft_ms=None, refused=True)
    costs = [{}, {"kind": "api", "input_per_million": 2.5, "output_per_million": 10}]
    comparison = compare([("base", baseline), ("new", candidate)], costs=costs, resamples=100)
    for index, records in enumerate((baseline, candidate)):
        summary = score(records, cost=costs[index])
        for name in MEASURES:
            assert comparison.row(name).values[index] == pytest.approx(summary[name]), name
    assert comparison.summaries[1]["currency"] == "USD"


def test_costs_in_different_currencies_are_shown_but_not_subtracted() -> None:
    baseline, candidate, _ = judged_runs(n=20)
    euro_api = {"kind": "api", "input_per_million": 2, "output_per_million": 8, "currency": "EUR"}
    same = compare([("local", baseline), ("api", candidate)], costs=[{}, euro_api], resamples=100)
    row = same.row("cost_per_1000_questions")
    assert row.differences[0] is not None and row.intervals[0] is not None
    dollars = euro_api | {"currency": "USD"}
    mixed = compare([("local", baseline), ("api", candidate)], costs=[{}, dollars], resamples=100)
    row = mixed.row("cost_per_1000_questions")
    assert None not in row.values
    assert row.differences == [None] and row.intervals == [None]
    assert "EUR and USD" in row.notes[0]
    assert "cannot be compared" in gate(mixed, {"cost_per_1000_questions": 1})[0]


def test_comparison_needs_two_runs_and_known_measures() -> None:
    with pytest.raises(ValueError, match="two runs"):
        compare([("only", [record(1)])])
    with pytest.raises(ValueError, match="bleu"):
        compare([("a", [record(1)]), ("b", [record(1)])], measures=["bleu"])


def test_no_shared_questions_gives_empty_values_not_an_error() -> None:
    comparison = compare([("a", [record(1)]), ("b", [record(2)])])
    assert comparison.question_ids == []
    assert comparison.row("judge_score").values == [None, None]
    assert comparison.row("judge_score").intervals == [None]


# --- question by question -----------------------------------------------------------------


def test_each_question_gets_a_verdict_against_the_baseline() -> None:
    baseline = [
        record(1, judge_score=0.4),
        record(2, expected_answer="Oslo", answer="Bergen"),
        record(3, answerable=False, refused=False, expected_sources=[]),
        record(4),
    ]
    candidate = [
        record(1, judge_score=0.9),
        record(2, expected_answer="Oslo", answer="Bergen"),
        record(3, answerable=False, refused=True, expected_sources=[]),
        record(4, retrieved=[]),
    ]
    comparison = compare([("base", baseline), ("new", candidate)], resamples=10)
    verdicts = [(q["runs"][1]["verdict"], q["runs"][1]["basis"]) for q in comparison.per_question]
    assert verdicts == [
        ("better", "judge"),
        ("same", "F1"),
        ("better", "refusal"),
        ("worse", "recall@10"),
    ]
    assert comparison.per_question[0]["runs"][0]["verdict"] is None  # the baseline itself


# --- the gate -----------------------------------------------------------------------------


def test_gate_fails_a_clearly_worse_candidate() -> None:
    baseline, better, _ = judged_runs()
    comparison = compare([("better", better), ("worse", baseline)], resamples=200)
    failures = gate(comparison, {"judge_score": 0.05})
    assert len(failures) == 1
    assert "judge_score" in failures[0] and "worse" in failures[0]
    assert "95% interval" in failures[0]


def test_gate_passes_within_tolerance_and_respects_direction() -> None:
    baseline, _, _ = judged_runs()
    slightly = [r | {"judge_score": r["judge_score"] - 0.02} for r in baseline]
    comparison = compare([("base", baseline), ("new", slightly)], resamples=200)
    assert gate(comparison, {"judge_score": 0.05}) == []
    assert gate(comparison, {"judge_score": 0.01})
    # Lower is better for latency: a 200 ms slower p95 fails a 100 ms tolerance.
    slower = [r | {"ttft_ms": r["ttft_ms"] + 200} for r in baseline]
    comparison = compare([("base", baseline), ("slow", slower)], resamples=50)
    assert gate(comparison, {"ttft_p95_ms": 100})
    assert gate(comparison, {"ttft_p95_ms": 250}) == []
    faster = compare([("slow", slower), ("base", baseline)], resamples=50)
    assert gate(faster, {"ttft_p95_ms": 0}) == []


def test_gate_fails_when_a_measure_cannot_be_checked() -> None:
    comparison = compare([("a", [record(1)]), ("b", [record(1)])], resamples=10)
    failures = gate(comparison, {"answer_f1": 0.1})
    assert failures and "cannot check" in failures[0]


def test_tolerances_parse_from_the_command_line() -> None:
    assert parse_tolerances(["answer_f1=0.02", "ttft_p95_ms=500"]) == {
        "answer_f1": 0.02,
        "ttft_p95_ms": 500.0,
    }
    for bad in ("answer_f1", "bleu=0.1", "answer_f1=much", "answer_f1=-1"):
        with pytest.raises(ValueError):
            parse_tolerances([bad])


# --- plots --------------------------------------------------------------------------------


def summaries() -> list[tuple[str, dict]]:
    baseline, candidate, _ = judged_runs(n=12)
    return [
        ("local", score(baseline, cost={})),
        (
            "api",
            score(candidate, cost={"kind": "api", "input_per_million": 1, "output_per_million": 2}),
        ),
    ]


def test_plots_are_svg_and_byte_for_byte_repeatable() -> None:
    baseline, candidate, _ = judged_runs(n=12)
    runs = [("local", baseline), ("api", candidate)]
    drawings = [
        lambda: plots.quality_vs_cost(summaries(), "judge_score"),
        lambda: plots.latency_distribution(runs),
        lambda: plots.per_language_bars(summaries(), "judge_score"),
    ]
    for draw in drawings:
        first = draw()
        assert "<svg" in first and "</svg>" in first
        assert draw() == first
        assert "<dc:date>" not in first


def test_plots_say_so_when_there_is_nothing_to_draw() -> None:
    empty = [("a", score([]))]
    for svg in (
        plots.quality_vs_cost(empty),
        plots.latency_distribution([("a", [])]),
        plots.per_language_bars(empty),
    ):
        assert "<svg" in svg


# --- the exports --------------------------------------------------------------------------

HOSTILE = '<script>alert("x")</script><img src="http://evil.example/a.png">'


def hostile_comparison() -> Any:
    baseline, candidate, _ = judged_runs(n=10)
    candidate[0] |= {"answer": HOSTILE}
    baseline[1] |= {"question": '=HYPERLINK("http://evil.example","click")'}
    baseline[2] |= {"answer": "+1+2"}
    candidate[3] |= {"answer": "@SUM(A1:A2)"}
    candidate[4] |= {"answer": "-3"}
    candidate[5] |= {"answer": "\t=1", "error": "\rboom"}
    return compare(
        [("base <b>", baseline), ("new", candidate)],
        costs=[{}, {"kind": "api", "input_per_million": 1, "output_per_million": 2}],
        resamples=100,
    )


def test_report_escapes_what_people_and_models_wrote() -> None:
    html = html_report(hostile_comparison(), [{"configuration": {"model": "<i>gpt</i>"}}, {}])
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "<img" not in html and "<i>gpt" not in html and "base <b>" not in html
    assert "base &lt;b&gt;" in html


def test_report_is_self_contained() -> None:
    html = html_report(hostile_comparison(), [{"run_id": 1}, {"run_id": 2}])
    # No reference that a browser would fetch: no src or href outside the page itself.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//|[a-z]+:)""", html, re.I)
    assert "@import" not in html
    assert not re.search(r"""url\(\s*(?!["']?#)""", html)  # only the SVG's own clip paths
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert html.count("<svg") == 3
    for name, measure in MEASURES.items():
        assert measure.definition.split(",")[0].replace("'", "&#x27;") in html, name


def test_csv_has_every_question_and_run_with_formulas_neutralised() -> None:
    comparison = hostile_comparison()
    rows = list(csv.DictReader(io.StringIO(questions_csv(comparison))))
    assert len(rows) == 10 * 2
    cells = [value for row in rows for value in row.values()]
    assert not [c for c in cells if c and c[0] in "=+-@\t\r"]
    assert '\'=HYPERLINK("http://evil.example","click")' in cells
    assert {"'+1+2", "'@SUM(A1:A2)", "'-3", "'\t=1", "'\rboom"} <= set(cells)
    assert {row["run"] for row in rows} == {"base <b>", "new"}


def test_json_has_every_question_with_both_answers() -> None:
    payload = json.loads(questions_json(hostile_comparison()))
    assert payload["baseline"] == "base <b>"
    assert len(payload["questions"]) == 10
    first = payload["questions"][0]
    assert [entry["run"] for entry in first["runs"]] == ["base <b>", "new"]
    assert first["runs"][1]["answer"] == HOSTILE  # raw in data; escaping is the page's job
