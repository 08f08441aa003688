"""BM25 statistics kept by the appliance, beside PostgreSQL's language-aware ``tsvector``.

PostgreSQL ranks full-text matches without document frequencies or length normalisation,
which is why ``ts_rank`` loses to BM25 by a wide margin. These tables hold what BM25 needs:

- ``inference_lexicalcollection``: per collection, its live chunks and their total length;
- ``inference_lexicalterm``: per collection and lexeme, in how many live chunks it occurs;
- ``inference_lexicalchunk``: per live chunk, its length in lexeme occurrences.

Invariant: a chunk is counted in the statistics exactly when it has a ``lexicalchunk`` row,
and those are exactly the chunks of each document's live version under its collection's
embedding model. ``count_live_version``
(called by ``publish()``) and ``forget_document`` (called by ``delete_document()``) keep it
in the caller's transaction; both are idempotent, so running one twice counts nothing twice.

Concurrency: every change first upserts its collection's row, which serialises changes to
one collection's statistics, then upserts lexemes in sorted order; two publishes therefore
never wait for each other in a cycle. They run before the audit row, whose chain lock is the
last lock each ingestion transaction takes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.db import connection as default_connection
from django.db import transaction

_LOCK_COLLECTION = """
    INSERT INTO inference_lexicalcollection (collection_id, chunk_count, total_length)
    VALUES (%s, 0, 0)
    ON CONFLICT (collection_id) DO UPDATE
        SET chunk_count = inference_lexicalcollection.chunk_count
"""

# Uncounts the counted chunks of one document that are not in the live version (under the
# collection's embedding model), counts the uncounted ones that are, and moves the
# collection's and lexemes' figures by the difference. A live version of NULL uncounts the
# whole document.
# The length of a chunk is every occurrence of every lexeme; a lexeme stored without
# positions (a stripped vector) still occurred at least once.
_RECOUNT = """
    WITH gone AS (
        DELETE FROM inference_lexicalchunk l
        USING ingest_chunk c
        WHERE l.chunk_id = c.id AND c.document_id = %(document)s
          AND (c.version IS DISTINCT FROM %(live)s OR c.embedding_model <> %(model)s)
        RETURNING l.chunk_id, l.length
    ),
    came AS (
        INSERT INTO inference_lexicalchunk (chunk_id, length)
        SELECT c.id, (SELECT coalesce(sum(greatest(cardinality(t.positions), 1)), 0)
                      FROM unnest(c.search_vector) t)
        FROM ingest_chunk c
        WHERE c.document_id = %(document)s AND c.version = %(live)s
          AND c.embedding_model = %(model)s
          AND NOT EXISTS (SELECT 1 FROM inference_lexicalchunk l WHERE l.chunk_id = c.id)
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
        INSERT INTO inference_lexicalterm (collection_id, lexeme, document_frequency)
        SELECT %(collection)s, lexeme, delta FROM lexemes ORDER BY lexeme
        ON CONFLICT (collection_id, lexeme) DO UPDATE
            SET document_frequency =
                inference_lexicalterm.document_frequency + EXCLUDED.document_frequency
        RETURNING lexeme, document_frequency
    ),
    totals AS (
        UPDATE inference_lexicalcollection
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
    DELETE FROM inference_lexicalterm
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
        INSERT INTO inference_lexicalchunk (chunk_id, length)
        SELECT c.id, (SELECT coalesce(sum(greatest(cardinality(t.positions), 1)), 0)
                      FROM unnest(c.search_vector) t)
        FROM ingest_chunk c
        JOIN ingest_document d ON d.id = c.document_id AND d.live_version = c.version
        WHERE c.collection_id = %(collection)s AND c.embedding_model = %(model)s
        ORDER BY c.id
        RETURNING length
    )
    UPDATE inference_lexicalcollection
    SET chunk_count = (SELECT count(*) FROM lengths),
        total_length = (SELECT coalesce(sum(length), 0) FROM lengths)
    WHERE collection_id = %(collection)s
