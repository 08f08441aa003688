"""Every change to collections and documents. Each runs in one transaction, writes its audit
row last in that transaction, and queues background work only after commit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from appliance.accounts.models import Department
from appliance.audit import actions as audit
from appliance.audit.models import Action
from ingest import archives, storage
from ingest.models import Collection, CollectionShare, Document, Status
from ingest.parsing import UnsupportedFile, kind_for_name


@dataclass
class IncomingFile:
    name: str
    stream: BinaryIO


@dataclass
class UploadResult:
    document: Document | None
    name: str
    duplicate: bool = False
    error: str = ""


def create_collection(
    actor: Any, name: str, department: Department, language: str = "english"
) -> Collection:
    with transaction.atomic():
        collection = Collection.objects.create(name=name, department=department, language=language)
        audit.record(
            Action.COLLECTION_CREATE,
            actor=actor,
            obj=collection,
            details={"name": name, "department": department.name, "language": language},
        )
    return collection


def upload_documents(
    actor: Any, collection: Collection, files: Iterable[IncomingFile]
) -> list[UploadResult]:
    """Store each file and queue it. A file the appliance cannot take is refused alone with
    its reason; a file already in the collection (same SHA-256) is not ingested twice."""
    results: list[UploadResult] = []
    for incoming in files:
        name = storage.safe_display_name(incoming.name)
        try:
            kind = kind_for_name(name)
        except UnsupportedFile as exc:
            results.append(UploadResult(None, name, error=str(exc)))
            continue
        if kind == "zip":
            results.extend(_upload_archive(actor, collection, incoming, name))
            continue
        results.append(_upload_one(actor, collection, incoming.stream, name, kind))
    return results


def _upload_archive(
    actor: Any, collection: Collection, incoming: IncomingFile, name: str
) -> list[UploadResult]:
    results: list[UploadResult] = []
    try:
        for entry in archives.entries(incoming.stream, name):
            inner = storage.safe_display_name(entry.name)
            if entry.skipped_reason:
                results.append(UploadResult(None, entry.name, error=entry.skipped_reason))
                continue
            try:
                kind = kind_for_name(inner)
            except UnsupportedFile as exc:
                results.append(UploadResult(None, entry.name, error=str(exc)))
                continue
            try:
                results.append(_upload_one(actor, collection, entry.stream, inner, kind))
            except archives.ArchiveError as exc:
                results.append(UploadResult(None, entry.name, error=str(exc)))
    except archives.ArchiveError as exc:
        results.append(UploadResult(None, name, error=str(exc)))
    return results


def _upload_one(
    actor: Any, collection: Collection, stream: BinaryIO, name: str, kind: str
) -> UploadResult:
    relative, sha256, size = storage.store(stream, collection.pk, Path(name).suffix)
    if size == 0:
        storage.remove(relative)
        return UploadResult(None, name, error="The file is empty.")
    with transaction.atomic():
        existing = (
            Document.objects.select_for_update()
            .filter(collection=collection, sha256=sha256)
            .first()
        )
        if existing is not None:
            transaction.on_commit(lambda: storage.remove(relative))
            return UploadResult(existing, name, duplicate=True)
        document = Document.objects.create(
            collection=collection,
            title=Path(name).stem[:300] or name,
            original_name=name,
            stored_path=relative,
            sha256=sha256,
            size_bytes=size,
            kind=kind,
            uploaded_by=actor if getattr(actor, "pk", None) else None,
        )
        audit.record(
            Action.UPLOAD,
            actor=actor,
            obj=document,
            details={"collection_id": collection.pk, "name": name, "sha256": sha256, "bytes": size},
        )
        _enqueue_after_commit(document.pk)
    return UploadResult(document, name)


def _enqueue_after_commit(document_id: int) -> None:
    from ingest.tasks import process_document

    transaction.on_commit(lambda: process_document.delay(document_id))


def delete_document(actor: Any, document: Document) -> None:
    """Gone at once: the row and every chunk in one statement, the file after commit."""
    with transaction.atomic():
        locked = Document.objects.select_for_update().filter(pk=document.pk).first()
        if locked is None:
            return
        path = locked.stored_path
        details = {"collection_id": locked.collection_id, "title": locked.title}
        from inference import lexical  # BM25 statistics forget it before its chunks go

        lexical.forget_document(locked.collection_id, locked.pk)
        locked.delete()
        audit.record(
            Action.DOCUMENT_DELETE,
            actor=actor,
            object_type="document",
            object_id=document.pk,
            details=details,
        )
        transaction.on_commit(lambda: storage.remove(path))


def retry_document(actor: Any, document: Document) -> Document:
    with transaction.atomic():
        updated = Document.objects.filter(
            pk=document.pk, status__in=[Status.FAILED, Status.CANCELLED]
        ).update(
            status=Status.QUEUED,
            error="",
            attempts=0,
            pages_done=0,
            chunks_done=0,
            version=F("version") + 1,
            updated_at=timezone.now(),
        )
        if updated:
            audit.record(Action.UPLOAD, actor=actor, obj=document, details={"retry": True})
            _enqueue_after_commit(document.pk)
    document.refresh_from_db()
    return document


def cancel_document(actor: Any, document: Document) -> Document:
    with transaction.atomic():
        updated = Document.objects.filter(pk=document.pk, status=Status.QUEUED).update(
            status=Status.CANCELLED,
            error="Cancelled before ingestion started.",
            updated_at=timezone.now(),
        )
        if updated:
            audit.record(
                Action.INGEST_FAILED, actor=actor, obj=document, details={"cancelled": True}
            )
    document.refresh_from_db()
    return document


def share_collection(actor: Any, collection: Collection, department: Department) -> None:
    with transaction.atomic():
        _, created = CollectionShare.objects.get_or_create(
            collection=collection, department=department
        )
        if created:
            audit.record(
                Action.SHARE, actor=actor, obj=collection, details={"department": department.name}
            )


def unshare_collection(actor: Any, collection: Collection, department: Department) -> None:
    with transaction.atomic():
        deleted, _ = CollectionShare.objects.filter(
            collection=collection, department=department
        ).delete()
        if deleted:
            audit.record(
                Action.UNSHARE, actor=actor, obj=collection, details={"department": department.name}
            )


def share_with_organisation(actor: Any, collection: Collection) -> bool:
    """Read-only for every employee and curator of every department."""
    with transaction.atomic():
        updated = Collection.objects.filter(pk=collection.pk, shared_with_all=False).update(
            shared_with_all=True
        )
        if updated:
            audit.record(Action.SHARE, actor=actor, obj=collection, details={"organisation": True})
    collection.shared_with_all = True
    return bool(updated)


def unshare_with_organisation(actor: Any, collection: Collection) -> bool:
    with transaction.atomic():
        updated = Collection.objects.filter(pk=collection.pk, shared_with_all=True).update(
            shared_with_all=False
        )
        if updated:
            audit.record(
                Action.UNSHARE, actor=actor, obj=collection, details={"organisation": True}
            )
    collection.shared_with_all = False
    return bool(updated)
