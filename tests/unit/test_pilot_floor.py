"""The relevance-floor sweep: which questions each floor refuses, and the floor suggested."""

from __future__ import annotations

from inference.pilot.floor import FloorRow, Scored, lines, suggest, sweep


def scored(answerable: list[float], unanswerable: list[float]) -> list[Scored]:
    return [Scored(True, best, "a") for best in answerable] + [
        Scored(False, best, "u") for best in unanswerable
    ]


def test_each_floor_counts_the_refusals_it_would_make() -> None:
    rows = sweep(scored([0.7, 0.45, 0.62], [0.2, 0.38, 0.5]), (0.3, 0.4, 0.5))
    assert [(r.floor, r.false_refusals, r.right_refusals) for r in rows] == [
        (0.3, 0, 1),
        (0.4, 0, 2),
        (0.5, 1, 2),  # 0.45 is refused now, and 0.5 itself is not below the floor
    ]
    assert {(r.answerable, r.unanswerable) for r in rows} == {(3, 3)}


def test_the_suggestion_is_the_highest_floor_that_adds_no_false_refusal() -> None:
    rows = sweep(scored([0.7, 0.45], [0.2, 0.38]), (0.3, 0.4, 0.5))
    assert suggest(rows) == 0.4
    # When even the lowest floor refuses an answerable question, no higher one refuses more.
    rows = sweep(scored([0.1, 0.7], [0.2]), (0.15, 0.25, 0.8))
    assert suggest(rows) == 0.25
    assert suggest([]) is None


def test_the_table_marks_the_current_and_the_suggested_floor() -> None:
    rows = [FloorRow(0.3, 0, 4, 1, 2), FloorRow(0.4, 0, 4, 2, 2)]
    figures = {
        "current_floor": 0.3,
        "suggested_floor": 0.4,
        "floors": [r.__dict__ for r in rows],
    }
    table = lines(figures)
    assert "| 0.30 (current) | 0 of 4 | 1 of 2 |" in table
    assert "| 0.40 (suggested) | 0 of 4 | 2 of 2 |" in table
