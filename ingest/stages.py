"""The stages of one document's ingestion, streamed: parse -> chunk -> embed -> store.

The parse sandbox reads the file in a child process; a thread here turns its blocks
into chunk drafts (tokenising with the embedding model's tokenizer) while this thread
embeds and stores the drafts that are ready. So on a long document the embedding, the
real bound, starts after the first page instead of after the last, and only a window of
the document is ever held in memory.

Every database write happens on the calling thread, filtered by the document's version:
an ingestion overtaken by a newer upload of the same document cannot touch the newer
one's progress.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ingest import embedding, storage
from ingest.chunking import ChunkDraft, chunk_blocks
from ingest.models import Document, Status
from ingest.parsing import ParseError
from ingest.parsing.sandbox import Sandbox, shared

# Drafts stored per transaction. Larger batches let the model sort texts by length with
# less padding; each is one round of embedding between progress updates.
INSERT_BATCH = 128
PROGRESS_SECONDS = 0.5
# Drafts parsed ahead of the embedding (about 20 MB of text at most): enough for parsing
# to finish early on most documents, so the total is known and progress is honest.
READ_AHEAD = 20_000
_END = object()
# Seconds this process has spent embedding and storing, for the benchmark to read.
TIMINGS = {"embed": 0.0, "store": 0.0}


def sandbox() -> Sandbox:
    limit = min(settings.INGEST_PARSE_TIME_LIMIT, settings.INGEST_TASK_TIME_LIMIT - 60)
    return shared(settings.INGEST_PARSE_MEMORY_MB, max(limit, 1))


@dataclass
class Outcome:
    chunks: int
    pages: int | None
    embed_seconds: float = 0.0
    store_seconds: float = 0.0


class _Producer(threading.Thread):
    """Parses (through the sandbox) and chunks on its own thread; hands over drafts and
    page progress through a queue. Touches no database."""

    def __init__(self, document: Document, parser: Sandbox) -> None:
        super().__init__(name=f"chunker-{document.pk}", daemon=True)
        self.document = document
        self.parser = parser
        self.items: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD)
        self.stop = threading.Event()

    def _put(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.items.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Stopped

    def run(self) -> None:
        try:
            path = storage.absolute(self.document.stored_path)
            blocks = self.parser.parse(
                path,
                self.document.kind,
                lambda done, total: self._put(("pages", done, total)),
                self.document.collection.language,
                cancel=self.stop,
            )
            try:
                drafts = chunk_blocks(
                    blocks,
                    embedding.count_tokens,
                    target_tokens=settings.CHUNK_TOKENS,
                    overlap_tokens=settings.CHUNK_OVERLAP_TOKENS,
                    limit_tokens=embedding.max_tokens() - 2,  # [CLS] and [SEP]
                )
                for draft in drafts:
                    self._put(("draft", draft))
            finally:
                blocks.close()  # an unfinished parse kills its child: nothing runs on
            self._put(_END)
        except _Stopped:
            return
        except BaseException as exc:  # handed to the consuming thread, which decides
            try:
                self._put(("error", exc))
            except _Stopped:
                return


class _Stopped(Exception):
    pass


def ingest(document: Document, parser: Sandbox | None = None) -> Outcome:
    """Parse, chunk, embed and store every chunk of ``document``'s current version.

    Chunks stored by an earlier, interrupted attempt of the same version are kept and not
    embedded again (the chunking of a file is deterministic, so ordinals match)."""
    if not storage.absolute(document.stored_path).is_file():
        raise FileNotFoundError(document.stored_path)  # said plainly by the pipeline
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ordinal FROM ingest_chunk WHERE document_id = %s AND version = %s",
            [document.pk, document.version],
        )
        done = {row[0] for row in cursor.fetchall()}
    producer = _Producer(document, parser or sandbox())
    producer.start()
    progress = _ProgressWriter(document, stored=len(done))
    outcome = Outcome(chunks=0, pages=None)
    try:
        for batch, total in _batches(producer, progress, outcome, done):
            if batch:
                started = time.perf_counter()
                vectors = embedding.embed([draft.embedding_text() for _, draft in batch])
                outcome.embed_seconds += time.perf_counter() - started
                started = time.perf_counter()
                insert(document, batch, vectors)
                outcome.store_seconds += time.perf_counter() - started
                progress.stored += len(batch)
            if total is not None:
                outcome.chunks = total
                progress.parsed(total, outcome.pages)
            progress.write(force=bool(batch))
    finally:
        producer.stop.set()
        producer.join(timeout=30)
        TIMINGS["embed"] += outcome.embed_seconds
        TIMINGS["store"] += outcome.store_seconds
    return outcome


def _batches(
    producer: _Producer, progress: _ProgressWriter, outcome: Outcome, done: set[int]
) -> Iterator[tuple[list[tuple[int, ChunkDraft]], int | None]]:
    """(drafts to embed, total when parsing has just ended). A batch is as large as what
    is ready, up to INSERT_BATCH: full when parsing runs ahead, small when the parser is
    the slow one (OCR), so stored progress keeps moving either way."""
    ordinal = 0
    batch: list[tuple[int, ChunkDraft]] = []
    while True:
        try:
            # Wait only when there is nothing to embed; otherwise take what is ready.
            item = producer.items.get(timeout=1.0) if not batch else producer.items.get_nowait()
        except queue.Empty:
            if batch:
                yield batch, None
                batch = []
            elif not producer.is_alive():
                raise ParseError("The reader of this file stopped without a reason.") from None
            else:
                progress.write()
            continue
        if item is _END:
            yield batch, ordinal
            return
        tag = item[0]
        if tag == "draft":
            draft: ChunkDraft = item[1]
            if draft.page:
                outcome.pages = max(outcome.pages or 0, draft.page)
            if ordinal not in done:
                batch.append((ordinal, draft))
            ordinal += 1
            if len(batch) >= INSERT_BATCH:
                yield batch, None
                batch = []
        elif tag == "pages":
            progress.pages(item[1], item[2])
        elif tag == "error":
            raise item[1]


class _ProgressWriter:
    """Pages and chunks done, written to the row at most every PROGRESS_SECONDS."""

    def __init__(self, document: Document, stored: int) -> None:
        self.document = document
        self.stored = stored
        self.fields: dict[str, Any] = {}
        self.last = 0.0

    def pages(self, done: int, total: int | None) -> None:
        self.fields["pages_done"] = done
        if total is not None:
            self.fields["pages"] = total
        self.write()

    def parsed(self, chunks: int, pages: int | None) -> None:
        self.fields.update(status=Status.EMBEDDING, chunks=chunks)
        if pages and "pages" not in self.fields and self.document.kind != "pdf":
            self.fields.update(pages=pages, pages_done=pages)
        self.write(force=True)

    def write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_SECONDS:
            return
        self.last = now
        fields = {**self.fields, "chunks_done": self.stored, "updated_at": timezone.now()}
        status = fields.pop("status", None)
        rows = Document.objects.filter(pk=self.document.pk, version=self.document.version)
        rows.update(**fields)
        if status:
            rows.filter(status=Status.PARSING).update(status=status)
        self.fields.clear()


def insert(document: Document, batch: list[tuple[int, ChunkDraft]], vectors: np.ndarray) -> None:
    """Store a batch of chunks with their vectors and full-text terms, in one statement.
    A chunk already stored (same document, version and ordinal) is left as it is."""
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
            vector,
            language,
            f"{draft.section}\n{draft.text}" if draft.section else draft.text,
        )
        for (ordinal, draft), vector in zip(batch, _vector_literals(vectors), strict=True)
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


def _vector_literals(vectors: np.ndarray) -> list[str]:
    """pgvector's text form, 7 significant digits (float32 holds about as many)."""
    return ["[" + ",".join(f"{x:.7g}" for x in row) + "]" for row in vectors]
