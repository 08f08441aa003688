"""Finding the chunks that answer a question, among those the asker may read.

The access filter is part of the ranking statement itself: the collections the person may
read (from ``Collection.objects.visible_to``) are a sub-select inside every part of the
query that ranks chunks, dense and lexical alike. Top-k is therefore never filled with
chunks the person may not see, and never filtered afterwards in Python.

``search`` runs two statements in one transaction:

1. the scope (``_SCOPE``): per text search configuration among the readable collections,
   how many chunks they hold and the question's lexemes with their document frequencies
   (``lexical.LANGUAGE_STATISTICS``); per embedding model, its collections; and the
   planner settings the ranking needs;
2. the ranking: a dense top list (pgvector cosine) per embedding model and a BM25 top list
   per configuration, fused by weighted reciprocal rank, joined to the chunks' text and
   cosine similarity.

Collections normally share one embedding model; while one moves to another (see
``ingest.reembed``) a scope may hold two, and the question is embedded by each. Each dense
list takes one of two plans, chosen by its size (``ModelGroup.read_exactly``): a small
scope, or a modest one that is a small share of all chunks, is read exactly (every chunk's
distance, through the collection index), a large one through the HNSW index of its
vectors' length with iterative scans, which keep reading the graph until enough allowed
chunks are found.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, Literal

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from inference import lexical
from ingest import vectors
from ingest.languages import ALL, AUTO, question_configurations
from ingest.models import Collection

Mode = Literal["hybrid", "dense", "fulltext"]
# The question's vector, or a function giving it for an embedding model's name. A bare
# vector serves every model of its length (callers that know there is one model).
QueryVector = np.ndarray | Callable[[str], np.ndarray]


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk. ``score`` is its cosine similarity to the question (what the
    relevance floor compares), whatever ranked it; ``fused`` is the score it was ranked by."""

    chunk_id: int
    document_id: int
    ordinal: int
    title: str
    page: int | None
    section: str
    text: str
    score: float
    fused: float = 0.0
    bm25: float | None = None
    dense_rank: int | None = None
    lexical_rank: int | None = None
    rerank: float | None = None  # the cross-encoder's score, when one is configured


@dataclass(frozen=True)
class Params:
    """How ``search`` ranks; the defaults come from settings (see docs/configuration.md)."""

    depth: int = 40  # candidates taken from each ranking before fusion
    rrf_k: float = 20.0
    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    bm25: lexical.Bm25 = field(default_factory=lexical.Bm25)
    ef_search: int = 100
    exact_scan_max_chunks: int = 5000
    reranker: str = ""  # a sentence-transformers cross-encoder folder; empty: none
    rerank_depth: int = 20  # fused candidates the cross-encoder reorders

    @classmethod
    def from_settings(cls) -> Params:
        return cls(
            depth=settings.RETRIEVAL_CANDIDATES,
            rrf_k=settings.RETRIEVAL_RRF_K,
            dense_weight=settings.RETRIEVAL_DENSE_WEIGHT,
            lexical_weight=settings.RETRIEVAL_LEXICAL_WEIGHT,
            bm25=lexical.Bm25(
                k1=settings.RETRIEVAL_BM25_K1,
                b=settings.RETRIEVAL_BM25_B,
                candidate_budget=settings.RETRIEVAL_LEXICAL_BUDGET,
                common_share=settings.RETRIEVAL_LEXICAL_COMMON_SHARE,
            ),
            ef_search=settings.RETRIEVAL_HNSW_EF_SEARCH,
            exact_scan_max_chunks=settings.RETRIEVAL_EXACT_SCAN_MAX_CHUNKS,
            reranker=settings.RERANKER_MODEL_PATH,
            rerank_depth=settings.RETRIEVAL_RERANK_DEPTH,
        )


def scope_sql(user: Any, narrow_to: Sequence[int] | None = None) -> tuple[str, tuple]:
    """SQL selecting the ids of collections ``user`` may read, optionally narrowed.

    Narrowing can only remove collections: the ids are intersected with the policy.
    """
    queryset = Collection.objects.visible_to(user).order_by()
    if narrow_to:
        queryset = queryset.filter(pk__in=[int(i) for i in narrow_to])
    sql, params = queryset.values("id").query.sql_with_params()
    return sql, tuple(params)


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(vector).tolist()) + "]"


