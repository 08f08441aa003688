"""The worker's side of ingestion, run in this process on the real database, the real
parse sandbox and the real embedding model: publish, new versions, failures, resume,
retry, cancel, the attempt limit and the reconciler. (The same code under real Celery
workers, killed and restarted, is in tests/e2e/test_ingest_reliability.py.)"""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from appliance.audit.models import Action, AuditEvent
from ingest import actions, embedding, pipeline, stages, storage, tasks
from ingest.models import Chunk, Collection, Document, Status
from tests.conftest import DOCUMENTS

TEXT_V1 = (DOCUMENTS / "book-war-and-peace-1p.txt").read_bytes()
TEXT_V2 = (DOCUMENTS / "norwich-city.txt").read_bytes()


@pytest.fixture
def collection(people: Any) -> Iterator[Collection]:
    created = actions.create_collection(people.carol, "Handbook", people.hr)
    storage.remove_collection_folder(created.pk)
    yield created
    storage.remove_collection_folder(created.pk)


def upload(people: Any, collection: Collection, name: str, data: bytes) -> Document:
    (result,) = actions.upload_documents(
        people.carol, collection, [actions.IncomingFile(name, io.BytesIO(data))]
    )
    assert result.document is not None, result.error
    return result.document


def visible_texts(user: Any) -> set[str]:
    return set(Chunk.objects.visible_to(user).values_list("text", flat=True))


def done_events(document: Document) -> int:
    return AuditEvent.objects.filter(action=Action.INGEST_DONE, object_id=str(document.pk)).count()


def test_a_pdf_becomes_chunks_with_pages_vectors_and_terms(
    people: Any, collection: Collection
) -> None:
    document = upload(
        people, collection, "memo.pdf", (DOCUMENTS / "pdf" / "reliance.pdf").read_bytes()
    )
    assert pipeline.process(document.pk) == "ready"
    document.refresh_from_db()
    assert (document.status, document.pages, document.pages_done) == ("ready", 3, 3)
    assert (
        document.chunks == document.chunks_done == Chunk.objects.filter(document=document).count()
    )
    assert document.live_version == document.version == 1
    chunks = list(Chunk.objects.filter(document=document).order_by("ordinal"))
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert {c.page for c in chunks} == {1, 2, 3}
    assert all(c.search_vector and len(c.embedding) == 384 for c in chunks)
    assert all(c.token_count <= embedding.max_tokens() - 2 for c in chunks)
    assert done_events(document) == 1


def test_a_new_version_replaces_the_old_chunks_in_one_step(
    people: Any, collection: Collection, django_capture_on_commit_callbacks: Any
) -> None:
    document = upload(people, collection, "handbook.txt", TEXT_V1)
    assert pipeline.process(document.pk) == "ready"
    old_texts = visible_texts(people.alice)
    old_file = storage.absolute(Document.objects.get(pk=document.pk).stored_path)
    upload(people, collection, "handbook.txt", TEXT_V2)

    claimed = pipeline.claim(document.pk)
    assert claimed is not None and claimed.version == 2
    stages.ingest(claimed)
    # All of version 2 is stored, and still only version 1 answers.
    assert Chunk.objects.filter(document=document, version=2).exists()
    assert visible_texts(people.alice) == old_texts
    with django_capture_on_commit_callbacks(execute=True):
        assert pipeline.publish(claimed)
    new_texts = visible_texts(people.alice)
    assert new_texts and not new_texts & old_texts
    assert not Chunk.objects.filter(document=document, version=1).exists()
    assert not old_file.exists()  # the replaced file went with its version
    document.refresh_from_db()
    assert (document.live_version, document.previous_stored_path) == (2, "")
    assert visible_texts(people.bob) == set()  # another department sees neither


def test_a_new_version_that_fails_leaves_the_old_one_answering(
    people: Any, collection: Collection
) -> None:
    document = upload(people, collection, "handbook.txt", TEXT_V1)
    pipeline.process(document.pk)
    old_texts = visible_texts(people.alice)
    upload(people, collection, "handbook.txt", b" \n\t\n   \n")
    assert pipeline.process(document.pk) == "failed"
    document.refresh_from_db()
    assert document.status == "failed" and "No text could be found" in document.error
    assert (document.version, document.live_version) == (2, 1)
    assert visible_texts(people.alice) == old_texts
    assert not Chunk.objects.filter(document=document, version=2).exists()


