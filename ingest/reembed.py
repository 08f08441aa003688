"""Moving a collection to another embedding model while it keeps answering.

Each document's live version is read again and chunked and embedded with the new model
(chunks are sized in each model's own tokens, so the old texts cannot simply be re-used:
a model that reads fewer tokens would cut them). Those chunks are stored beside the live
ones under the new model's name, where no question sees them, because a chunk answers only
under its collection's ``embedding_model``. When every document has them, one transaction
points the collection at the new model, recounts its BM25 statistics over the new chunks
and deletes the old ones: a question sees the old vectors or the new ones, never a mix.

Meanwhile the collection lives on: a document uploaded or replaced while this runs is read
with the old model and published as usual; the switch finds it without new chunks and the
loop reads it again. A document still being read by an ingest worker when the switch
happens is set back to queued by ``publish()`` and read again (its chunks belong to the
old model). The work
resumes where it stopped: run the command again after an interruption.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import F

from appliance.audit import actions as audit
from appliance.audit.models import Action
from ingest import embedding, search_statistics, stages, vectors
from ingest.models import Collection, Document
from ingest.parsing import ParseError

log = logging.getLogger(__name__)

# Rounds of "read what lacks new chunks, then try to switch": uploads that land while a
# round runs are picked up by the next.
MAX_ROUNDS = 5


@dataclass
class Report:
    collection: Collection
    model: str
    switched: bool = False
    documents: int = 0
    chunks: int = 0
    seconds: float = 0.0
    failed: list[tuple[Document, str]] = field(default_factory=list)
    previous_model: str = ""


Progress = Callable[[str], None]


def pending(collection: Collection) -> Any:
    """Documents whose live version has no complete chunks under the target model yet."""
    return (
        Document.objects.filter(collection=collection, live_version__gt=0)
        .exclude(reembedded_version=F("live_version"))
        .order_by("pk")
    )


def begin(actor: Any, collection: Collection, model: str) -> Collection:
    """Record the target model (audited). Changing the target discards earlier progress."""
    dimensions = embedding.dimensions(model)  # loads it: a missing model fails here
    vectors.ensure_index(dimensions)
    with transaction.atomic():
        locked = Collection.objects.select_for_update().get(pk=collection.pk)
        if locked.reembedding_to != model:
            Document.objects.filter(collection=locked).update(reembedded_version=0)
            locked.reembedding_to = model
            locked.save(update_fields=["reembedding_to"])
            audit.record(
                Action.REEMBED_START,
                actor=actor,
                obj=locked,
                details={
                    "from": locked.embedding_model,
                    "to": model,
                    "dimensions": dimensions,
                },
            )
    return locked


def reembed(
    actor: Any, collection: Collection, model: str, progress: Progress | None = None
) -> Report:
    """Give every live chunk of ``collection`` a vector from ``model``, then switch."""
    say = progress or (lambda message: None)
    started = time.perf_counter()
    report = Report(collection=collection, model=model, previous_model=collection.embedding_model)
    if collection.embedding_model == model and not collection.reembedding_to:
        say(f"{collection} already uses {model}.")
        return report
    collection = begin(actor, collection, model)
    for _ in range(MAX_ROUNDS):
        todo = list(pending(collection).exclude(pk__in=[d.pk for d, _ in report.failed]))
        for number, document in enumerate(todo, 1):
            problem = _read_again(document, model, report)
            if problem:
                report.failed.append((document, problem))
                say(f"  [{number}/{len(todo)}] {document.original_name}: FAILED: {problem}")
            else:
                say(f"  [{number}/{len(todo)}] {document.original_name}")
        if report.failed:
            break  # the old model keeps answering until every document can move
        if switch(actor, collection, model, report):
            break
    report.seconds = time.perf_counter() - started
    return report


def _read_again(document: Document, model: str, report: Report) -> str:
    """Chunk and embed the document's live version with ``model``; '' or the reason why not."""
    live = copy.copy(document)
    if document.version != document.live_version:
        # A newer upload is being read: the live version's file is the previous one.
        live.version = document.live_version
        live.stored_path = document.previous_stored_path or document.stored_path
    try:
        outcome = stages.ingest(live, model=model, track=False)
    except (ParseError, FileNotFoundError) as exc:
        return str(exc) or "the stored file could not be read again"
    if not outcome.chunks:
        return "no text was found in it this time"
    updated = Document.objects.filter(pk=document.pk, live_version=live.version).update(
        reembedded_version=live.version
    )
    if updated:  # else a newer version went live meanwhile: the next round reads that one
        report.documents += 1
        report.chunks += outcome.chunks
    return ""


def switch(actor: Any, collection: Collection, model: str, report: Report | None = None) -> bool:
    """Point the collection at ``model`` if every live document has its chunks, in one
    transaction with the statistics and the removal of the old vectors. False when some
    document still lacks them (it went live meanwhile) or the target changed."""

    with transaction.atomic():
        search_statistics.lock_collection(collection.pk)  # no publish into it runs beside this
        locked = Collection.objects.select_for_update().get(pk=collection.pk)
        if locked.reembedding_to != model or pending(locked).exists():
            return False
        previous = locked.embedding_model
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM ingest_chunk WHERE collection_id = %s AND embedding_model <> %s",
                [locked.pk, model],
            )
            removed = cursor.rowcount
        locked.embedding_model = model
        locked.reembedding_to = ""
        locked.save(update_fields=["embedding_model", "reembedding_to"])
        Document.objects.filter(collection=locked).update(reembedded_version=0)
        search_statistics.rebuild([locked.pk])
        documents = Document.objects.filter(collection=locked, live_version__gt=0).count()
        audit.record(
            Action.REEMBED_DONE,
            actor=actor,
            obj=locked,
            details={
                "from": previous,
                "to": model,
                "documents": documents,
                "old_chunks_removed": removed,
            },
        )
    collection.embedding_model, collection.reembedding_to = model, ""
    if report is not None:
        report.switched = True
    log.info("collection %s now answers from %s (was %s)", collection.pk, model, previous)
    return True
