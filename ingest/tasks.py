from __future__ import annotations

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from ingest import pipeline
from ingest.models import Document


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
        return pipeline.process(document_id)
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