"""
# 2. its lexemes' document frequencies from PostgreSQL's own ts_stat, which counts them in
#    one pass in memory (a GROUP BY over every chunk's lexemes sorts ~100 rows a chunk).
#    ts_stat takes its query as text: format() quotes the values into it.
_REBUILD_TERMS = """
    INSERT INTO inference_lexicalterm (collection_id, lexeme, document_frequency)
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
            "DELETE FROM inference_lexicalchunk l USING ingest_chunk c "
            "WHERE l.chunk_id = c.id AND c.collection_id = ANY(%s)",
            [collection_ids],
        )
        cursor.execute(
            "DELETE FROM inference_lexicalterm WHERE collection_id = ANY(%s)", [collection_ids]
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


# --- query side ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LexicalGroup:
    """The collections in a person's scope that share one text search configuration, with
    the statistics BM25 needs over exactly those collections."""

    language: str
    collection_ids: list[int]
    chunk_count: int
    total_length: int
    # (lexeme, occurrences in the question, document frequency within the group)
    terms: list[tuple[str, int, int]]

    @property
    def average_length(self) -> float:
        return self.total_length / self.chunk_count if self.chunk_count else 1.0

    def idf(self, document_frequency: int) -> float:
        """Robertson-Sparck Jones IDF as Lucene computes it (never negative)."""
        n = self.chunk_count
        return math.log(1 + (n - document_frequency + 0.5) / (document_frequency + 0.5))


# One row per text search configuration in the scope: the collections, their totals, and
# the question's lexemes under that configuration with their document frequencies. It reads
# ``scope`` (id, language), the readable collections, which the caller's statement defines
# from the access policy's own sub-select, so nothing outside it is counted; the question's
# text is its one parameter.
LANGUAGE_STATISTICS = """
    SELECT g.language, g.ids, g.chunks, g.length, q.lexemes, q.counts, q.frequencies
    FROM (
        SELECT s.language, array_agg(s.id ORDER BY s.id) AS ids,
               coalesce(sum(l.chunk_count), 0) AS chunks,
               coalesce(sum(l.total_length), 0) AS length
        FROM scope s LEFT JOIN inference_lexicalcollection l ON l.collection_id = s.id
        GROUP BY s.language
    ) g
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(v.lexeme ORDER BY v.lexeme), '{{}}') AS lexemes,
               coalesce(array_agg(greatest(cardinality(v.positions), 1) ORDER BY v.lexeme),
                        '{{}}') AS counts,
               coalesce(array_agg(f.frequency ORDER BY v.lexeme), '{{}}') AS frequencies
        FROM unnest(to_tsvector(g.language::regconfig, %s)) v
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(t.document_frequency), 0)::bigint AS frequency
            FROM inference_lexicalterm t
            WHERE t.collection_id = ANY(g.ids) AND t.lexeme = v.lexeme
        ) f
    ) q
"""


def language_group(row: dict[str, Any]) -> LexicalGroup:
    """A ``LexicalGroup`` from one row of ``LANGUAGE_STATISTICS`` as a JSON object."""
    return LexicalGroup(
        language=row["language"],
        collection_ids=[int(i) for i in row["ids"]],
        chunk_count=int(row["chunks"]),
        total_length=int(row["length"]),
        terms=[
            (lexeme, int(count), int(frequency))
            for lexeme, count, frequency in zip(
                row["lexemes"], row["counts"], row["frequencies"], strict=True
            )
        ],
    )


def tsquery_literal(lexemes: list[str]) -> str:
    """An OR of lexemes as tsquery input: already normalised, so cast, never re-parsed by a
    configuration. Quotes and backslashes are doubled as the input syntax wants."""
    quoted = ("'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'" for lexeme in lexemes)
    return " | ".join(quoted)


def candidate_terms(
    terms: list[tuple[str, int, int]], budget: int, *, common: int | None = None
) -> list[str]:
    """The lexemes whose chunks are scored, rarest first (always at least one): all of them
    while their postings together stay within ``budget``, leaving out any found in more than
    ``common`` chunks. A chunk that holds only a question's commonest lexemes scores too low
    to reach the top (their IDF is small); every lexeme still adds to the score of the
    chunks that are found, so the scores themselves are exact BM25."""
    present = sorted((t for t in terms if t[2] > 0), key=lambda t: (t[2], t[0]))
    chosen: list[str] = []
    postings = 0
    for lexeme, _, frequency in present:
        if chosen and (postings + frequency > budget or (common and frequency > common)):
            break
        chosen.append(lexeme)
        postings += frequency
    return chosen


# BM25 of the chunks that hold any candidate lexeme, within one configuration's collections
# and the person's scope. Term frequencies come from the tsvector's positions: the
# question's lexemes are marked with weight A (everything else reset to D) and filtered, so
# only those few entries are unnested per chunk.
BM25_CANDIDATES = """
    SELECT c.id,
           sum(q.weight * t.tf * (%s + 1)
               / (t.tf + %s * (1 - %s + %s * lc.length / %s))) AS score
    FROM ingest_chunk c
    JOIN inference_lexicalchunk lc ON lc.chunk_id = c.id  -- only live chunks have one
    CROSS JOIN LATERAL (
        SELECT e.lexeme, greatest(cardinality(e.positions), 1) AS tf
        FROM unnest(ts_filter(setweight(setweight(c.search_vector, 'D'), 'A', %s::text[]),
                              '{{a}}')) e
    ) t
    JOIN unnest(%s::text[], %s::float8[]) AS q(lexeme, weight) ON q.lexeme = t.lexeme
    WHERE c.search_vector @@ %s::tsquery
      AND c.collection_id = ANY(%s::bigint[])
      AND c.collection_id IN ({scope})
    GROUP BY c.id
    ORDER BY score DESC, c.id
    LIMIT %s
"""


@dataclass(frozen=True)
class Bm25:
    k1: float = 1.2
    b: float = 0.75
    # Postings (summed document frequencies) the candidate lexemes may reach, and the share
    # of the scope's chunks above which a lexeme finds no candidates; see ``candidate_terms``.
    # 500: SciFact scores the same as with 1000 (nDCG@10 0.692 full text, 0.724 hybrid), and
    # at 1M chunks a large department's hybrid p95 fell by about 4 ms (README, Retrieval).
    candidate_budget: int = 500
    common_share: float = 0.05


def bm25_candidates(
    group: LexicalGroup, bm25: Bm25, scope: str, scope_params: tuple, depth: int
) -> tuple[str, list[Any]] | None:
    """SQL and parameters of the group's BM25 top ``depth``; None when no lexeme of the
    question occurs in the group."""
    common = int(bm25.common_share * group.chunk_count) if bm25.common_share < 1 else None
    candidates = candidate_terms(group.terms, bm25.candidate_budget, common=common)
    if not candidates:
        return None
    lexemes = [lexeme for lexeme, _, frequency in group.terms if frequency > 0]
    weights = [group.idf(frequency) for _, _, frequency in group.terms if frequency > 0]
    params = [
        bm25.k1,
        bm25.k1,
        bm25.b,
        bm25.b,
        group.average_length,
        lexemes,
        lexemes,
        weights,
        tsquery_literal(candidates),
        group.collection_ids,
        *scope_params,
        depth,
    ]
    return BM25_CANDIDATES.format(scope=scope), params