def test_an_interrupted_ingestion_resumes_without_embedding_twice(
    people: Any, collection: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = upload(people, collection, "book.txt", TEXT_V1)
    pipeline.process(document.pk)
    first = list(
        Chunk.objects.filter(document=document).order_by("ordinal").values_list("ordinal", "text")
    )
    assert len(first) >= 4
    # As a worker killed halfway leaves it: half the chunks stored, status embedding, the
    # lease run out, not yet published.
    half = len(first) // 2
    Chunk.objects.filter(document=document, ordinal__gte=half).delete()
    Document.objects.filter(pk=document.pk).update(
        status=Status.EMBEDDING,
        live_version=0,
        lease_until=timezone.now() - timedelta(seconds=1),
        attempts=1,
    )
    embedded: list[str] = []
    real_embed = embedding.embed
    monkeypatch.setattr(
        embedding, "embed", lambda texts, **kw: embedded.extend(texts) or real_embed(texts, **kw)
    )

    assert pipeline.process(document.pk) == "ready"
    again = list(
        Chunk.objects.filter(document=document).order_by("ordinal").values_list("ordinal", "text")
    )
    assert again == first
    assert len(embedded) == len(first) - half
    document.refresh_from_db()
    assert (document.attempts, document.chunks, document.chunks_done) == (2, len(first), len(first))


def test_a_failed_file_can_be_retried(people: Any, collection: Collection, tmp_path: Any) -> None:
    document = upload(
        people, collection, "memo.pdf", (DOCUMENTS / "pdf" / "fake-memo.pdf").read_bytes()
    )
    stored = storage.absolute(document.stored_path)
    shutil.move(stored, tmp_path / "away.pdf")
    assert pipeline.process(document.pk) == "failed"
    document.refresh_from_db()
    assert "missing from the appliance's storage" in document.error
    shutil.move(tmp_path / "away.pdf", stored)

    actions.retry_document(people.carol, document)
    assert (document.status, document.attempts, document.version) == ("queued", 0, 2)
    assert pipeline.process(document.pk) == "ready"
    assert AuditEvent.objects.filter(action=Action.UPLOAD, details__retry=True).count() == 1


def test_queued_work_can_be_cancelled_and_started_again(
    people: Any, collection: Collection
) -> None:
    document = upload(
        people, collection, "memo.pdf", (DOCUMENTS / "pdf" / "fake-memo.pdf").read_bytes()
    )
    actions.cancel_document(people.carol, document)
    assert document.status == "cancelled"
    assert pipeline.process(document.pk) == "skipped"  # the queued message finds it cancelled
    assert not Chunk.objects.filter(document=document).exists()
    actions.retry_document(people.carol, document)
    assert pipeline.process(document.pk) == "ready"
    # Only queued work can be cancelled.
    actions.cancel_document(people.carol, document)
    document.refresh_from_db()
    assert document.status == "ready"


def test_a_file_that_keeps_killing_its_worker_is_set_aside(
    people: Any, collection: Collection
) -> None:
    document = upload(
        people, collection, "memo.pdf", (DOCUMENTS / "pdf" / "fake-memo.pdf").read_bytes()
    )
    Document.objects.filter(pk=document.pk).update(
        status=Status.PARSING,
        attempts=pipeline.MAX_ATTEMPTS,
        lease_until=timezone.now() - timedelta(seconds=1),
    )
    assert pipeline.process(document.pk) == "skipped"
    document.refresh_from_db()
    assert document.status == "failed"
    assert f"stopped the ingestion worker {pipeline.MAX_ATTEMPTS} times" in document.error
    assert AuditEvent.objects.filter(
        action=Action.INGEST_FAILED, object_id=str(document.pk)
    ).exists()


def test_a_live_lease_keeps_a_second_worker_away(people: Any, collection: Collection) -> None:
    document = upload(
        people, collection, "memo.pdf", (DOCUMENTS / "pdf" / "fake-memo.pdf").read_bytes()
    )
    assert pipeline.claim(document.pk) is not None
    assert pipeline.claim(document.pk) is None  # held by the first, whose lease runs


def test_a_parse_over_the_time_limit_fails_alone_with_its_reason(
    people: Any, collection: Collection, settings: Any
) -> None:
    settings.INGEST_PARSE_TIME_LIMIT = 1
    slow = upload(
        people, collection, "winter.epub", (DOCUMENTS / "winter-sports.epub").read_bytes()
    )
    quick = upload(
        people, collection, "memo.pdf", (DOCUMENTS / "pdf" / "fake-memo.pdf").read_bytes()
    )
    assert pipeline.process(slow.pk) == "failed"
    slow.refresh_from_db()
    assert "took longer than" in slow.error
    assert pipeline.process(quick.pk) == "ready"


def test_the_reconciler_queues_again_what_lost_its_worker_or_its_message(
    people: Any, collection: Collection
) -> None:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("ingest")
    long_ago = timezone.now() - timedelta(seconds=settings.INGEST_LEASE_SECONDS * 2)
    orphan = upload(people, collection, "a.txt", TEXT_V1)
    lost = upload(people, collection, "b.txt", TEXT_V2)
    fresh = upload(people, collection, "c.pdf", (DOCUMENTS / "pdf" / "fake-memo.pdf").read_bytes())
    Document.objects.filter(pk=orphan.pk).update(status=Status.EMBEDDING, lease_until=long_ago)
    Document.objects.filter(pk=lost.pk).update(updated_at=long_ago)

    assert tasks.reconcile() == 2
    assert sorted(queued_ids(broker)) == sorted([orphan.pk, lost.pk])  # not the fresh one
    assert fresh.pk not in queued_ids(broker)
    assert tasks.reconcile() == 1  # the queue is not empty now: only the orphan again
    broker.delete("ingest")


def queued_ids(broker: redis.Redis) -> list[int]:
    """Document ids in the Celery messages waiting in the ingest queue."""
    ids = []
    for raw in broker.lrange("ingest", 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == "ingest.process_document"
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        ids.append(args[0])
    return ids


def test_task_time_limits_stay_below_the_queue_s_visibility_timeout() -> None:
    from ingest.tasks import process_document

    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert process_document.soft_time_limit < process_document.time_limit < visibility
    assert stages.sandbox().time_limit < process_document.soft_time_limit
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
