"""BM25 statistics kept by ingestion (ingest/search_statistics.py) and read by retrieval
(inference/lexical.py): equal to a textbook BM25, right after every publish, re-ingestion
and deletion, and safe under concurrent publishes.

Collections here use the ``simple`` text search configuration (no stemming, no stop
words) on lowercase words, so the expected figures are computed in Python from the texts
alone, independently of PostgreSQL."""

from __future__ import annotations

import io
import math
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models import F

from inference import lexical
from inference.retrieval import Params, search
from ingest import actions, pipeline, search_statistics, stages, storage
from ingest.chunking import ChunkDraft
from ingest.models import (
    Chunk,
    Collection,
    Document,
    LexicalChunk,
    LexicalCollection,
    LexicalTerm,
    Status,
)

pytestmark = pytest.mark.django_db

CORPUS = [
    "apple banana apple cherry",
    "banana banana banana durian elderberry fig",
    "cherry apple",
    "grape grape grape grape grape grape grape grape apple",
    "fig durian",
    "kiwi lemon mango nectarine orange papaya quince raspberry strawberry tangerine apple",
]


def unit_vectors(count: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def stored_document(
    collection: Collection, texts: list[str], vectors: np.ndarray | None = None
) -> Document:
    """A document whose chunks are stored by the pipeline's chunk writer, not yet published."""
    document = Document.objects.create(
        collection=collection,
        title=f"doc {uuid.uuid4().hex[:6]}",
        original_name="doc.txt",
        stored_path="",
        sha256=uuid.uuid4().hex,
        kind="txt",
        status=Status.EMBEDDING,
    )
    drafts = [(i, ChunkDraft(text, None, "", 10)) for i, text in enumerate(texts)]
    if vectors is None:
        vectors = unit_vectors(len(texts), seed=document.pk)
    stages.insert(document, drafts, vectors)
    return document


def published(
    collection: Collection, texts: list[str], vectors: np.ndarray | None = None
) -> Document:
    document = stored_document(collection, texts, vectors)
    assert pipeline.publish(document)
    return document


def new_version(document: Document, texts: list[str]) -> Document:
    """What a re-ingestion does: chunks under the next version, then publish."""
    Document.objects.filter(pk=document.pk).update(
        version=F("version") + 1, status=Status.EMBEDDING
    )
    document.refresh_from_db()
    drafts = [(i, ChunkDraft(text, None, "", 10)) for i, text in enumerate(texts)]
    stages.insert(document, drafts, unit_vectors(len(texts), seed=100 + document.pk))
    assert pipeline.publish(document)
    return document


def expected_statistics(collection: Collection) -> dict[str, Any]:
    """What the statistics must say, from the live chunks' texts, counted in Python."""
    live = Chunk.objects.filter(collection=collection, version=F("document__live_version"))
    words = {c.pk: f"{c.section}\n{c.text}".split() if c.section else c.text.split() for c in live}
    frequencies: Counter[str] = Counter()
    for chunk_words in words.values():
        frequencies.update(set(chunk_words))
    return {
        "chunks": len(words),
        "length": sum(len(w) for w in words.values()),
        "frequencies": dict(frequencies),
        "lengths": {pk: len(w) for pk, w in words.items()},
    }


def kept_statistics(collection: Collection) -> dict[str, Any]:
    totals = LexicalCollection.objects.filter(collection=collection).first()
    chunk_ids = Chunk.objects.filter(collection=collection).values("pk")
    return {
        "chunks": totals.chunk_count if totals else 0,
        "length": totals.total_length if totals else 0,
        "frequencies": dict(
            LexicalTerm.objects.filter(collection=collection).values_list(
                "lexeme", "document_frequency"
            )
        ),
        "lengths": dict(
            LexicalChunk.objects.filter(chunk__in=chunk_ids).values_list("chunk_id", "length")
        ),
    }


@pytest.fixture
def fruit(people: Any) -> Collection:
    return actions.create_collection(people.carol, "Fruit", people.hr, language="simple")


def textbook_bm25(texts: list[str], query: list[str], k1: float, b: float) -> dict[int, float]:
    """Okapi BM25 with Lucene's non-negative IDF, straight from the formula."""
    documents = [t.split() for t in texts]
    n = len(documents)
    average = sum(len(d) for d in documents) / n
    scores: dict[int, float] = {}
    for i, document in enumerate(documents):
        counts = Counter(document)
        score = 0.0
        for term in set(query):
            if not counts[term]:
                continue
            df = sum(1 for d in documents if term in d)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = counts[term]
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(document) / average))
        if score:
            scores[i] = score
    return scores


@pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (0.9, 0.4), (2.0, 1.0)])
def test_bm25_scores_equal_textbook_bm25_computed_in_python(
    people: Any, fruit: Collection, k1: float, b: float
) -> None:
    document = published(fruit, CORPUS)
    chunk_of = dict(Chunk.objects.filter(document=document).values_list("pk", "ordinal"))
    question = "apple durian grape unknownword"
    params = Params(bm25=lexical.Bm25(k1=k1, b=b, candidate_budget=10**9, common_share=1))
    hits = search(people.alice, question, unit_vectors(1)[0], k=10, mode="fulltext", params=params)
    expected = textbook_bm25(CORPUS, question.split(), k1, b)
    got = {chunk_of[h.chunk_id]: h.bm25 for h in hits}
    assert got.keys() == expected.keys()
    for ordinal, score in expected.items():
        assert got[ordinal] == pytest.approx(score, rel=1e-9)
    assert [chunk_of[h.chunk_id] for h in hits] == sorted(expected, key=lambda i: -expected[i])


def test_statistics_count_exactly_the_live_chunks_after_publish_reingest_and_delete(
    people: Any, fruit: Collection
) -> None:
    first = published(fruit, CORPUS[:3])
    second = published(fruit, CORPUS[3:])
    assert kept_statistics(fruit) == expected_statistics(fruit)
    assert kept_statistics(fruit)["chunks"] == 6

    new_version(first, ["zucchini apple", "apple apple"])
    assert kept_statistics(fruit) == expected_statistics(fruit)
    assert kept_statistics(fruit)["frequencies"]["apple"] == 4  # 2 new + 2 in `second`
    assert "cherry" not in kept_statistics(fruit)["frequencies"]  # only the old version had it

    actions.delete_document(people.carol, second)
    assert kept_statistics(fruit) == expected_statistics(fruit)
    assert kept_statistics(fruit)["frequencies"] == {"zucchini": 1, "apple": 2}

    actions.delete_document(people.carol, first)
    assert kept_statistics(fruit) == {"chunks": 0, "length": 0, "frequencies": {}, "lengths": {}}


def test_a_version_being_ingested_is_not_counted_until_it_is_published(
    people: Any, fruit: Collection
) -> None:
    document = published(fruit, CORPUS[:2])
    before = kept_statistics(fruit)
    Document.objects.filter(pk=document.pk).update(version=2, status=Status.EMBEDDING)
    document.refresh_from_db()
    stages.insert(document, [(0, ChunkDraft("brandnew words", None, "", 2))], unit_vectors(1))
    assert kept_statistics(fruit) == before


def test_counting_the_live_version_twice_counts_it_once(people: Any, fruit: Collection) -> None:
    document = published(fruit, CORPUS)
    document.refresh_from_db()
    before = kept_statistics(fruit)
    search_statistics.count_live_version(fruit.pk, document.pk, document.live_version)
    assert kept_statistics(fruit) == before
    search_statistics.forget_document(fruit.pk, document.pk)
    search_statistics.forget_document(fruit.pk, document.pk)
    assert kept_statistics(fruit)["chunks"] == 0


def test_rebuild_reproduces_the_statistics_kept_incrementally(
    people: Any, fruit: Collection
) -> None:
    first = published(fruit, CORPUS[:4])
    published(fruit, CORPUS[4:])
    new_version(first, ["apple kiwi", "kiwi"])
    kept = kept_statistics(fruit)
    search_statistics.rebuild([fruit.pk])
    assert kept_statistics(fruit) == kept == expected_statistics(fruit)


