"""Questions about whole documents, without services: which documents a question names,
whether it asks about them as a whole, and how a document is grouped into parts and its
notes merged to fit the context budget.

Tokens are counted as words here (``count_words``), so every budget can be checked by eye.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest

from inference import prompts
from inference.documents import (
    Candidate,
    Target,
    asks_about_whole,
    compares,
    name_score,
    named_documents,
    significant,
    words,
)
from inference.reading import Note, Passage, combine, fit, group_parts, where
from inference.retrieval import Hit


def count_words(text: str) -> int:
    return len(text.split())


def ask(text: str, *documents: tuple[str, str]) -> list[str]:
    """Titles of the documents (title, file name; newest first) the question names."""
    candidates = [Candidate(i + 1, title, name) for i, (title, name) in enumerate(documents)]
    titles = {c.id: c.title for c in candidates}
    return [titles[t.id] for t in named_documents(text, candidates)]


# --- names ----------------------------------------------------------------------------------


def test_words_split_letters_from_digits_and_fold_plurals() -> None:
    assert words("Travel-Policies_v2.pdf") == ["travel", "policy", "version", "2", "pdf"]
    assert words("Policy version 02") == ["policy", "version", "2"]
    assert significant(words("Summarise the travel policy")) == ["travel", "policy"]


def test_a_question_naming_a_title_finds_that_document() -> None:
    library = [("Travel policy", "travel-policy.pdf"), ("Leave policy", "leave.docx")]
    assert ask("Summarise the travel policy", *library) == ["Travel policy"]
    assert ask("What does the leave policy say about sick days?", *library) == ["Leave policy"]


def test_a_file_name_names_its_document_too() -> None:
    library = [("Untitled", "contracts/acme-supply-agreement.pdf")]
    assert ask("List the deadlines in the Acme supply agreement", *library) == ["Untitled"]


def test_a_leading_part_of_a_long_title_is_enough() -> None:
    library = [("Travel policy 2024 (final)", "tp.pdf")]
    assert ask("Summarise the travel policy", *library) == ["Travel policy 2024 (final)"]


def test_one_shared_word_of_a_longer_title_is_not_a_name() -> None:
    library = [("Travel policy 2024 (final)", "tp.pdf"), ("Employee handbook", "eh.pdf")]
    assert ask("Which travel expenses are refunded?", *library) == []
    assert ask("Summarise the handbook", *library) == []


def test_a_number_alone_is_not_a_name() -> None:
    assert name_score(significant(words("What happened in 2023?")), "2023", "2023.pdf") == 0


def test_the_fuller_name_wins_over_a_shorter_one_it_contains() -> None:
    library = [("Travel policy", "a.pdf"), ("Travel policy appendix", "b.pdf")]
    assert ask("Summarise the travel policy appendix", *library) == ["Travel policy appendix"]


def test_among_equal_names_the_newest_is_read() -> None:
    library = [("Travel policy", "new/travel-policy.pdf"), ("Travel policy", "old/travel.pdf")]
    candidates = [Candidate(7, *library[0]), Candidate(3, *library[1])]
    assert named_documents("Summarise the travel policy", candidates) == (
        Target(7, "Travel policy"),
    )


def test_a_comparison_names_each_version() -> None:
    library = [
        ("Supply contract v3", "contract-v3.pdf"),
        ("Supply contract v2", "contract-v2.pdf"),
        ("Supply contract v1", "contract-v1.pdf"),
    ]
    found = ask("Compare the supply contract version 2 and version 3", *library)
    assert sorted(found) == ["Supply contract v2", "Supply contract v3"]


@pytest.mark.parametrize(
    "question",
    [
        "What is this document about? Summarise its main topic.",
        "Summarise the travel policy",
        "Give me an overview of the handbook",
        "List the deadlines in this contract",
        "Compare version 2 and version 3",
        "What are the key points?",
        "Fasse das Dokument zusammen",
    ],
)
def test_questions_about_a_whole_document(question: str) -> None:
    assert asks_about_whole(question)


@pytest.mark.parametrize(
    "question",
    [
        "How many days of annual leave do new employees get?",
        "When was the memo sent?",
        "What is the secret canary phrase in the quokka restructuring memo?",
    ],
)
def test_questions_for_one_fact(question: str) -> None:
    assert not asks_about_whole(question)


def test_only_a_comparison_reads_several_documents() -> None:
    assert compares("What changed between version 2 and version 3?")
    assert not compares("Summarise the travel policy")


# --- parts ----------------------------------------------------------------------------------


def passages(*sizes: int, page_every: int = 1) -> list[Passage]:
    """Passages of ``sizes`` words each, one page per ``page_every`` passages."""
    return [
        Passage(100 + i, i, i // page_every + 1, " ".join(f"w{i}" for _ in range(size)))
        for i, size in enumerate(sizes)
    ]


def test_passages_are_grouped_in_order_into_parts_within_the_budget() -> None:
    found = passages(30, 30, 30, 30, 30)
    parts = group_parts(found, count_words, budget=70)
    assert [[p.ordinal for p in part] for part in parts] == [[0, 1], [2, 3], [4]]
    for part in parts:
        assert sum(count_words(p.text) + 1 for p in part) <= 70
    assert [p for part in parts for p in part] == found  # nothing lost, nothing reordered


def test_a_passage_longer_than_the_budget_is_cut_and_read_alone() -> None:
    parts = group_parts(passages(10, 500, 10), count_words, budget=100)
    assert [[p.ordinal for p in part] for part in parts] == [[0], [1], [2]]
    assert count_words(parts[1][0].text) <= 99


def test_a_short_document_is_one_part() -> None:
    assert len(group_parts(passages(5, 5, 5), count_words, budget=900)) == 1
    assert group_parts([], count_words, budget=900) == []


def test_fit_cuts_text_to_the_budget() -> None:
    text = " ".join(str(i) for i in range(1000))
    assert count_words(fit(text, count_words, 50)) <= 50
    assert fit("short", count_words, 50) == "short"


def test_a_stretch_is_named_by_its_pages_or_else_its_parts() -> None:
    assert where((3, 5), (2, 2), 4) == "pages 3-5"
    assert where((3, 3), (2, 2), 4) == "page 3"
    assert where((None, None), (2, 3), 4) == "parts 2-3 of 4"
    assert where((None, None), (1, 1), 1) == "the whole text"


# --- merging notes ----------------------------------------------------------------------------


@dataclass
class WordModel:
    """Renders a prompt as its parts joined; counts words as tokens."""

    class format:
        @staticmethod
        def render(system: str, instructions: str, user: str, history: list[Any]) -> str:
            return "\n".join([system, instructions, user])

    def count_tokens(self, text: str) -> int:
        return count_words(text)


def notes_on(document: Target, count: int, size: int) -> list[Note]:
    return [
        Note(
            document,
            Passage(i, i, i + 1, ""),
            (i + 1, i + 1),
            (i + 1, i + 1),
            count,
            " ".join(["note"] * size),
        )
        for i in range(count)
    ]


def test_notes_that_outgrow_the_budget_are_merged_until_they_fit() -> None:
    paper = Target(1, "Paper")
    notes = notes_on(paper, 12, 20)
    written: list[str] = []
    events: list[tuple[int, int, str]] = []

    def write(prompt: str, max_tokens: int) -> str:
        written.append(prompt)
        return "merged " * 10

    merged = combine(
        "What is it about?",
        WordModel(),
        notes,
        write,
        lambda done, total, stage, title: events.append((done, total, stage)),
        threading.Event(),
        budget=100,
        note_tokens=15,
    )
    assert merged is not None and len(merged) < len(notes)
    assert sum(count_words(n.labelled) + 8 for n in merged) <= 100
    # The merged notes still cover the whole document, in order, with its pages.
    assert merged[0].pages[0] == 1 and merged[-1].pages[1] == 12
    assert [n.pages for n in merged] == sorted(n.pages for n in merged)
    assert all(stage == "combining" for _, _, stage in events)
    assert events[-1][0] == events[-1][1]  # the last event says every step is done
    # Every merging prompt held notes of one batch within the budget.
    assert all("note" in prompt for prompt in written)


def test_notes_of_different_documents_are_never_merged_together() -> None:
    first, second = Target(1, "Version 2"), Target(2, "Version 3")
    notes = notes_on(first, 6, 20) + notes_on(second, 6, 20)
    merged = combine(
        "Compare them",
        WordModel(),
        notes,
        lambda prompt, max_tokens: "merged " * 10,
        lambda *progress: None,
        threading.Event(),
        budget=100,
        note_tokens=15,
    )
    assert merged is not None
    assert {n.document for n in merged} == {first, second}
    assert [n.document for n in merged] == sorted((n.document for n in merged), key=lambda t: t.id)


def test_a_stop_while_merging_ends_the_reading() -> None:
    stop = threading.Event()
    stop.set()
    notes = notes_on(Target(1, "Paper"), 12, 20)
    assert (
        combine("q", WordModel(), notes, lambda p, m: "x", lambda *a: None, stop, 100, 15) is None
    )


def test_a_silent_model_keeps_the_notes_own_words() -> None:
    notes = notes_on(Target(1, "Paper"), 12, 20)
    merged = combine(
        "q", WordModel(), notes, lambda p, m: "", lambda *a: None, threading.Event(), 100, 15
    )
    assert merged is not None and all(n.text.startswith("note") for n in merged)


def test_the_note_label_names_its_pages_for_the_prompt_and_the_citation() -> None:
    (note,) = notes_on(Target(1, "Paper"), 1, 3)
    assert note.labelled == "Notes on page 1: note note note"
    message = prompts.user_message("q", [prompts.Source(1, _hit(note), note.labelled)])
    assert "[1] Paper, page 1\nNotes on page 1: note note note" in message


def _hit(note: Note) -> Hit:
    return Hit(note.first.chunk_id, note.document.id, 0, note.document.title, 1, "", "", 1.0)


def test_a_comparison_of_versions_by_number_alone_reads_those_two() -> None:
    library = [
        ("contract-v3", "contract-v3.pdf"),
        ("contract-v2", "contract-v2.pdf"),
        ("contract-v1", "contract-v1.pdf"),
    ]
    assert sorted(ask("Compare version 2 and version 3", *library)) == [
        "contract-v2",
        "contract-v3",
    ]