@dataclass(frozen=True)
class ModelGroup:
    """The collections in scope whose vectors one embedding model made, with the question
    embedded by that model."""

    model: str
    collection_ids: list[int]
    chunk_count: int
    dimensions: int = 0
    vector: str = ""
    all_chunks: int = 0  # this model's live chunks in every collection, readable or not

    def read_exactly(self, params: Params) -> bool:
        """Whether to compute every chunk's distance rather than walk the HNSW graph.

        Up to ``exact_scan_max_chunks`` always. A scope that is a small share of the graph
        (a department's collection in a large installation) is read exactly up to
        ``SELECTIVE_SCOPE_FACTOR`` times that: the graph walk must pass over the other
        chunks to find its own, and loses recall doing it (measured at 1M chunks: a 1%
        department's 10,000 chunks: hybrid p95 76 ms and recall 0.90 through the graph,
        33 ms and recall 1.0 read exactly)."""
        limit = params.exact_scan_max_chunks
        if self.chunk_count <= limit:
            return True
        selective = self.chunk_count <= SELECTIVE_SCOPE_SHARE * self.all_chunks
        return selective and self.chunk_count <= SELECTIVE_SCOPE_FACTOR * limit


SELECTIVE_SCOPE_SHARE = 0.02
SELECTIVE_SCOPE_FACTOR = 4


# Per embedding model in the scope: its collections, their live chunks, and its live chunks
# in every collection, readable or not (what ``ModelGroup.read_exactly`` compares). Reads
# ``scope`` (id, embedding_model) like ``lexical.LANGUAGE_STATISTICS``.
_MODEL_STATISTICS = """
    SELECT s.embedding_model AS model, array_agg(s.id ORDER BY s.id) AS ids,
           coalesce(sum(l.chunk_count), 0) AS chunks,
           (SELECT coalesce(sum(a.chunk_count), 0)
            FROM ingest_lexicalcollection a JOIN ingest_collection m ON m.id = a.collection_id
            WHERE m.embedding_model = s.embedding_model) AS all_chunks
    FROM scope s LEFT JOIN ingest_lexicalcollection l ON l.collection_id = s.id
    GROUP BY s.embedding_model
"""

# Planner settings for the rest of this transaction (the ranking statement):
# - no JIT: compiling would cost more than these millisecond queries take;
# - iterative HNSW scans, so a filtered scope still fills its top list;
# - no sequential scans: the planner does not count the cost of decompressing every
#   chunk's tsvector to test it, and would read a whole collection where the GIN index
#   finds the few chunks that hold the question's rarer lexemes;
# - no sorts where an index gives the order: a large scope's nearest chunks come from the
#   HNSW index, not from sorting every chunk of the scope (the exact plan below has no
#   index to use, so it still sorts, as it must);
# - no parallel workers: starting them costs more than the work they would share.
_PLANNER_SETTINGS = """
           set_config('jit', 'off', true),
           set_config('enable_seqscan', 'off', true),
           set_config('enable_sort', 'off', true),
           set_config('max_parallel_workers_per_gather', '0', true),
           set_config('hnsw.iterative_scan', 'relaxed_order', true),
           set_config('hnsw.ef_search', %s, true)"""

# The first of the search's two statements: what the person may read, in one row. It takes
# the planner settings for the ranking, and per text search configuration and per embedding
# model of the readable collections, their statistics as JSON lists. One statement rather
# than one each: every statement costs a round trip and a plan of the access filter.
# Parameters: the scope's, the question's configurations in "auto" collections, the
# question's text, the graph's search list.
_SCOPE = (
    "WITH scope AS MATERIALIZED ("  # noqa: S608 - constant text; values are parameters
    + """
        SELECT c.id, c.language, c.embedding_model
        FROM ingest_collection c WHERE c.id IN ({scope})
    ),
    languages AS ("""
    + lexical.LANGUAGE_STATISTICS
    + """),
    models AS ("""
    + _MODEL_STATISTICS
    + """)
    SELECT (SELECT json_agg(languages ORDER BY language)::text FROM languages),
           (SELECT json_agg(models ORDER BY model)::text FROM models),"""
    + _PLANNER_SETTINGS
)


# Whether this process has met a collection of language "auto" in a scope. Until it has, a
# question skips language detection (milliseconds each, for nothing in most installations)
# and would be read in every language, should such a collection turn up.
_auto_seen = threading.Event()


def _readings(text: str) -> list[str]:
    """The configurations a question is read with in "auto" collections."""
    if not text.strip():
        return []
    return question_configurations(text) if _auto_seen.is_set() else ALL


def _read_scope(
    cursor: Any, scope: str, params: tuple, text: str, query: QueryVector, ef_search: int
) -> tuple[list[lexical.LexicalGroup], list[ModelGroup]]:
    """The scope's text search configurations and embedding models (with the question
    embedded by each), and the ranking's planner settings, in one statement."""
    cursor.execute(_SCOPE.format(scope=scope), [*params, _readings(text), text, str(ef_search)])
    languages, models = cursor.fetchone()[:2]
    groups = [lexical.language_group(row) for row in json.loads(languages or "[]")]
    if any(group.language == AUTO for group in groups):
        _auto_seen.set()
    model_groups = []
    for row in json.loads(models or "[]"):
        vector = np.asarray(query(row["model"]) if callable(query) else query, dtype=np.float32)
        model_groups.append(
            ModelGroup(
                row["model"],
                [int(i) for i in row["ids"]],
                int(row["chunks"]),
                len(vector),
                _vector_literal(vector),
                int(row["all_chunks"]),
            )
        )
    return groups, model_groups


