"""The ingest queue: the Celery task that reads one document, and every way work is put on
that queue (after an upload commits, after a model switch, by the reconciler)."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction

from ingest import pipeline
from ingest.models import Document

log = logging.getLogger(__name__)


@shared_task(
    name="ingest.process_document",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.INGEST_TASK_TIME_LIMIT - 30,
    time_limit=settings.INGEST_TASK_TIME_LIMIT,
    autoretry_for=pipeline.TEMPORARY_ERRORS,
    retry_backoff=5,
    max_retries=5,
)
def process_document(document_id: int) -> str:
    try:
        outcome = pipeline.process(document_id)
    except SoftTimeLimitExceeded:
        document = Document.objects.filter(pk=document_id).first()
        if document is not None:
            pipeline.fail(
                document,
                "Reading this file took longer than the appliance allows "
                f"({settings.INGEST_TASK_TIME_LIMIT // 60} minutes). Split it into smaller "
                "files and upload those.",
            )
        return "failed"
    if outcome == pipeline.Published.READ_AGAIN.value:
        process_document.delay(document_id)
    return outcome


def enqueue_after_commit(document_id: int) -> None:
    """Queue the document once the caller's transaction commits (a worker must find the
    row it is sent)."""
    transaction.on_commit(lambda: process_document.delay(document_id))


def reconcile() -> int:
    """Queue again what lost its worker or its queue message. Returns how many."""
    ids = pipeline.documents_to_queue_again()
    for document_id in ids:
        process_document.delay(document_id)
    if ids:
        log.info("reconciler queued %d document(s) again: %s", len(ids), ids[:20])
    return len(ids)
