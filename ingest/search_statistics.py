"""BM25 statistics of the search index, kept by ingestion beside PostgreSQL's ``tsvector``.

PostgreSQL ranks full-text matches without document frequencies or length normalisation,
which is why ``ts_rank`` loses to BM25 by a wide margin. These tables (models in
``ingest.models``) hold what BM25 needs:

- ``ingest_lexicalcollection``: per collection, its live chunks and their total length;
- ``ingest_lexicalterm``: per collection and lexeme, in how many live chunks it occurs;
- ``ingest_lexicalchunk``: per live chunk, its length in lexeme occurrences.

This module is the write side; retrieval reads them (``inference.lexical``).

Invariant: a chunk is counted in the statistics exactly when it has a ``lexicalchunk`` row,
and those are exactly the chunks of each document's live version under its collection's
embedding model. ``count_live_version`` (called by ``publish()``) and ``forget_document``
(called by ``delete_document()``) keep it in the caller's transaction; both are idempotent,
so running one twice counts nothing twice.

Concurrency: every change first upserts its collection's row, which serialises changes to
one collection's statistics, then upserts lexemes in sorted order; two publishes therefore
never wait for each other in a cycle. They run before the audit row, whose chain lock is the
last lock each ingestion transaction takes.
"""

from __future__ import annotations

from typing import Any

from django.db import connection as default_connection
from django.db import transaction

_LOCK_COLLECTION = """
    INSERT INTO ingest_lexicalcollection (collection_id, chunk_count, total_length)
    VALUES (%s, 0, 0)
    ON CONFLICT (collection_id) DO UPDATE
        SET chunk_count = ingest_lexicalcollection.chunk_count
"""

# Uncounts the counted chunks of one document that are not in the live version (under the
# collection's embedding model), counts the uncounted ones that are, and moves the
# collection's and lexemes' figures by the difference. A live version of NULL uncounts the
# whole document.
# The length of a chunk is every occurrence of every lexeme; a lexeme stored without
# positions (a stripped vector) still occurred at least once.
_RECOUNT = """
    WITH gone AS (
        DELETE FROM ingest_lexicalchunk l
        USING ingest_chunk c
        WHERE l.chunk_id = c.id AND c.document_id = %(document)s
          AND (c.version IS DISTINCT FROM %(live)s OR c.embedding_model <> %(model)s)
        RETURNING l.chunk_id, l.length
    ),
    came AS (
        INSERT INTO ingest_lexicalchunk (chunk_id, length)
        SELECT c.id, (SELECT coalesce(sum(greatest(cardinality(t.positions), 1)), 0)
                      FROM unnest(c.search_vector) t)
        FROM ingest_chunk c
        WHERE c.document_id = %(document)s AND c.version = %(live)s
          AND c.embedding_model = %(model)s
          AND NOT EXISTS (SELECT 1 FROM ingest_lexicalchunk l WHERE l.chunk_id = c.id)
        ORDER BY c.id
        ON CONFLICT (chunk_id) DO NOTHING
        RETURNING chunk_id, length
    ),
    changed AS (
        SELECT chunk_id, length, -1 AS sign FROM gone
        UNION ALL
        SELECT chunk_id, length, 1 FROM came
    ),
    lexemes AS (
        SELECT t.lexeme, sum(ch.sign) AS delta
        FROM changed ch
        JOIN ingest_chunk c ON c.id = ch.chunk_id
        CROSS JOIN LATERAL unnest(c.search_vector) t
        GROUP BY t.lexeme
        HAVING sum(ch.sign) <> 0
    ),
    terms AS (
        INSERT INTO ingest_lexicalterm (collection_id, lexeme, document_frequency)
        SELECT %(collection)s, lexeme, delta FROM lexemes ORDER BY lexeme
        ON CONFLICT (collection_id, lexeme) DO UPDATE
            SET document_frequency =
                ingest_lexicalterm.document_frequency + EXCLUDED.document_frequency
        RETURNING lexeme, document_frequency
    ),
    totals AS (
        UPDATE ingest_lexicalcollection
        SET chunk_count = chunk_count + (SELECT coalesce(sum(sign), 0) FROM changed),
            total_length = total_length + (SELECT coalesce(sum(sign * length), 0) FROM changed)
        WHERE collection_id = %(collection)s
        RETURNING collection_id
    )
    SELECT array_agg(lexeme ORDER BY lexeme) FILTER (WHERE document_frequency <= 0),
           (SELECT count(*) FROM totals)
    FROM terms
"""

_DROP_EMPTY = """
    DELETE FROM ingest_lexicalterm
    WHERE collection_id = %s AND lexeme = ANY(%s) AND document_frequency <= 0
"""


