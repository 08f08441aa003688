"""Ingesting one document: claim it, parse, chunk, embed, store, and publish the new
version in one transaction. Safe to run twice and to resume after a killed worker."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from appliance.audit import actions as audit
from appliance.audit.models import Action
from ingest import embedding, storage
from ingest.chunking import ChunkDraft, chunk_blocks
from ingest.models import Document, Status
from ingest.parsing import ParseError, parse

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# Errors that say nothing about the file: the database or Redis was away for a moment.
TEMPORARY_ERRORS = (OperationalError, InterfaceError, RedisConnectionError)
INSERT_BATCH = 64
_ACTIVE = (Status.QUEUED, Status.PARSING, Status.EMBEDDING)


LEASE_SECONDS = 60


def _claimable() -> Q:
    """Queued, or in work by a worker whose lease ran out (it died)."""
    expired = Q(lease_until__isnull=True) | Q(lease_until__lt=timezone.now())
    return Q(status=Status.QUEUED) | (Q(status__in=[Status.PARSING, Status.EMBEDDING]) & expired)


def claim(document_id: int) -> Document | None:
    """Take the document if it still wants work and no live worker holds it; None when it
    is gone, final, held by another worker, or given up on."""
    now = timezone.now()
    claimed = (
        Document.objects.filter(pk=document_id)
        .filter(_claimable())
        .update(
            status=Status.PARSING,
            attempts=F("attempts") + 1,
            lease_until=now + timedelta(seconds=LEASE_SECONDS),
            started_at=now,
            updated_at=now,
        )
    )
    if not claimed:
        return None
    document = Document.objects.select_related("collection").get(pk=document_id)
    if document.attempts > MAX_ATTEMPTS:
        fail(
            document,
            f"This file stopped the ingestion worker {MAX_ATTEMPTS} times, so it was set "
            "aside. It may be too large or malformed; try a smaller or re-saved copy.",
        )
        return None
    return document


def process(document_id: int) -> str:
    document = claim(document_id)
    if document is None:
        return "skipped"
    with _LeaseKeeper(document.pk):
        return _process(document, document_id)


class _LeaseKeeper:
    """Renews the document's lease from a thread while this process works on it, so a long
    parse is never mistaken for a dead worker; the lease lapses only when the process dies."""

    def __init__(self, document_id: int) -> None:
        self.document_id = document_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lease", daemon=True)

    def _run(self) -> None:
        from django.db import connections

        try:
            while not self.stop.wait(LEASE_SECONDS / 3):
                Document.objects.filter(pk=self.document_id, status__in=_ACTIVE).update(
                    lease_until=timezone.now() + timedelta(seconds=LEASE_SECONDS)
                )
        except Exception:
            log.warning("could not renew the lease of document %s", self.document_id, exc_info=True)
        finally:
            connections.close_all()

    def __enter__(self) -> _LeaseKeeper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def _process(document: Document, document_id: int) -> str:
    try:
        drafts = list(_drafts(document))
        if not drafts:
            raise ParseError(
                "No text could be found in this file. If it is a scan or a picture, upload a "
                "version with selectable text."
            )
        _embed_and_store(document, drafts)
        return "ready" if publish(document) else "gone"
    except ParseError as exc:
        fail(document, str(exc))
        return "failed"
    except FileNotFoundError:
        fail(
            document, "The uploaded file is missing from the appliance's storage; upload it again."
        )
        return "failed"
    except TEMPORARY_ERRORS:
        raise  # the task retries these
    except Exception as exc:
        log.exception("document %s: unexpected error", document_id)
        fail(
            document,
            f"An unexpected error stopped the reading of this file ({type(exc).__name__}). "
            "Retry it; if it fails again, tell your IT team (details are in the ingest log).",
        )
        return "failed"


def _drafts(document: Document) -> Iterator[ChunkDraft]:
    path = storage.absolute(document.stored_path)
    last_update = 0.0

    def progress(done: int, total: int | None) -> None:
        nonlocal last_update
        now = time.monotonic()
        if now - last_update < 0.5 and total != done:
            return
        last_update = now
        fields: dict[str, Any] = {"pages_done": done, "updated_at": timezone.now()}
        if total is not None:
            fields["pages"] = total
        Document.objects.filter(pk=document.pk).update(**fields)

    blocks = parse(path, document.kind, progress)
    limit = embedding.max_tokens() - 2  # [CLS] and [SEP]
    yield from chunk_blocks(
        blocks,
        embedding.count_tokens,
        target_tokens=settings.CHUNK_TOKENS,
        overlap_tokens=settings.CHUNK_OVERLAP_TOKENS,
        limit_tokens=limit,
    )


def _embed_and_store(document: Document, drafts: list[ChunkDraft]) -> None:
    fields: dict[str, Any] = {
        "status": Status.EMBEDDING,
        "chunks": len(drafts),
        "updated_at": timezone.now(),
    }
    pages = max((d.page or 0 for d in drafts), default=0)
    if pages:
        fields.update(pages=pages, pages_done=pages)
    Document.objects.filter(pk=document.pk).update(**fields)
    # Resume: ordinals stored by an earlier, interrupted attempt are not embedded again.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ordinal FROM ingest_chunk WHERE document_id = %s AND version = %s",
            [document.pk, document.version],
        )
        done = {row[0] for row in cursor.fetchall()}
    todo = [(ordinal, d) for ordinal, d in enumerate(drafts) if ordinal not in done]
    stored = len(done)
    for start in range(0, len(todo), INSERT_BATCH):
        batch = todo[start : start + INSERT_BATCH]
        vectors = embedding.embed([d.embedding_text() for _, d in batch])
        _insert(document, batch, vectors)
        stored += len(batch)
        Document.objects.filter(pk=document.pk).update(
            chunks_done=stored, updated_at=timezone.now()
        )


def _insert(document: Document, batch: list[tuple[int, ChunkDraft]], vectors: Any) -> None:
    language = document.collection.language
    rows = [
        (
            document.pk,
            document.collection_id,
            document.version,
            ordinal,
            draft.page,
            draft.section,
            draft.text,
            draft.token_count,
            "[" + ",".join(f"{x:.7g}" for x in vector) + "]",
            language,
            f"{draft.section}\n{draft.text}" if draft.section else draft.text,
        )
        for (ordinal, draft), vector in zip(batch, vectors, strict=True)
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO ingest_chunk
                (document_id, collection_id, version, ordinal, page, section, text,
                 token_count, embedding, search_vector)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::vector, to_tsvector(%s::regconfig, %s))
            ON CONFLICT (document_id, version, ordinal) DO NOTHING
            """,
            rows,
        )


