"""Reading a model's drafted question and answer (``inference.pilot.drafts``), without a
database or a model: what small models really write, and what is kept of it."""

from __future__ import annotations

import pytest

from inference.pilot import drafts

PASSAGE = (
    "Employees are entitled to 25 days of paid annual leave per calendar year. Leave must be "
    "requested at least two weeks in advance through the HR portal, and up to five unused "
    "days may be carried over to the next year."
)


@pytest.mark.parametrize(
    ("reply", "question", "answer"),
    [
        (
            "QUESTION: How many days of paid annual leave do employees get?\nANSWER: 25 days",
            "How many days of paid annual leave do employees get?",
            "25 days",
        ),
        (  # markdown, other case, a trailing full stop, then the model goes on
            "**Question:** Where must leave be requested?\n**Answer:** Through the HR portal.\n"
            "QUESTION: another one?\nANSWER: no",
            "Where must leave be requested?",
            "Through the HR portal",
        ),
        (  # text after the question mark on the same line is not the question
            "QUESTION: How many unused days may be carried over? (from the passage)\n"
            "ANSWER: up to five",
            "How many unused days may be carried over?",
            "up to five",
        ),
        (  # Norwegian labels
            "Spørsmål: How far in advance must leave be requested?\nSvar: two weeks",
            "How far in advance must leave be requested?",
            "two weeks",
        ),
    ],
)
def test_it_reads_a_labelled_question_and_answer(reply: str, question: str, answer: str) -> None:
    found = drafts.read_reply(reply, PASSAGE)
    assert found is not None
    assert (found.question, found.answer) == (question, answer)


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("", "nothing written"),
        ("The passage provides a clear and concise answer to the question.", "no question"),
        ("QUESTION: How many days of leave?\nANSWER:", "no answer"),
        (
            "QUESTION: Who carries over the unused days of leave?\nANSWER: the town council",
            "the example's answer, not the passage's",
        ),
        ("QUESTION: Who founded the city museum?\nANSWER: the town council", "the example"),
        (
            "QUESTION: How many days of paid leave?\nANSWER: How many days of paid leave?",
            "the answer repeats the question",
        ),
        ("QUESTION: What is the meaning of war?\nANSWER: history", "not about the passage"),
        ('QUESTION: =HYPERLINK("x")?\nANSWER: 25 days', "a formula"),
        ("QUESTION: How many days?\nANSWER: " + "leave " * 80, "an answer longer than a few words"),
    ],
)
def test_it_skips_what_cannot_be_used(reply: str, why: str) -> None:
    assert drafts.read_reply(reply, PASSAGE) is None, why


def test_a_question_quoted_in_prose_is_found() -> None:
    reply = 'The passage asks: "How many days of paid annual leave do employees get?"\nANSWER: 25'
    found = drafts.read_reply(reply, PASSAGE)
    assert found is not None
    assert found.question == "How many days of paid annual leave do employees get?"


def test_passages_take_turns_between_documents() -> None:
    # (chunk id, document id, length): document 1 has many passages, 2 and 3 one each.
    rows = [(pk, 1, 500) for pk in range(10, 20)] + [(30, 2, 500), (40, 3, 500)]
    chosen = drafts._spread(rows, 4)
    assert len(chosen) == 4
    assert {30, 40} <= set(chosen)
    assert drafts._spread(rows, 50) and len(drafts._spread(rows, 50)) == len(rows)


@pytest.mark.parametrize(
    ("question", "answer", "said"),
    [
        ("", "x", "empty"),
        ("q" * 4_001, "", "longer"),
        ("Fine question?", "=1+1", "formula"),
        ("Fine question?", "", ""),
    ],
)
def test_a_curators_edit_follows_the_rules_of_an_uploaded_row(
    question: str, answer: str, said: str
) -> None:
    problem = drafts.check_edit(question, answer)
    assert (said in problem) if said else problem == ""
