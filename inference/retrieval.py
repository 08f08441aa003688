"""Finding the chunks that answer a question, among those the asker may read.

The access filter is part of the ranking statement itself: the collections the person may
read (from ``Collection.objects.visible_to``) are a sub-select inside the query that
orders chunks by distance, and pgvector's iterative index scan keeps reading the HNSW index
until ``k`` allowed chunks are found. Top-k is therefore never filled with chunks the
person may not see, and never filtered afterwards in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection, transaction

from ingest.models import Collection


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: int
    ordinal: int
    title: str
    page: int | None
    section: str
    text: str
    score: float


def scope_sql(user: Any, narrow_to: Sequence[int] | None = None) -> tuple[str, tuple]:
    """SQL selecting the ids of collections ``user`` may read, optionally narrowed.

    Narrowing can only remove collections: the ids are intersected with the policy.
    """
    queryset = Collection.objects.visible_to(user)
    if narrow_to:
        queryset = queryset.filter(pk__in=[int(i) for i in narrow_to])
    sql, params = queryset.values("id").query.sql_with_params()
    return sql, tuple(params)


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


def dense_search(
    user: Any,
    query_vector: np.ndarray,
    *,
    k: int,
    narrow_to: Sequence[int] | None = None,
    ef_search: int = 100,
) -> list[Hit]:
    scope, scope_params = scope_sql(user, narrow_to)
    vector = _vector_literal(query_vector)
    sql = f"""
        WITH nearest AS MATERIALIZED (
            SELECT c.id, c.document_id, c.ordinal, c.page, c.section, c.text,
                   c.embedding <=> %s::vector AS distance
            FROM ingest_chunk c
            JOIN ingest_document d ON d.id = c.document_id AND d.live_version = c.version
            WHERE c.collection_id IN ({scope})
            ORDER BY c.embedding <=> %s::vector
            LIMIT %s
        )
        SELECT n.id, n.document_id, n.ordinal, d.title, n.page, n.section, n.text,
               1 - n.distance
        FROM nearest n JOIN ingest_document d ON d.id = n.document_id
        ORDER BY n.distance
    """  # noqa: S608 - the scope is SQL built by the ORM, its values are parameters
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(max(ef_search, k))])
        cursor.execute(sql, [vector, *scope_params, vector, k])
        rows = cursor.fetchall()
    return [Hit(*row[:7], score=float(row[7])) for row in rows]