def publish(document: Document) -> bool:
    """Make the new version the one that answers, and drop every other, atomically."""
    with transaction.atomic():
        locked = (
            Document.objects.select_for_update()
            .filter(pk=document.pk, version=document.version)
            .first()
        )
        if locked is None or locked.status not in _ACTIVE:
            return False  # deleted, or replaced by a newer upload meanwhile
        from inference import lexical  # BM25 statistics move before the old chunks go

        lexical.count_live_version(locked.collection_id, locked.pk, locked.version)
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM ingest_chunk WHERE document_id = %s AND version <> %s",
                [locked.pk, locked.version],
            )
            cursor.execute(
                "SELECT count(*) FROM ingest_chunk WHERE document_id = %s AND version = %s",
                [locked.pk, locked.version],
            )
            (count,) = cursor.fetchone()
        locked.status = Status.READY
        locked.lease_until = None
        locked.live_version = locked.version
        locked.chunks = locked.chunks_done = count
        locked.error = ""
        locked.finished_at = timezone.now()
        locked.save(
            update_fields=[
                "status",
                "lease_until",
                "live_version",
                "chunks",
                "chunks_done",
                "error",
                "finished_at",
                "updated_at",
            ]
        )
        audit.record(
            Action.INGEST_DONE,
            obj=locked,
            details={"chunks": count, "pages": locked.pages, "version": locked.version},
        )
    return True


def fail(document: Document, reason: str) -> None:
    log.info("document %s failed: %s", document.pk, reason)
    with transaction.atomic():
        updated = (
            Document.objects.filter(pk=document.pk)
            .filter(Q(status__in=_ACTIVE))
            .update(
                status=Status.FAILED,
                lease_until=None,
                error=reason,
                finished_at=timezone.now(),
                updated_at=timezone.now(),
            )
        )
        if updated:
            audit.record(Action.INGEST_FAILED, obj=document, details={"reason": reason[:500]})


def reconcile() -> int:
    """Queue again what lost its worker or its queue message. Returns how many.

    - parsing/embedding with an expired lease: the worker died (SIGKILL, out of memory,
      host restart); another attempt is queued (claim counts attempts and gives up after
      MAX_ATTEMPTS).
    - queued while the ingest queue is empty: the message was lost (e.g. Redis restarted
      without persistence). A duplicate message is harmless: claim lets only one through.
    """
    from ingest.tasks import process_document

    now = timezone.now()
    stale = Document.objects.filter(status__in=[Status.PARSING, Status.EMBEDDING]).filter(
        Q(lease_until__lt=now)
        | Q(lease_until__isnull=True, updated_at__lt=now - timedelta(seconds=LEASE_SECONDS))
    )
    ids = list(stale.values_list("pk", flat=True)[:1000])
    if _queue_length("ingest") == 0:
        waiting = Document.objects.filter(
            status=Status.QUEUED, updated_at__lt=now - timedelta(seconds=30)
        )
        ids += list(waiting.order_by("pk").values_list("pk", flat=True)[:1000])
    for document_id in ids:
        process_document.delay(document_id)
    if ids:
        log.info("reconciler queued %d document(s) again: %s", len(ids), ids[:20])
    return len(ids)


def _queue_length(queue: str) -> int:
    from inference.events import client

    try:
        return int(client().llen(queue))
    except Exception:
        return -1
