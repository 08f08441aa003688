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

from ingest import embedding, languages, storage, vectors
from ingest.chunking import ChunkDraft, chunk_blocks
from ingest.models import Document, Status
from ingest.parsing import ParseError
from ingest.parsing.sandbox import Sandbox, shared

# Drafts taken from the parser at a time, at most. Within such a window the drafts are
# embedded in order of length, INSERT_BATCH at a time (one transaction and one progress
# update each): texts of like length share a batch, so little of the model's work goes
# to padding, as when the bare model sorts a whole list.
WINDOW = 512
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
    """Parses (through the sandbox) and chunks on its own thread, handing drafts over
    through a queue. Its progress (pages read, drafts made, parsing finished) is read
    directly by the consuming thread, so the row shows where parsing really is, not where
    embedding has got to. Touches no database."""

    def __init__(self, document: Document, parser: Sandbox, model: str) -> None:
        super().__init__(name=f"chunker-{document.pk}", daemon=True)
        self.document = document
        self.parser = parser
        self.model = model
        self.items: queue.Queue[Any] = queue.Queue(maxsize=READ_AHEAD)
        self.stop = threading.Event()
        self.pages_done = 0
        self.pages_total: int | None = None
        self.last_page = 0
        self.drafted = 0
        self.finished = False

    def _put(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.items.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _pages(self, done: int, total: int | None) -> None:
        self.pages_done = done
        if total is not None:
            self.pages_total = total

    def run(self) -> None:
        try:
            path = storage.absolute(self.document.stored_path)
            blocks = self.parser.parse(
                path,
                self.document.kind,
                self._pages,
                self.document.collection.language,
                cancel=self.stop,
            )
            try:
                drafts = chunk_blocks(
                    blocks,
                    lambda texts: embedding.count_tokens(texts, self.model),
                    target_tokens=settings.CHUNK_TOKENS,
                    overlap_tokens=settings.CHUNK_OVERLAP_TOKENS,
                    limit_tokens=embedding.max_tokens(self.model) - 2,  # [CLS] and [SEP]
                )
                for draft in drafts:
                    self.last_page = max(self.last_page, draft.page or 0)
                    self._put(draft)
                    self.drafted += 1
            finally:
                blocks.close()  # an unfinished parse kills its child: nothing runs on
            self.finished = True
            self._put(_END)
        except _Stopped:
            return
        except BaseException as exc:  # handed to the consuming thread, which decides
            try:
                self._put(_Failure(exc))
            except _Stopped:
                return

    @property
    def pages(self) -> int | None:
        """Pages of the document: the parser's count, else the last page a chunk cites."""
        return self.pages_total or self.last_page or None


class _Stopped(Exception):
    pass


@dataclass
class _Failure:
    error: BaseException


def ingest(
    document: Document,
    parser: Sandbox | None = None,
    *,
    model: str | None = None,
    track: bool = True,
) -> Outcome:
    """Parse, chunk, embed and store every chunk of ``document``'s current version, with
    ``model`` (the collection's embedding model unless named): chunks are sized in its
    tokens and carry its vectors.

    Chunks stored by an earlier, interrupted attempt of the same version and model are
    kept and not embedded again (the chunking of a file is deterministic, so ordinals
    match). ``track=False`` leaves the document row's progress alone (re-embedding a
    document that is already ready)."""
    model = model or document.collection.embedding_model
    if not storage.absolute(document.stored_path).is_file():
        raise FileNotFoundError(document.stored_path)  # said plainly by the pipeline
    vectors.ensure_index(embedding.dimensions(model))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ordinal FROM ingest_chunk "
            "WHERE document_id = %s AND version = %s AND embedding_model = %s",
            [document.pk, document.version, model],
        )
        done = {row[0] for row in cursor.fetchall()}
    producer = _Producer(document, parser or sandbox(), model)
    producer.start()
    progress = _ProgressWriter(document, producer, stored=len(done), track=track)
    outcome = Outcome(chunks=0, pages=None)
    try:
        for window in _batches(producer, progress, done):
            window.sort(key=lambda item: item[1].token_count)
            for start in range(0, len(window), INSERT_BATCH):
                batch = window[start : start + INSERT_BATCH]
                started = time.perf_counter()
                embedded = embedding.embed(
                    [draft.embedding_text() for _, draft in batch], name=model
                )
                outcome.embed_seconds += time.perf_counter() - started
                started = time.perf_counter()
                insert(document, batch, embedded, model)
                outcome.store_seconds += time.perf_counter() - started
                progress.stored += len(batch)
                progress.write(force=True)
        outcome.chunks, outcome.pages = producer.drafted, producer.pages
        progress.write(force=True)
    finally:
        producer.stop.set()
        producer.join(timeout=30)
        TIMINGS["embed"] += outcome.embed_seconds
        TIMINGS["store"] += outcome.store_seconds
    return outcome


