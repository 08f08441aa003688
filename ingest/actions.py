"""Every change to collections and documents. Each runs in one transaction, writes its audit
row last in that transaction, and queues background work only after commit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from appliance.accounts.models import Department
from appliance.audit import actions as audit
from appliance.audit.models import Action
from ingest import search_statistics, storage, tasks
from ingest.intake import IncomingFile, Refused, Stored, receive
from ingest.models import Collection, CollectionShare, Document, Status

__all__ = ["IncomingFile", "UploadResult", "upload_documents", "upload_stream"]

# Files recorded per transaction by an upload: one lock of the collection, one look-up of
# names and checksums, and one commit per batch instead of per file.
UPLOAD_BATCH = 200


@dataclass
class UploadResult:
    document: Document | None
    name: str
    duplicate: bool = False
    error: str = ""
    new_version: bool = False  # replaces an earlier upload of the same name


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


MAX_SUGGESTIONS = 5
MAX_SUGGESTION_CHARS = 200


def describe_collection(
    actor: Any,
    collection: Collection,
    *,
    description: str | None = None,
    suggested_questions: Iterable[str] | None = None,
) -> Collection:
    """Change what readers are told about a collection: its description and the questions
    the Ask page suggests (at most MAX_SUGGESTIONS, blank lines dropped)."""
    changes: dict[str, Any] = {}
    if description is not None:
        changes["description"] = description.strip()
    if suggested_questions is not None:
        questions = [" ".join(q.split()) for q in suggested_questions if q.strip()]
        too_long = [q for q in questions if len(q) > MAX_SUGGESTION_CHARS]
        if too_long:
            raise ValueError(
                f"Suggested questions are limited to {MAX_SUGGESTION_CHARS} characters: "
                f"“{too_long[0][:60]}…” is longer."
            )
        changes["suggested_questions"] = questions[:MAX_SUGGESTIONS]
    with transaction.atomic():
        locked = Collection.objects.select_for_update().get(pk=collection.pk)
        changed = {k: v for k, v in changes.items() if getattr(locked, k) != v}
        if changed:
            for key, value in changed.items():
                setattr(locked, key, value)
            locked.save(update_fields=list(changed))
            audit.record(Action.COLLECTION_UPDATE, actor=actor, obj=locked, details=changed)
    return locked


def upload_documents(
    actor: Any, collection: Collection, files: Iterable[IncomingFile], *, enqueue: bool = True
) -> list[UploadResult]:
    """Store each file and queue it. See ``upload_stream``."""
    return list(upload_stream(actor, collection, files, enqueue=enqueue))


def upload_stream(
    actor: Any,
    collection: Collection,
    files: Iterable[IncomingFile],
    batch: int = UPLOAD_BATCH,
    *,
    enqueue: bool = True,
) -> Iterator[UploadResult]:
    """Store each file and queue it, yielding each file's result as its batch commits.

    - A file the appliance cannot take is refused alone, with its reason.
    - A file already in the collection (same SHA-256, whatever its name) is not ingested
      twice.
    - A file with the name (folders included) of a document already in the collection,
      but other content, is a new version of that document: it is read while the old
      version keeps answering, and replaces it in one transaction when ready.

    ``enqueue=False`` leaves the documents queued for whoever calls ``pipeline.process``
    (the ingest benchmark, which must not race a running worker for them).
    """
    pending: list[Stored] = []
    for item in receive(collection.pk, files):
        if isinstance(item, Refused):
            yield UploadResult(None, item.name, error=item.reason)
            continue
        pending.append(item)
        if len(pending) >= batch:
            yield from _record(actor, collection, pending, enqueue)
            pending = []
    if pending:
        yield from _record(actor, collection, pending, enqueue)


def _record(
    actor: Any, collection: Collection, stored: list[Stored], enqueue: bool
) -> list[UploadResult]:
    results: list[UploadResult] = []
    try:
        with transaction.atomic():
            # One upload at a time per collection: two uploads of the same new name must
            # not both create a document.
            Collection.objects.select_for_update().filter(pk=collection.pk).first()
            by_sha = {
                d.sha256: d
                for d in Document.objects.filter(
                    collection=collection, sha256__in={s.sha256 for s in stored}
                )
            }
            by_name: dict[str, Document] = {}
            for d in Document.objects.filter(
                collection=collection, original_name__in={s.name for s in stored}
            ).order_by("id"):
                by_name[d.original_name] = d  # the newest of any same-named documents
            for item in stored:
                existing = by_sha.get(item.sha256)
                if existing is not None:
                    transaction.on_commit(lambda path=item.relative: storage.remove(path))
                    results.append(UploadResult(existing, item.name, duplicate=True))
                    continue
                previous = by_name.get(item.name)
                if previous is not None:
                    document = _new_version(actor, previous, item)
                else:
                    document = _create(actor, collection, item)
                by_sha[item.sha256] = by_name[item.name] = document
                results.append(UploadResult(document, item.name, new_version=bool(previous)))
                if enqueue:
                    tasks.enqueue_after_commit(document.pk)
    except BaseException:
        for item in stored:  # nothing was recorded: keep no files either
            storage.remove(item.relative)
        raise
    return results


def _create(actor: Any, collection: Collection, item: Stored) -> Document:
    stem = PurePosixPath(item.name).stem
    document = Document.objects.create(
        collection=collection,
        title=(stem or item.name)[:300],
        original_name=item.name,
        stored_path=item.relative,
        sha256=item.sha256,
        size_bytes=item.size,
        kind=item.kind,
        uploaded_by=actor if getattr(actor, "pk", None) else None,
    )
    audit.record(
        Action.UPLOAD,
        actor=actor,
        obj=document,
        details={
            "collection_id": collection.pk,
            "name": item.name,
            "sha256": item.sha256,
            "bytes": item.size,
        },
    )
    return document


def _new_version(actor: Any, document: Document, item: Stored) -> Document:
    """The document now stands for the new file. Its live version (if any) answers until
    the new one is published; the file of a version that never went live is dropped."""
    locked = Document.objects.select_for_update().get(pk=document.pk)
    replaced_sha = locked.sha256
    if locked.live_version == locked.version and locked.live_version > 0:
        obsolete = locked.previous_stored_path
        locked.previous_stored_path = locked.stored_path
    else:
        obsolete = locked.stored_path
    if obsolete:
        transaction.on_commit(lambda: storage.remove(obsolete))
    locked.stored_path = item.relative
    locked.sha256 = item.sha256
    locked.size_bytes = item.size
    locked.kind = item.kind
    locked.version += 1
    locked.status = Status.QUEUED
    locked.error = ""
    locked.attempts = 0
    locked.pages = None
    locked.pages_done = locked.chunks = locked.chunks_done = 0
    locked.lease_until = locked.started_at = locked.finished_at = None
    locked.uploaded_by = actor if getattr(actor, "pk", None) else None
    locked.save(
        update_fields=[
            "stored_path",
            "previous_stored_path",
            "sha256",
            "size_bytes",
            "kind",
            "version",
            "status",
            "error",
            "attempts",
            "pages",
            "pages_done",
            "chunks",
            "chunks_done",
            "lease_until",
            "started_at",
            "finished_at",
            "uploaded_by",
            "updated_at",
        ]
    )
    audit.record(
        Action.UPLOAD,
        actor=actor,
        obj=locked,
        details={
            "collection_id": locked.collection_id,
            "name": item.name,
            "sha256": item.sha256,
            "bytes": item.size,
            "version": locked.version,
            "replaces_sha256": replaced_sha,
        },
    )
    return locked


def delete_document(actor: Any, document: Document) -> None:
    """Gone at once: the row and every chunk in one statement, the file after commit."""
    with transaction.atomic():
        locked = Document.objects.select_for_update().filter(pk=document.pk).first()
        if locked is None:
            return
        paths = [p for p in (locked.stored_path, locked.previous_stored_path) if p]
        details = {"collection_id": locked.collection_id, "title": locked.title}

        search_statistics.forget_document(locked.collection_id, locked.pk)
        locked.delete()
        audit.record(
            Action.DOCUMENT_DELETE,
            actor=actor,
            object_type="document",
            object_id=document.pk,
            details=details,
        )
        transaction.on_commit(lambda: [storage.remove(path) for path in paths])


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
            tasks.enqueue_after_commit(document.pk)
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


def delete_collection(actor: Any, collection: Collection) -> None:
    """The collection, its documents, chunks and files: gone at once."""
    with transaction.atomic():
        locked = Collection.objects.select_for_update().filter(pk=collection.pk).first()
        if locked is None:
            return
        details = {
            "name": locked.name,
            "department": locked.department.name,
            "documents": locked.documents.count(),
        }
        collection_id = locked.pk
        locked.delete()
        audit.record(
            Action.COLLECTION_DELETE,
            actor=actor,
            object_type="collection",
            object_id=collection_id,
            details=details,
        )
        transaction.on_commit(lambda: storage.remove_collection_folder(collection_id))
