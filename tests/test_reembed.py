"""Changing the embedding model: the vector length follows the model, and a collection
keeps answering from its old vectors until the new ones are complete.

The second model is all-MiniLM-L6-v2 with a fixed random projection to 128 dimensions
and a 128-token reading limit, saved as a real sentence-transformers folder: a genuinely
different model (other vectors, other length, other chunk sizes) built offline.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from appliance.audit.models import Action, AuditEvent
from inference.models import Citation, Question, QuestionStatus
from inference.retrieval import Params, search
from ingest import (
    actions,
    embedding,
    pipeline,
    reembed,
    search_statistics,
    stages,
    storage,
    tasks,
    vectors,
)
from ingest.models import Chunk, Collection, Document, LexicalCollection, LexicalTerm, Status
from tests.conftest import DOCUMENTS

WAR_AND_PEACE = (DOCUMENTS / "book-war-and-peace-1p.txt").read_bytes()
README = (DOCUMENTS / "README.md").read_bytes()
CODEBLOCK = (DOCUMENTS / "codeblock.md").read_bytes()
OLD = "all-MiniLM-L6-v2"

# Committed data: a new vector length means a new index, and PostgreSQL builds none in a
# transaction with pending foreign-key checks (as a test's enclosing transaction has).
pytestmark = pytest.mark.usefixtures("live_db")


@pytest.fixture(scope="session")
def narrow_model(tmp_path_factory: Any) -> str:
    """Absolute path of the 128-dimension model (a model name may be a path)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models

    folder = tmp_path_factory.mktemp("models") / "minilm-128"
    base = SentenceTransformer(str(embedding.path_of()), device="cpu", local_files_only=True)
    generator = torch.Generator().manual_seed(0)
    dense = models.Dense(384, 128, bias=False, activation_function=torch.nn.Identity())
    with torch.no_grad():
        dense.linear.weight.copy_(torch.randn(128, 384, generator=generator) / 128**0.5)
    narrow = SentenceTransformer(modules=[base[0], base[1], dense, models.Normalize()])
    narrow.max_seq_length = 128
    narrow.save(str(folder))
    return str(folder)


@pytest.fixture
def collection(people: Any) -> Iterator[Collection]:
    created = actions.create_collection(people.carol, "Library", people.hr)
    storage.remove_collection_folder(created.pk)
    yield created
    storage.remove_collection_folder(created.pk)


def ingested(people: Any, collection: Collection, name: str, data: bytes) -> Document:
    (result,) = actions.upload_documents(
        people.carol, collection, [actions.IncomingFile(name, io.BytesIO(data))], enqueue=False
    )
    assert result.document is not None, result.error
    assert pipeline.process(result.document.pk) == "ready"
    return Document.objects.get(pk=result.document.pk)


def ask(user: Any, text: str) -> list[Any]:
    return search(user, text, lambda model: embedding.embed([text], name=model)[0], k=5)


def live_chunk_ids(user: Any) -> set[int]:
    return set(Chunk.objects.visible_to(user).values_list("pk", flat=True))


def statistics(collection: Collection) -> tuple[Any, ...]:
    totals = LexicalCollection.objects.get(collection=collection)
    terms = dict(
        LexicalTerm.objects.filter(collection=collection).values_list(
            "lexeme", "document_frequency"
        )
    )
    return totals.chunk_count, totals.total_length, terms