# The chunks of one embedding model in scope, with their cosine distance. ``{distance}``
# and ``{length}`` repeat the partial index's expression and predicate (ingest/vectors.py);
# ``{join}`` and ``{live}`` check that the chunk belongs to its document's live version,
# as the path needs (below).
_DENSE_ROWS = """
    SELECT c.id, {distance} AS distance
    FROM ingest_chunk c{join}
    WHERE c.collection_id = ANY(%s::bigint[]) AND c.collection_id IN ({scope})
      AND c.embedding_model = %s AND {length}{live}
"""
# The nearest of them through the HNSW index: the planner walks the graph in distance order,
# looking up each chunk's document as it passes (checking against a hash of the scope's
# live versions instead gained nothing there: the walk reads few chunks).
_DENSE = _DENSE_ROWS + "    ORDER BY {distance}\n    LIMIT %s\n"
_LIVE_BY_LOOKUP = {
    "join": "\n    JOIN ingest_document d ON d.id = c.document_id AND d.live_version = c.version",
    "live": "",
}
# The nearest of them read exactly: every chunk is scored once in the sub-select (which the
# index cannot serve: the order is taken outside it), then the best are sorted out. Every
# chunk of the scope is read here, so whether it is live is checked against a hash of the
# scope's live (document, version) pairs, built once, not by a lookup in ingest_document
# per chunk (a third of the read's time at 10,000 chunks). "IS TRUE" keeps the planner
# from turning the IN into a join, which it would run as those lookups.
_DENSE_EXACT = (
    "    SELECT id, distance FROM ("  # noqa: S608 - constant text, values are parameters
    + _DENSE_ROWS
    + "    OFFSET 0) scored\n    ORDER BY distance\n    LIMIT %s\n"
)
_LIVE_BY_HASH = {
    "join": "",
    "live": """
      AND ((c.document_id, c.version) IN (
          SELECT d.id, d.live_version FROM ingest_document d
          WHERE d.collection_id = ANY(%s::bigint[]))) IS TRUE""",
}


def _similarity_sql(models: list[ModelGroup]) -> tuple[str, list[Any]]:
    """The chunk's cosine similarity to the question as its own model embedded it."""
    if len(models) == 1:
        return f"1 - {vectors.distance_sql(models[0].dimensions)}", [models[0].vector]
    cases, args = [], []
    for group in models:
        cases.append(f"WHEN %s THEN 1 - {vectors.distance_sql(group.dimensions)}")
        args += [group.model, group.vector]
    return f"CASE c.embedding_model {' '.join(cases)} END", args