def lock_collection(collection_id: int) -> None:
    """Take the lock that serialises changes to one collection's statistics (and so every
    publish into it, and the switch of its embedding model). Inside a transaction."""
    with default_connection.cursor() as cursor:
        cursor.execute(_LOCK_COLLECTION, [collection_id])


def _recount(
    cursor: Any, collection_id: int, document_id: int, live: int | None, model: str | None
) -> None:
    cursor.execute(_LOCK_COLLECTION, [collection_id])
    if model is None:
        cursor.execute(
            "SELECT embedding_model FROM ingest_collection WHERE id = %s", [collection_id]
        )
        row = cursor.fetchone()
        model = row[0] if row else ""
    cursor.execute(
        _RECOUNT,
        {"collection": collection_id, "document": document_id, "live": live, "model": model},
    )
    emptied, _ = cursor.fetchone()
    if emptied:
        cursor.execute(_DROP_EMPTY, [collection_id, emptied])


def count_live_version(
    collection_id: int, document_id: int, version: int, model: str | None = None
) -> None:
    """Make ``version``'s chunks under ``model`` (the collection's embedding model unless
    named) the counted ones of the document. Call inside ``publish()``'s transaction, after
    the document row is locked and before old versions are deleted (their lexemes are read
    from their chunks)."""
    with default_connection.cursor() as cursor:
        _recount(cursor, collection_id, document_id, version, model)


def forget_document(collection_id: int, document_id: int) -> None:
    """Stop counting every chunk of the document. Call inside ``delete_document()``'s
    transaction, before the chunks are deleted."""
    with default_connection.cursor() as cursor:
        _recount(cursor, collection_id, document_id, None, "")


# Per collection, in two statements (a single one joined two 1M-row CTEs the planner
# guessed held one row each, and looped for hours):
# 1. the lengths of its live chunks under its embedding model, and its totals from them;
_REBUILD_LENGTHS = """
    WITH lengths AS (
        INSERT INTO ingest_lexicalchunk (chunk_id, length)
        SELECT c.id, (SELECT coalesce(sum(greatest(cardinality(t.positions), 1)), 0)
                      FROM unnest(c.search_vector) t)
        FROM ingest_chunk c
        JOIN ingest_document d ON d.id = c.document_id AND d.live_version = c.version
        WHERE c.collection_id = %(collection)s AND c.embedding_model = %(model)s
        ORDER BY c.id
        RETURNING length
    )
    UPDATE ingest_lexicalcollection
    SET chunk_count = (SELECT count(*) FROM lengths),
        total_length = (SELECT coalesce(sum(length), 0) FROM lengths)
    WHERE collection_id = %(collection)s
"""
# 2. its lexemes' document frequencies from PostgreSQL's own ts_stat, which counts them in
#    one pass in memory (a GROUP BY over every chunk's lexemes sorts ~100 rows a chunk).
#    ts_stat takes its query as text: format() quotes the values into it.
_REBUILD_TERMS = """
    INSERT INTO ingest_lexicalterm (collection_id, lexeme, document_frequency)
    SELECT %(collection)s, word, ndoc
    FROM ts_stat(format(
        'SELECT c.search_vector FROM ingest_chunk c '
        'JOIN ingest_document d ON d.id = c.document_id AND d.live_version = c.version '
        'WHERE c.collection_id = %%s AND c.embedding_model = %%L',
        %(collection)s, %(model)s::text))
    ORDER BY word
"""


def rebuild(collection_ids: list[int] | None = None, *, connection: Any = None) -> None:
    """Recompute the statistics of some collections (all when None) from their live chunks.

    For bulk loads (benchmarks) and repair; the per-document functions keep them right in
    normal operation. Locks the collections' statistics rows against concurrent publishes.
    """
    connection = connection or default_connection
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if collection_ids is None:
            cursor.execute("SELECT id FROM ingest_collection ORDER BY id")
            collection_ids = [row[0] for row in cursor.fetchall()]
        collection_ids = sorted(set(collection_ids))
        if not collection_ids:
            return
        for collection_id in collection_ids:
            cursor.execute(_LOCK_COLLECTION, [collection_id])
        cursor.execute(
            "DELETE FROM ingest_lexicalchunk l USING ingest_chunk c "
            "WHERE l.chunk_id = c.id AND c.collection_id = ANY(%s)",
            [collection_ids],
        )
        cursor.execute(
            "DELETE FROM ingest_lexicalterm WHERE collection_id = ANY(%s)", [collection_ids]
        )
        cursor.execute(
            "SELECT id, embedding_model FROM ingest_collection WHERE id = ANY(%s) ORDER BY id",
            [collection_ids],
        )
        models = dict(cursor.fetchall())
        for collection_id in collection_ids:
            values = {"collection": collection_id, "model": models.get(collection_id, "")}
            cursor.execute(_REBUILD_LENGTHS, values)
            cursor.execute(_REBUILD_TERMS, values)