def test_a_collection_moves_to_a_model_of_another_length_and_answers_throughout(
    people: Any, collection: Collection, narrow_model: str, monkeypatch: Any
) -> None:
    war = ingested(people, collection, "war.txt", WAR_AND_PEACE)
    readme = ingested(people, collection, "readme.md", README)
    old_ids = live_chunk_ids(people.alice)
    old_count = len(old_ids)
    question = "Prince Vasili and Anna Pavlovna at the soirée"
    assert ask(people.alice, question)[0].document_id == war.pk

    looked: list[set[str]] = []
    real = reembed._read_again

    def read_again_and_look(document: Document, model: str, report: Any) -> str:
        problem = real(document, model, report)
        # Mid-way the new chunks exist, and questions still see only the old ones.
        assert Chunk.objects.filter(collection=collection, embedding_model=model).exists()
        hits = ask(people.alice, question)
        assert hits[0].document_id == war.pk
        cited = Chunk.objects.filter(pk__in=[h.chunk_id for h in hits])
        looked.append(set(cited.values_list("embedding_model", flat=True)))
        visible = Chunk.objects.visible_to(people.alice)
        assert set(visible.values_list("embedding_model", flat=True)) == {OLD}
        if len(looked) == 1:  # an upload lands while the collection is being re-embedded
            ingested(people, collection, "codeblock.md", CODEBLOCK)
        return problem

    monkeypatch.setattr(reembed, "_read_again", read_again_and_look)
    report = reembed.reembed(people.erin, collection, narrow_model)

    assert report.switched and not report.failed
    assert report.documents == 3  # the late upload was read again in a second round
    assert looked == [{OLD}] * 3
    collection.refresh_from_db()
    assert (collection.embedding_model, collection.reembedding_to) == (narrow_model, "")

    # Only the new model's chunks remain: 128 dimensions, sized in its 128 tokens.
    chunks = Chunk.objects.filter(collection=collection)
    assert set(chunks.values_list("embedding_model", flat=True)) == {narrow_model}
    assert {len(v) for v in chunks.values_list("embedding", flat=True)} == {128}
    assert all(c.token_count <= 126 for c in chunks)
    assert chunks.filter(document__in=[war, readme]).count() > old_count  # smaller chunks
    assert not live_chunk_ids(people.alice) & old_ids

    # Answers now come from the new vectors, and the BM25 statistics are those of the
    # new chunks exactly (as a full recount finds them).
    hits = ask(people.alice, question)
    assert hits[0].document_id == war.pk and hits[0].score > 0.3
    counted = statistics(collection)
    search_statistics.rebuild([collection.pk])
    assert statistics(collection) == counted
    assert counted[0] == chunks.count()

    started, done = (
        AuditEvent.objects.filter(action=action, object_id=str(collection.pk)).get()
        for action in (Action.REEMBED_START, Action.REEMBED_DONE)
    )
    assert started.details["to"] == narrow_model and started.details["dimensions"] == 128
    assert done.details["from"] == OLD and done.details["documents"] == 3
    assert started.actor == done.actor == "erin"


def test_the_new_length_has_its_own_hnsw_index_used_by_large_scopes(
    people: Any, collection: Collection, narrow_model: str
) -> None:
    ingested(people, collection, "war.txt", WAR_AND_PEACE)
    assert reembed.reembed(None, collection, narrow_model).switched
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'chunk_embedding_hnsw_128'"
        )
        (definition,) = cursor.fetchone()
    assert "vector(128)" in definition and "vector_dims(embedding) = 128" in definition
    with CaptureQueriesContext(connection) as captured:
        question = "Anna Pavlovna"
        vector = embedding.embed([question], name=narrow_model)[0]
        search(people.alice, "", vector, k=3, mode="dense", params=Params(exact_scan_max_chunks=0))
    ranking = next(q["sql"] for q in captured.captured_queries if "dense0 AS" in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("EXPLAIN " + ranking)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "chunk_embedding_hnsw_128" in plan


def test_a_document_read_with_the_old_model_is_read_again_after_the_switch(
    people: Any,
    collection: Collection,
    narrow_model: str,
    monkeypatch: Any,
) -> None:
    queued: list[int] = []
    monkeypatch.setattr(tasks.process_document, "delay", queued.append)
    (result,) = actions.upload_documents(
        people.carol,
        collection,
        [actions.IncomingFile("war.txt", io.BytesIO(WAR_AND_PEACE))],
        enqueue=False,
    )
    document = pipeline.claim(result.document.pk)
    assert document is not None
    stages.ingest(document)  # read with all-MiniLM-L6-v2 ...
    assert reembed.reembed(None, collection, narrow_model).switched  # ... which then left
    assert pipeline.publish(document) is pipeline.Published.READ_AGAIN
    document.refresh_from_db()
    assert document.status == Status.QUEUED and document.live_version == 0
    assert not Chunk.objects.filter(document=document).exists()
    assert queued == []
    # The task, finding a document that must be read again, queues it for another reading.
    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "process", lambda _: pipeline.Published.READ_AGAIN.value)
        assert tasks.process_document(document.pk) == "read again"
    assert queued == [document.pk]
    assert pipeline.process(document.pk) == "ready"
    chunks = Chunk.objects.filter(document=document)
    assert set(chunks.values_list("embedding_model", flat=True)) == {narrow_model}
    assert ask(people.alice, "Anna Pavlovna")[0].document_id == document.pk


