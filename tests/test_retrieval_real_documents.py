"""Hybrid search over a real document read by the real pipeline (parse sandbox, chunker,
all-MiniLM-L6-v2, publish): it finds the passage that answers, and a question the document
cannot answer stays under the relevance floor the answering code applies."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from inference.retrieval import search
from ingest import actions, embedding, pipeline, storage
from ingest.models import Collection
from tests.conftest import DOCUMENTS

pytestmark = pytest.mark.django_db


@pytest.fixture
def football(people: Any) -> Iterator[Collection]:
    collection = actions.create_collection(people.carol, "Football", people.hr)
    (result,) = actions.upload_documents(
        people.carol,
        collection,
        [
            actions.IncomingFile(
                "norwich-city.txt", io.BytesIO((DOCUMENTS / "norwich-city.txt").read_bytes())
            )
        ],
    )
    assert result.document is not None, result.error
    assert pipeline.process(result.document.pk) == "ready"
    yield collection
    storage.remove_collection_folder(collection.pk)


def ask(user: Any, question: str, mode: str = "hybrid") -> list[Any]:
    (vector,) = embedding.embed([question])
    return search(user, question, vector, k=settings.RETRIEVAL_TOP_K, mode=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("question", "passage"),
    [
        ("How many caps did Iwan Roberts win for Wales?", "fifteen caps"),
        ("When was Iwan Roberts born?", "born 26 June 1968"),
    ],
)
def test_hybrid_search_finds_the_passage_that_answers_in_a_real_document(
    people: Any, football: Collection, question: str, passage: str
) -> None:
    hits = ask(people.alice, question)
    answering = [h for h in hits[:3] if passage in h.text]  # among the first three
    assert answering, [h.text[:80] for h in hits]
    assert answering[0].score >= settings.RELEVANCE_FLOOR
    assert ask(people.bob, question) == []


def test_a_question_the_document_cannot_answer_stays_under_the_relevance_floor(
    people: Any, football: Collection
) -> None:
    hits = ask(people.alice, "What is the boiling point of liquid nitrogen in kelvin?")
    assert hits  # something always ranks ...
    assert all(h.score < settings.RELEVANCE_FLOOR for h in hits)  # ... but nothing relevant
