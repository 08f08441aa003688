"""Ingesting one document: claim it, parse, chunk, embed, store, and publish the new
version in one transaction. Safe to run twice and to resume after a killed worker."""

from __future__ import annotations

import enum
import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.db.models import F, Q
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError

from appliance import logs, metrics, redis_client
from appliance.audit import actions as audit
from appliance.audit.models import Action
from ingest import search_statistics, stages, storage
from ingest.failures import reason_label
from ingest.models import Collection, Document, Status
from ingest.parsing import ParseError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# Errors that say nothing about the file: the database or Redis was away for a moment.
TEMPORARY_ERRORS = (OperationalError, InterfaceError, RedisConnectionError)
_ACTIVE = (Status.QUEUED, Status.PARSING, Status.EMBEDDING)
# How long a worker's hold on a document lasts unless renewed (a third of it apart).
LEASE_SECONDS = settings.INGEST_LEASE_SECONDS


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
    with logs.bound(document_id=document_id):
        document = claim(document_id)
        if document is None:
            return "skipped"
        with _LeaseKeeper(document.pk):
            outcome = _process(document, document_id)
        log.info(
            "document %s: %s",
            document_id,
            outcome,
            extra={"event": "document.finished", "outcome": outcome, "format": document.kind},
        )
        return outcome


class _LeaseKeeper:
    """Renews the document's lease from a thread while this process works on it, so a long
    parse is never mistaken for a dead worker; the lease lapses only when the process dies."""

    def __init__(self, document_id: int) -> None:
        self.document_id = document_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lease", daemon=True)

    def _run(self) -> None:
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
        outcome = stages.ingest(document)
        if not outcome.chunks:
            raise ParseError(
                "No text could be found in this file. If it is a scan or a picture, check "
                "that it is legible; if it is a form, upload a version with its text."
            )
        return publish(document).value
    except ParseError as exc:
        fail(document, str(exc))
        return "failed"
    except FileNotFoundError:
        fail(
            document, "The uploaded file is missing from the appliance's storage; upload it again."
        )
        return "failed"
    except IntegrityError:
        if not Document.objects.filter(pk=document.pk, version=document.version).exists():
            return "gone"  # deleted or replaced while it was being read
        raise
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


class Published(enum.Enum):
    """What ``publish()`` did; true only when the version went live."""

    YES = "ready"
    NO = "not published"  # deleted, or replaced by a newer upload meanwhile
    READ_AGAIN = "read again"  # read with a model its collection no longer uses: requeued

    def __bool__(self) -> bool:
        return self is Published.YES


def publish(document: Document, model: str | None = None) -> Published:
    """Make the new version the one that answers, and drop every other, atomically.

    ``model`` is the embedding model the version's chunks were made with (the collection's
    when the ingestion began). Should the collection have moved to another model meanwhile
    (``reembed_collection`` finished), those chunks would never answer: they are dropped
    and the document is set back to queued (``READ_AGAIN``: the caller queues it, see
    ``ingest.tasks``), to be read with the new model."""

    model = model or document.collection.embedding_model
    with transaction.atomic():
        locked = (
            Document.objects.select_for_update()
            .filter(pk=document.pk, version=document.version)
            .first()
        )
        if locked is None or locked.status not in _ACTIVE:
            return Published.NO
        # The collection's statistics lock also orders this publish against a model switch.
        search_statistics.lock_collection(locked.collection_id)
        current = Collection.objects.values_list("embedding_model", flat=True).get(
            pk=locked.collection_id
        )
        if current != model:
            _set_back_to_queued(locked, model)
            return Published.READ_AGAIN
        search_statistics.count_live_version(locked.collection_id, locked.pk, locked.version, model)
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM ingest_chunk WHERE document_id = %s "
                "AND (version <> %s OR embedding_model <> %s)",
                [locked.pk, locked.version, model],
            )
            cursor.execute(
                "SELECT count(*) FROM ingest_chunk WHERE document_id = %s AND version = %s",
                [locked.pk, locked.version],
            )
            (count,) = cursor.fetchone()
        if locked.previous_stored_path:  # the file of the version that answered until now
            replaced = locked.previous_stored_path
            transaction.on_commit(lambda: storage.remove(replaced))
            locked.previous_stored_path = ""
        locked.status = Status.READY
        locked.lease_until = None
        locked.live_version = locked.version
        locked.chunks = locked.chunks_done = count
        locked.error = ""
        locked.finished_at = timezone.now()
        locked.save(
            update_fields=[
                "status",
                "previous_stored_path",
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
    metrics.document_finished("ready", locked.kind)
    return Published.YES


def _set_back_to_queued(locked: Document, stale_model: str) -> None:
    """The version was read with a model its collection no longer uses: start it over."""
    log.info(
        "document %s was read with %s, no longer its collection's model", locked.pk, stale_model
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM ingest_chunk WHERE document_id = %s AND version = %s "
            "AND embedding_model = %s",
            [locked.pk, locked.version, stale_model],
        )
    Document.objects.filter(pk=locked.pk).update(
        status=Status.QUEUED,
        attempts=0,
        lease_until=None,
        chunks_done=0,
        pages_done=0,
        updated_at=timezone.now(),
    )


def fail(document: Document, reason: str) -> None:
    """Mark this version failed with ``reason`` and drop the chunks it had stored. The live
    version, if an earlier one exists, keeps answering; a newer upload is left alone."""
    log.info("document %s failed: %s", document.pk, reason)
    with transaction.atomic():
        updated = (
            Document.objects.filter(pk=document.pk, version=document.version)
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
            with connection.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM ingest_chunk WHERE document_id = %s AND version = %s "
                    "AND version <> (SELECT live_version FROM ingest_document WHERE id = %s)",
                    [document.pk, document.version, document.pk],
                )
            audit.record(Action.INGEST_FAILED, obj=document, details={"reason": reason[:500]})
    if updated:
        metrics.document_finished("failed", document.kind, reason_label(reason))


def documents_to_queue_again() -> list[int]:
    """What lost its worker or its queue message (``ingest.tasks.reconcile`` queues them).

    - parsing/embedding with an expired lease: the worker died (SIGKILL, out of memory,
      host restart); another attempt is queued (claim counts attempts and gives up after
      MAX_ATTEMPTS).
    - queued while the ingest queue is empty: the message was lost (e.g. Redis restarted
      without persistence). A duplicate message is harmless: claim lets only one through.
    """
    now = timezone.now()
    stale = Document.objects.filter(status__in=[Status.PARSING, Status.EMBEDDING]).filter(
        Q(lease_until__lt=now)
        | Q(lease_until__isnull=True, updated_at__lt=now - timedelta(seconds=LEASE_SECONDS))
    )
    ids = list(stale.values_list("pk", flat=True)[:1000])
    if redis_client.queue_length("ingest") == 0:
        waiting = Document.objects.filter(
            status=Status.QUEUED, updated_at__lt=now - timedelta(seconds=LEASE_SECONDS / 2)
        )
        ids += list(waiting.order_by("pk").values_list("pk", flat=True)[:1000])
    return ids