def test_a_document_that_cannot_be_read_again_keeps_the_old_model_answering(
    people: Any, collection: Collection, narrow_model: str
) -> None:
    war = ingested(people, collection, "war.txt", WAR_AND_PEACE)
    lost = ingested(people, collection, "readme.md", README)
    storage.absolute(lost.stored_path).unlink()
    old_ids = live_chunk_ids(people.alice)

    with pytest.raises(CommandError, match="still answer from their old model"):
        call_command("reembed_collection", str(collection.pk), "--model", narrow_model)

    collection.refresh_from_db()
    assert collection.embedding_model == OLD
    assert collection.reembedding_to == narrow_model
    assert live_chunk_ids(people.alice) == old_ids
    assert ask(people.alice, "Anna Pavlovna")[0].document_id == war.pk
    # The readable document's new chunks are kept: deleting the lost one and running the
    # command again finishes without reading it twice.
    war.refresh_from_db()
    assert war.reembedded_version == war.live_version
    actions.delete_document(people.carol, lost)
    out = io.StringIO()
    call_command("reembed_collection", "--all", "--model", narrow_model, stdout=out)
    assert "answers now come from" in out.getvalue()
    assert "0 document(s)" in out.getvalue()
    collection.refresh_from_db()
    assert collection.embedding_model == narrow_model


def test_a_missing_model_is_refused_before_anything_changes(
    people: Any, collection: Collection, tmp_path: Path
) -> None:
    ingested(people, collection, "war.txt", WAR_AND_PEACE)
    with pytest.raises(CommandError, match="No sentence-transformers model"):
        call_command("reembed_collection", str(collection.pk), "--model", str(tmp_path / "none"))
    collection.refresh_from_db()
    assert collection.reembedding_to == ""
    assert not AuditEvent.objects.filter(action=Action.REEMBED_START).exists()


def test_new_collections_take_the_configured_model(
    people: Any, settings: Any, narrow_model: str
) -> None:
    settings.EMBEDDING_MODEL = narrow_model
    created = actions.create_collection(people.carol, "Norsk", people.hr, "norwegian")
    try:
        assert created.embedding_model == narrow_model
        document = ingested(people, created, "war.txt", WAR_AND_PEACE)
        lengths = Chunk.objects.filter(document=document).values_list("embedding", flat=True)
        assert {len(v) for v in lengths} == {128}
        assert vectors.index_name(128) == "chunk_embedding_hnsw_128"
    finally:
        storage.remove_collection_folder(created.pk)


def test_a_cited_passage_can_be_replaced(people: Any, collection: Collection) -> None:
    """Publishing a new version deletes the old chunks with raw SQL; the citation keeps its
    text and loses its link (before, the foreign key failed the publish at commit)."""
    document = ingested(people, collection, "war.txt", WAR_AND_PEACE)
    chunk = Chunk.objects.filter(document=document).first()
    question = Question.objects.create(
        user=people.alice, text="Who?", status=QuestionStatus.DONE, answer="A [1]", model="test"
    )
    citation = Citation.objects.create(
        question=question, n=1, chunk=chunk, document=document, title="war", snippet="x"
    )
    actions.upload_documents(
        people.carol,
        collection,
        [actions.IncomingFile("war.txt", io.BytesIO(README))],
        enqueue=False,
    )
    assert pipeline.process(document.pk) == "ready"  # committed: the foreign key held
    citation.refresh_from_db()
    assert citation.chunk_id is None and citation.snippet == "x"
