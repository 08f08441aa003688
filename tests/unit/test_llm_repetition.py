"""A small model that starts to loop is stopped (``APPLIANCE_LLM_REPETITION_STOP``)."""

from __future__ import annotations

from inference.llm.backend import looping


def test_a_run_written_three_times_over_is_a_loop() -> None:
    sentence = [11, 12, 13, 14, 15, 16, 17]
    assert looping([1, 2, 3] + sentence * 3, 3)
    assert not looping([1, 2, 3] + sentence * 2, 3)


def test_a_list_whose_items_differ_is_not_a_loop() -> None:
    items = [t for n in range(10) for t in (50, 51, 100 + n, 52)]  # "- item 0\n- item 1\n…"
    assert not looping(items, 3)


def test_runs_shorter_than_four_tokens_are_left_alone() -> None:
    assert not looping([1, 2, 3, 4, 5] + [7, 8] * 5, 3)  # "ha ha ha ha ha": too short
    assert looping([7, 8, 9, 10] * 3, 3)