def _batches(
    producer: _Producer, progress: _ProgressWriter, done: set[int]
) -> Iterator[list[tuple[int, ChunkDraft]]]:
    """Drafts to embed, with their ordinals. A window is as large as what is ready, up to
    WINDOW: full when parsing runs ahead, small when the parser is the slow one (OCR), so
    stored progress keeps moving either way."""
    ordinal = 0
    batch: list[tuple[int, ChunkDraft]] = []
    while True:
        try:
            # Wait only when there is nothing to embed; otherwise take what is ready.
            item = producer.items.get(timeout=1.0) if not batch else producer.items.get_nowait()
        except queue.Empty:
            if batch:
                yield batch
                batch = []
            elif not producer.is_alive():
                raise ParseError("The reader of this file stopped without a reason.") from None
            else:
                progress.write()
            continue
        if item is _END:
            if batch:
                yield batch
            return
        if isinstance(item, _Failure):
            raise item.error
        if ordinal not in done:
            batch.append((ordinal, item))
        ordinal += 1
        if len(batch) >= WINDOW:
            yield batch
            batch = []


class _ProgressWriter:
    """Pages read, chunks made and chunks stored, written to the row at most every
    PROGRESS_SECONDS; once parsing has finished the row says "embedding" with the total."""

    def __init__(
        self, document: Document, producer: _Producer, stored: int, track: bool = True
    ) -> None:
        self.document = document
        self.producer = producer
        self.stored = stored
        self.track = track
        self.last = 0.0

    def write(self, force: bool = False) -> None:
        if not self.track:
            return
        now = time.monotonic()
        if not force and now - self.last < PROGRESS_SECONDS:
            return
        self.last = now
        producer = self.producer
        finished = producer.finished  # read first: the counts below are final if it is set
        fields: dict[str, Any] = {
            "chunks_done": self.stored,
            "pages_done": producer.pages_done,
            "updated_at": timezone.now(),
        }
        if producer.pages_total is not None:
            fields["pages"] = producer.pages_total
        if finished:
            fields["chunks"] = producer.drafted
            if producer.pages_total is None and producer.pages:
                fields["pages"] = fields["pages_done"] = producer.pages
        rows = Document.objects.filter(pk=self.document.pk, version=self.document.version)
        rows.update(**fields)
        if finished:
            rows.filter(status=Status.PARSING).update(status=Status.EMBEDDING)


def insert(
    document: Document,
    batch: list[tuple[int, ChunkDraft]],
    vectors: np.ndarray,
    model: str | None = None,
) -> None:
    """Store a batch of chunks with their vectors (made by ``model``, the collection's
    unless named) and full-text terms, in one statement. A chunk already stored (same
    document, version, model and ordinal) is left as it is."""
    language = document.collection.language
    model = model or document.collection.embedding_model
    rows = [
        (
            document.pk,
            document.collection_id,
            document.version,
            model,
            ordinal,
            draft.page,
            draft.section,
            draft.text,
            draft.token_count,
            vector,
            languages.passage_configuration(language, draft.text),
            f"{draft.section}\n{draft.text}" if draft.section else draft.text,
        )
        for (ordinal, draft), vector in zip(batch, _vector_literals(vectors), strict=True)
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            """
            INSERT INTO ingest_chunk
                (document_id, collection_id, version, embedding_model, ordinal, page, section,
                 text, token_count, embedding, search_vector)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::vector,
                    to_tsvector(%s::regconfig, %s))
            ON CONFLICT (document_id, version, embedding_model, ordinal) DO NOTHING
            """,
            rows,
        )


def _vector_literals(vectors: np.ndarray) -> list[str]:
    """pgvector's text form, 7 significant digits (float32 holds about as many)."""
    return ["[" + ",".join(f"{x:.7g}" for x in row) + "]" for row in vectors]