def test_rebuild_repairs_damaged_statistics_of_the_collections_named_only(
    people: Any, fruit: Collection
) -> None:
    other = actions.create_collection(people.carol, "Other", people.hr, language="simple")
    first = published(fruit, CORPUS[:3])
    published(fruit, CORPUS[3:])
    published(other, ["apple apple zucchini"])
    # chunks under another embedding model (a re-embedding in progress) are not counted
    Chunk.objects.filter(document=first, ordinal=0).update(embedding_model="another-model")
    expected = expected_statistics(fruit)
    expected["chunks"] -= 1
    expected["length"] -= len(CORPUS[0].split())
    expected["lengths"].pop(Chunk.objects.get(document=first, ordinal=0).pk)
    for word in set(CORPUS[0].split()):
        expected["frequencies"][word] -= 1
    expected["frequencies"] = {w: n for w, n in expected["frequencies"].items() if n}
    other_kept = kept_statistics(other)
    # damage: wrong totals, wrong frequencies, a missing length, a stray lexeme
    LexicalCollection.objects.filter(collection__in=[fruit, other]).update(
        chunk_count=99, total_length=999
    )
    LexicalTerm.objects.filter(collection=fruit).update(document_frequency=42)
    LexicalTerm.objects.create(collection=fruit, lexeme="stray", document_frequency=7)
    LexicalChunk.objects.filter(chunk__document=first, chunk__ordinal=1).delete()

    search_statistics.rebuild([fruit.pk])

    assert kept_statistics(fruit) == expected
    other_kept["chunks"], other_kept["length"] = 99, 999  # untouched, damage included
    assert kept_statistics(other) == other_kept


def _tables(prefix: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE %s ORDER BY 1", [prefix + "%"]
        )
        return [row[0] for row in cursor.fetchall()]


def test_upgrading_moves_the_statistics_tables_to_ingest_with_every_row(
    people: Any, fruit: Collection
) -> None:
    """Ingest migration 0009 (and inference 0006) take the tables over from the inference
    app by renaming them: what an older installation counted is still counted after."""
    for text in CORPUS:
        published(fruit, [text])
    before = kept_statistics(fruit)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # DDL after the test's inserts
    executor = MigrationExecutor(connection)
    old = [
        ("ingest", "0008_collection_search_vector_index"),
        ("inference", "0005_citation_chunk_set_null"),
    ]
    new = [
        ("ingest", "0009_lexical_statistics_from_inference"),
        ("inference", "0006_lexical_statistics_to_ingest"),
    ]
    try:
        executor.migrate(old)
        assert _tables("inference_lexical") == [
            "inference_lexicalchunk",
            "inference_lexicalcollection",
            "inference_lexicalterm",
        ]
        assert _tables("ingest_lexical") == []
    finally:
        executor.loader.build_graph()  # the applied set changed under the loader
        executor.migrate(new)
    assert _tables("inference_lexical") == []
    assert kept_statistics(fruit) == before == expected_statistics(fruit)
    # The cascading keys came along: deleting a document still uncounts it at once.
    document = Document.objects.filter(collection=fruit).first()
    actions.delete_document(people.carol, document)
    assert kept_statistics(fruit) == expected_statistics(fruit)


def test_chunk_rows_keep_their_vector_and_full_text_terms_inline(db: Any) -> None:
    # Both rankings read these columns of every candidate; moved to the TOAST table, each
    # would cost extra reads (ingest migrations 0005 and 0006; effect measured by
    # ``benchmark retrieval --synthetic``). The catalog is what the migrations set.
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT c.reloptions, a.attstorage FROM pg_class c "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'embedding' "
            "WHERE c.relname = 'ingest_chunk'"
        )
        options, storage_kind = cursor.fetchone()
    assert "toast_tuple_target=4080" in options and storage_kind == "m"


