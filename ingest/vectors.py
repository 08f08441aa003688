"""The HNSW indexes of chunk vectors: one partial index per vector length.

``ingest_chunk.embedding`` holds vectors of any length, so that a collection can move to a
model of another dimension without a schema change. HNSW needs one length per index, so
each length in use gets its own, on ``embedding::vector(d)`` and restricted to the rows of
that length (pgvector's way to index mixed dimensions). A query uses it by repeating the
same expression and predicate (``distance_sql``, ``dimension_predicate``).
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction

# Graph settings of every chunk index. pgvector's defaults (m 16, ef_construction 64) found
# 0.83 of the true top 10 in the large departments of 1M synthetic chunks; this denser graph
# found 0.963, for a build 1.44 times as long and the same query time
# (docs/benchmarks/2026-11-26-retrieval-hnsw-graph.md).
# Ingest migration 0007 rebuilt the indexes that existed before.
M = 24
EF_CONSTRUCTION = 96


def index_name(dimensions: int) -> str:
    return f"chunk_embedding_hnsw_{int(dimensions)}"


def create_index_sql(dimensions: int) -> str:
    d = int(dimensions)
    return (
        f"CREATE INDEX IF NOT EXISTS {index_name(d)} ON ingest_chunk "
        f"USING hnsw ((embedding::vector({d})) vector_cosine_ops) "
        f"WITH (m = {M}, ef_construction = {EF_CONSTRUCTION}) "
        f"WHERE vector_dims(embedding) = {d}"
    )


def set_build_memory(cursor: Any, chunks: int) -> None:
    """Give this session's index builds memory for the whole graph of ``chunks`` vectors.

    About 2.5 kB a 384-dimension chunk (4 kB is asked, for the denser graph's longer
    neighbour lists); past what ``maintenance_work_mem`` holds, pgvector goes on building on
    disk, several times slower (1M chunks, the old graph: 2,144 s with 1 GB, 191 s in
    memory). Bounded to 1 to 8 GB, so a huge table still builds, slowly, rather than failing.
    """
    megabytes = max(1024, min(8192, int(chunks) * 4 // 1024))
    cursor.execute(f"SET maintenance_work_mem = '{megabytes}MB'")


def dimension_predicate(dimensions: int, alias: str = "c") -> str:
    """The index's predicate, spelled so the planner recognises it."""
    return f"vector_dims({alias}.embedding) = {int(dimensions)}"


def distance_sql(dimensions: int, alias: str = "c") -> str:
    """Cosine distance to a ``%s`` parameter, in the index's own expression."""
    d = int(dimensions)
    return f"({alias}.embedding::vector({d}) <=> %s::vector({d}))"


def ensure_index(dimensions: int) -> None:
    """Create the index for vectors of this length unless it exists.

    One catalog look-up per call (a call per document ingested); building it over an
    empty set of rows is instant, the table is read once to find them.
    """
    d = int(dimensions)
    with transaction.atomic(), connection.cursor() as cursor:
        # Two workers meeting a new length at once: one builds, the other then finds it.
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('ingest_chunk hnsw'))")
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [index_name(d)])
        if cursor.fetchone() is None:
            cursor.execute(create_index_sql(d))