def _ranking_sql(
    *,
    mode: Mode,
    models: list[ModelGroup],
    groups: list[lexical.LexicalGroup],
    scope: str,
    scope_params: tuple,
    params: Params,
    k: int,
) -> tuple[str, list[Any]]:
    depth = max(params.depth, k)
    ctes: list[str] = []
    args: list[Any] = []
    ranked: list[str] = []
    if mode in ("hybrid", "dense"):
        for number, group in enumerate(models):
            distance = vectors.distance_sql(group.dimensions)
            exact = group.read_exactly(params)
            dense = (_DENSE_EXACT if exact else _DENSE).format(
                scope=scope,
                distance=distance,
                length=vectors.dimension_predicate(group.dimensions),
                **(_LIVE_BY_HASH if exact else _LIVE_BY_LOOKUP),
            )
            ctes.append(f"dense{number} AS MATERIALIZED ({dense})")
            args += [group.vector, group.collection_ids, *scope_params, group.model]
            # the exact read's live-version hash takes the collections; the walk's ORDER BY
            # takes the question's vector again
            args += [group.collection_ids, depth] if exact else [group.vector, depth]
            ranked.append(
                f"SELECT id, row_number() OVER (ORDER BY distance, id) AS dense_rank, "  # noqa: S608
                f"NULL::bigint AS lexical_rank, NULL::float8 AS bm25 FROM dense{number}"
            )
    if mode in ("hybrid", "fulltext"):
        parts = []
        for group in groups:
            part = lexical.bm25_candidates(group, params.bm25, scope, scope_params, depth)
            if part is not None:
                parts.append(f"({part[0]})")
                args += part[1]
        if parts:
            union = " UNION ALL ".join(parts)
            ctes.append(
                f"lexical AS MATERIALIZED (SELECT id, score FROM ({union}) l "  # noqa: S608
                "ORDER BY score DESC, id LIMIT %s)"
            )
            args.append(depth)
            ranked.append(
                "SELECT id, NULL::bigint AS dense_rank, "
                "row_number() OVER (ORDER BY score DESC, id) AS lexical_rank, score AS bm25 "
                "FROM lexical"
            )
    if not ranked:
        return "", []
    similarity, similarity_args = _similarity_sql(models)
    sql = f"""
        WITH {", ".join(ctes)},
        ranked AS ({" UNION ALL ".join(ranked)}),
        fused AS (
            SELECT id, min(dense_rank) AS dense_rank, min(lexical_rank) AS lexical_rank,
                   max(bm25) AS bm25,
                   coalesce(%s / (%s + min(dense_rank)), 0)
                   + coalesce(%s / (%s + min(lexical_rank)), 0) AS fused
            FROM ranked
            GROUP BY id
            ORDER BY fused DESC, id
            LIMIT %s
        )
        SELECT c.id, c.document_id, c.ordinal, d.title, c.page, c.section, c.text,
               {similarity}, f.fused, f.bm25, f.dense_rank, f.lexical_rank
        FROM fused f
        JOIN ingest_chunk c ON c.id = f.id
        JOIN ingest_document d ON d.id = c.document_id
        ORDER BY f.fused DESC, f.id
    """  # noqa: S608 - the scope is SQL built by the ORM, its values are parameters
    args += [
        float(params.dense_weight),
        float(params.rrf_k),
        float(params.lexical_weight),
        float(params.rrf_k),
        k,
        *similarity_args,
    ]
    return sql, args


def search(
    user: Any,
    query_text: str,
    query_vector: QueryVector,
    *,
    k: int,
    narrow_to: Sequence[int] | None = None,
    mode: Mode = "hybrid",
    params: Params | None = None,
) -> list[Hit]:
    """The ``k`` best chunks for the question among those ``user`` may read, best first.

    ``mode`` picks dense (cosine), full-text (BM25) or both fused. ``narrow_to`` only ever
    removes collections from what the person may read. ``query_vector`` is the question's
    vector or, where collections may differ in embedding model, a function of the model's
    name giving it (called once per model in scope).
    """
    params = params or Params.from_settings()
    rerank = bool(params.reranker and query_text.strip())
    wanted = max(k, params.rerank_depth) if rerank else k
    scope, scope_params = scope_sql(user, narrow_to)
    text = query_text if mode != "dense" else ""
    with transaction.atomic(), connection.cursor() as cursor:
        # The graph search list must be well beyond the candidates wanted, or a deep list
        # (a benchmark's k=100) loses recall.
        ef_search = max(params.ef_search, 2 * max(params.depth, wanted))
        groups, models = _read_scope(cursor, scope, scope_params, text, query_vector, ef_search)
        if not groups:
            return []
        sql, args = _ranking_sql(
            mode=mode,
            models=models,
            groups=groups,
            scope=scope,
            scope_params=scope_params,
            params=params,
            k=wanted,
        )
        if not sql:
            return []
        cursor.execute(sql, args)
        rows = cursor.fetchall()
    hits = [
        Hit(
            *row[:7],
            score=float(row[7]),
            fused=float(row[8]),
            bm25=None if row[9] is None else float(row[9]),
            dense_rank=row[10],
            lexical_rank=row[11],
        )
        for row in rows
    ]
    return _reranked(params.reranker, query_text, hits)[:k] if rerank else hits


@cache
def _cross_encoder(path: str) -> Any:
    """Loaded once per process, from disk only (answer workers call this, never the web)."""
    from sentence_transformers import CrossEncoder

    return CrossEncoder(path, device="cpu", local_files_only=True)


def _reranked(path: str, query_text: str, hits: list[Hit]) -> list[Hit]:
    """The fused candidates reordered by a cross-encoder reading question and passage
    together; the cosine score (and so the relevance floor) is left as it was."""
    if not hits:
        return hits
    scores = np.asarray(_cross_encoder(path).predict([(query_text, h.text) for h in hits]))
    order = np.argsort(-scores.astype(float), kind="stable")  # ties keep the fused order
    return [replace(hits[i], rerank=float(scores[i])) for i in order]


def dense_search(
    user: Any,
    query_vector: QueryVector,
    *,
    k: int,
    narrow_to: Sequence[int] | None = None,
) -> list[Hit]:
    """Cosine ranking alone (kept for callers that have no question text)."""
    return search(user, "", query_vector, k=k, narrow_to=narrow_to, mode="dense")