def test_deleting_a_collection_removes_its_statistics(people: Any, fruit: Collection) -> None:
    published(fruit, CORPUS)
    actions.delete_collection(people.carol, fruit)
    assert not LexicalCollection.objects.filter(collection_id=fruit.pk).exists()
    assert not LexicalTerm.objects.filter(collection_id=fruit.pk).exists()
    assert not LexicalChunk.objects.exists()


@pytest.fixture
def uploaded_fruit(people: Any) -> Iterator[Collection]:
    collection = actions.create_collection(people.carol, "Uploads", people.hr, language="simple")
    yield collection
    storage.remove_collection_folder(collection.pk)


def test_statistics_follow_real_uploads_through_the_pipeline(
    people: Any, uploaded_fruit: Collection
) -> None:
    def upload(name: str, text: str) -> Document:
        (result,) = actions.upload_documents(
            people.carol, uploaded_fruit, [actions.IncomingFile(name, io.BytesIO(text.encode()))]
        )
        assert result.document is not None, result.error
        assert pipeline.process(result.document.pk) == "ready"
        return result.document

    upload("a.txt", " ".join(CORPUS[:3]))
    b = upload("b.txt", " ".join(CORPUS[3:]))
    assert kept_statistics(uploaded_fruit) == expected_statistics(uploaded_fruit)
    upload("a.txt", "a replaced text about yuzu and apple")  # same name: a new version
    assert kept_statistics(uploaded_fruit)["frequencies"]["yuzu"] == 1
    assert kept_statistics(uploaded_fruit) == expected_statistics(uploaded_fruit)
    actions.delete_document(people.carol, b)
    assert kept_statistics(uploaded_fruit) == expected_statistics(uploaded_fruit)


def test_tsquery_literal_survives_quotes_and_backslashes(db: Any) -> None:
    lexemes = ["o'neil", "back\\slash", "plain", "two words"]
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT querytree(%s::tsquery)", [lexical.tsquery_literal(lexemes)])
        (tree,) = cursor.fetchone()
        cursor.execute(
            "SELECT array_to_tsvector(%s::text[]) @@ %s::tsquery",
            [["o'neil"], lexical.tsquery_literal(lexemes)],
        )
        (matches,) = cursor.fetchone()
    assert tree.count("|") == 3
    assert matches


def test_candidate_lexemes_are_the_rarest_within_the_budget() -> None:
    terms = [("common", 1, 900), ("rare", 1, 5), ("middle", 1, 90), ("absent", 1, 0)]
    assert lexical.candidate_terms(terms, budget=100) == ["rare", "middle"]
    assert lexical.candidate_terms(terms, budget=10_000) == ["rare", "middle", "common"]
    # The rarest lexeme is always a candidate, even past the budget.
    assert lexical.candidate_terms(terms, budget=1) == ["rare"]
    assert lexical.candidate_terms([("absent", 1, 0)], budget=100) == []
    # Past a share of the scope, a lexeme finds no candidates of its own.
    assert lexical.candidate_terms(terms, budget=10_000, common=100) == ["rare", "middle"]
    assert lexical.candidate_terms([("common", 1, 900)], budget=10, common=100) == ["common"]


@pytest.mark.usefixtures("live_db")
def test_concurrent_publishes_in_one_collection_neither_deadlock_nor_lose_counts(
    people: Any,
) -> None:
    collection = actions.create_collection(people.carol, "Busy", people.hr, language="simple")
    rng = np.random.default_rng(3)
    vocabulary = [f"word{i}" for i in range(300)]
    documents = [
        stored_document(
            collection,
            [" ".join(rng.choice(vocabulary, size=80)) for _ in range(12)],
        )
        for _ in range(8)
    ]
    barrier = threading.Barrier(len(documents))
    outcomes: list[Any] = []

    def publish(document: Document) -> None:
        try:
            barrier.wait()
            outcomes.append(pipeline.publish(document))
        except Exception as exc:  # a deadlock surfaces here as an OperationalError
            outcomes.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=publish, args=(d,)) for d in documents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes == [pipeline.Published.YES] * len(documents)
    assert kept_statistics(collection) == expected_statistics(collection)
    assert kept_statistics(collection)["chunks"] == 8 * 12
