"""Ingestion survives its worker being killed and its queue being lost, on the real stack:
uvicorn, a real Celery ingest worker, PostgreSQL and the test's own Redis database."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from appliance.audit.models import Action, AuditEvent
from ingest.models import Chunk, Collection, Document, Status
from tests.conftest import DOCUMENTS
from tests.e2e.test_pipeline import upload
from tests.support.stack import Stack, wait_for

pytestmark = [pytest.mark.services]

LEASE_SECONDS = 10  # a dead worker's document is taken over after this


def restart_ingest_worker(stack: Stack, sig: int, env: dict[str, str]) -> None:
    stack.stop("ingest", sig)
    saved = dict(stack.env)
    stack.env.update(env)
    try:
        stack.start_worker("ingest")
    finally:
        stack.env.clear()
        stack.env.update(saved)
    stack.wait_healthy()


@pytest.fixture
def short_lease(stack: Stack) -> Iterator[dict[str, str]]:
    """The ingest worker with a short lease (so the test waits seconds, not minutes),
    and the usual one again afterwards."""
    env = {"APPLIANCE_INGEST_LEASE_SECONDS": str(LEASE_SECONDS)}
    restart_ingest_worker(stack, signal.SIGTERM, env)
    yield env
    restart_ingest_worker(stack, signal.SIGTERM, {})


@pytest.fixture
def collection(people: Any, live_db: Any) -> Collection:
    from ingest import actions

    return actions.create_collection(people.carol, "Reliability", people.hr)


def done_events(document_id: int) -> int:
    return AuditEvent.objects.filter(action=Action.INGEST_DONE, object_id=str(document_id)).count()


def assert_ready_once_without_duplicates(document_id: int) -> Document:
    document = Document.objects.get(pk=document_id)
    assert document.status == Status.READY, document.error
    assert done_events(document_id) == 1
    chunks = Chunk.objects.filter(document_id=document_id)
    ordinals = sorted(chunks.values_list("ordinal", flat=True))
    assert ordinals == list(range(document.chunks))
    assert set(chunks.values_list("version", flat=True)) == {document.live_version}
    return document


@pytest.mark.timeout(1500)  # 3,300 chunks of a 619-page PDF, embedded on two shared cores
def test_a_worker_killed_while_embedding_resumes_and_finishes_exactly_once(
    people: Any, api_for: Any, stack: Stack, collection: Collection, short_lease: Any
) -> None:
    api = api_for(people.carol)
    (sent,) = upload(api, collection, "pdf/DA-619p.pdf")
    document_id = sent["id"]

    def embedding_started() -> Document | None:
        document = Document.objects.get(pk=document_id)
        assert document.status not in (Status.READY, Status.FAILED), document.error
        return document if document.chunks_done > 0 else None

    wait_for(embedding_started, timeout=300, interval=0.2, message="the first chunks stored")
    stack.stop("ingest", signal.SIGKILL)  # the whole process group, without warning
    killed = Document.objects.get(pk=document_id)
    stored_before = dict(Chunk.objects.filter(document_id=document_id).values_list("ordinal", "id"))
    assert killed.status in (Status.PARSING, Status.EMBEDDING)
    assert 0 < len(stored_before) < 1000, "killed too late to test resuming"

    # The lease runs out; a new worker's reconciler finds the document and takes it over.
    wait_for(
        lambda: Document.objects.get(pk=document_id).lease_until < timezone.now(),
        timeout=LEASE_SECONDS + 30,
        message="the dead worker's lease to lapse",
    )
    restart_ingest_worker(stack, signal.SIGKILL, short_lease)
    wait_for(
        lambda: Document.objects.get(pk=document_id).status in (Status.READY, Status.FAILED),
        timeout=900,
        interval=1,
        message="the document to finish after the restart",
    )
    document = assert_ready_once_without_duplicates(document_id)
    assert document.attempts == 2
    assert document.pages == 619 and document.chunks > 1000
    # What was stored before the kill was kept, not embedded and written again.
    after = dict(Chunk.objects.filter(document_id=document_id).values_list("ordinal", "id"))
    assert all(after[ordinal] == chunk_id for ordinal, chunk_id in stored_before.items())


def test_queued_work_whose_queue_messages_were_lost_is_queued_again(
    people: Any, api_for: Any, stack: Stack, collection: Collection, short_lease: Any
) -> None:
    stack.stop("ingest", signal.SIGTERM)
    api = api_for(people.carol)
    documents = upload(api, collection, "pdf/fake-memo.pdf", "handbook-1p.docx")
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    wait_for(lambda: broker.llen("ingest") == 2, timeout=10, message="two queued messages")
    # Redis lost its data (a restart without persistence): only this test's own database.
    broker.flushdb()
    assert broker.llen("ingest") == 0
    time.sleep(LEASE_SECONDS / 2 + 1)  # queued for longer than a new message would take

    restart_ingest_worker(stack, signal.SIGTERM, short_lease)
    for sent in documents:
        wait_for(
            lambda d=sent["id"]: Document.objects.get(pk=d).status in (Status.READY, Status.FAILED),
            timeout=300,
            message=f"document {sent['id']} to finish",
        )
        assert_ready_once_without_duplicates(sent["id"])


def test_a_hostile_batch_fails_file_by_file_through_the_workers(
    people: Any, api_for: Any, collection: Collection, tmp_path: Any
) -> None:
    api = api_for(people.carol)
    hostile = [
        ("files", ("locked.xlsx", (DOCUMENTS / "password_protected.xlsx").read_bytes())),
        ("files", ("encrypted.eml", (DOCUMENTS / "eml" / "fake-encrypted.eml").read_bytes())),
        ("files", ("photo.pdf", (DOCUMENTS / "img" / "DA-1p.png").read_bytes())),
        ("files", ("scan.pdf", (DOCUMENTS / "pdf" / "loremipsum-flat.pdf").read_bytes())),
        ("files", ("memo.pdf", (DOCUMENTS / "pdf" / "fake-memo.pdf").read_bytes())),
    ]
    response = api.post(f"/api/v1/collections/{collection.pk}/documents", files=hostile)
    assert response.status_code == 202, response.text
    by_name = {d["name"]: d for d in response.json()["documents"]}
    assert "Rename it to .png" in by_name["photo.pdf"]["error"]  # refused at upload
    final = {}
    for name in ("locked.xlsx", "encrypted.eml", "scan.pdf", "memo.pdf"):
        document_id = by_name[name]["id"]
        final[name] = wait_for(
            lambda d=document_id: (
                body
                if (body := api.get(f"/api/v1/documents/{d}").json())["status"]
                in ("ready", "failed")
                else None
            ),
            timeout=300,
            message=f"{name} to finish",
        )
    assert "Password-protected Excel" in final["locked.xlsx"]["error"]
    assert "encrypted" in final["encrypted.eml"]["error"]
    assert final["scan.pdf"]["status"] == "ready"  # read by OCR
    assert final["memo.pdf"]["status"] == "ready"
    ocr = Chunk.objects.filter(document_id=final["scan.pdf"]["id"]).values_list("text", flat=True)
    assert "lorem ipsum" in " ".join(ocr).lower()
