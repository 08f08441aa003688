"""Latency and recall of the access-filtered hybrid query on synthetic chunks.

N chunks (unit vectors, Zipf-distributed pseudo-words with topic words) over 10 departments,
one of which holds 1%. By default the vectors are shaped like text embeddings: chunks of
documents of topics of fields, each topic spreading in a subspace of its own, fitted so that
the local intrinsic dimension and the neighbours' cosines match all-MiniLM-L6-v2 vectors of
real text (``neighbourhood`` measures both; the run prints them). ``--structure isotropic``
gives cluster centres plus noise in all 384 directions instead, where a cluster's neighbours
are near ties: a worst case that graph indexes sort poorly and text does not produce. Each
department has one collection and one employee. Every query runs
through ``inference.retrieval.search`` as one of those employees; recall@10 compares the
dense ranking (the HNSW or exact plan the search picked) with an exact filtered search
(brute force over that department's vectors in numpy).

It all happens in a scratch database (created like a test database, migrated, dropped at
the end), so the appliance's own tables and indexes never see the synthetic rows. Rows are
bulk-loaded with COPY in the order ingestion leaves them (each document's chunks together,
documents of all departments in upload order) and the indexes built afterwards, as a
restore would. ``--sweep`` then times a grid of graph-search and exact-scan settings on the
same data.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from django.core.management.base import CommandError
from django.db import connection

from appliance.accounts.models import Department, Membership, Role, User
from inference.benchmarks.scratch import describe
from inference.retrieval import Params, search
from ingest import search_statistics, vectors
from ingest.models import Collection, Document, Status

DEPARTMENTS = 10
SMALL_SHARE = 0.01
CLUSTERS = 200
VOCABULARY = 20000
TOPIC_WORDS = 150
WORDS_PER_CHUNK = 70
CHUNKS_PER_DOCUMENT = 50
DIMENSIONS = 384
K = 10


@dataclass
class Corpus:
    vectors: np.ndarray  # (n, 384) float32, unit length
    departments: np.ndarray  # (n,) department index; 0 is the small one
    clusters: np.ndarray  # (n,) topic index
    documents: np.ndarray  # (n,) document index; a document lies in one department
    texts: list[str]
    words: list[str]
    topics: np.ndarray  # (clusters, TOPIC_WORDS) word indexes


# Of the "documents" structure, fitted to all-MiniLM-L6-v2 vectors of real text at about
# 5,000 chunks (see ``neighbourhood`` and docs/retrieval.md): the share of a direction
# common to all text, the spread of topics around their field, of documents around their
# topic and of chunks around their document (in the topic's own subspace of RANK
# dimensions), and a little noise in every direction.
FIELDS = 20
RANK = 48
COMMON, FIELD_SPREAD, DOCUMENT_SPREAD, CHUNK_SPREAD, NOISE = 0.65, 0.45, 0.65, 1.2, 0.45
QUERY_NOISE = 0.05  # per dimension: a query sits at cosine 0.7 from the chunk it was made from


def _pseudo_words(rng: np.random.Generator, count: int) -> list[str]:
    """Distinct lowercase letter strings; the 'simple' configuration keeps them as they are."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    seen: set[str] = set()
    words: list[str] = []
    while len(words) < count:
        word = "".join(rng.choice(letters, size=int(rng.integers(4, 11))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _documents_vectors(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Chunks of documents of topics of fields, as text embeddings lie: vectors, topic per
    chunk, document per chunk, department per document."""
    common = _unit(rng.standard_normal((1, DIMENSIONS)))[0]
    fields = _unit(rng.standard_normal((FIELDS, DIMENSIONS)))
    centres = _unit(
        fields[np.arange(CLUSTERS) % FIELDS]
        + FIELD_SPREAD * rng.standard_normal((CLUSTERS, DIMENSIONS)) / np.sqrt(DIMENSIONS)
    )
    count = -(-n // CHUNKS_PER_DOCUMENT)
    document_topics = rng.integers(0, CLUSTERS, size=count)
    documents = np.repeat(np.arange(count), CHUNKS_PER_DOCUMENT)[:n]
    clusters = document_topics[documents]
    vectors = np.empty((n, DIMENSIONS), dtype=np.float32)
    for topic in range(CLUSTERS):
        basis = np.linalg.qr(rng.standard_normal((DIMENSIONS, RANK)))[0].T  # (RANK, D)
        members = np.flatnonzero(clusters == topic)
        if not len(members):
            continue
        own = np.unique(documents[members])
        offsets = rng.standard_normal((len(own), RANK)) @ basis / np.sqrt(RANK)
        document_offset = offsets[np.searchsorted(own, documents[members])]
        chunk_offset = rng.standard_normal((len(members), RANK)) @ basis / np.sqrt(RANK)
        noise = rng.standard_normal((len(members), DIMENSIONS)) / np.sqrt(DIMENSIONS)
        vectors[members] = _unit(
            COMMON * common
            + centres[topic]
            + DOCUMENT_SPREAD * document_offset
            + CHUNK_SPREAD * chunk_offset
            + NOISE * noise
        )
    small = max(1, round(count * SMALL_SHARE))
    document_departments = np.concatenate(
        [np.zeros(small, dtype=np.int64), 1 + np.arange(count - small) % (DEPARTMENTS - 1)]
    )
    rng.shuffle(document_departments)
    return vectors, clusters, documents, document_departments[documents]


def _isotropic_vectors(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Cluster centres plus noise larger than the centre in every direction: within a
    cluster, neighbours are near ties (a worst case for a graph search, unlike text)."""
    centres = _unit(rng.standard_normal((CLUSTERS, DIMENSIONS)))
    clusters = rng.integers(0, CLUSTERS, size=n)
    vectors = _unit(centres[clusters] + 0.08 * rng.standard_normal((n, DIMENSIONS)))
    small = max(1, round(n * SMALL_SHARE))
    departments = np.concatenate(
        [np.zeros(small, dtype=np.int64), 1 + np.arange(n - small) % (DEPARTMENTS - 1)]
    )
    rng.shuffle(departments)
    # Documents of CHUNKS_PER_DOCUMENT chunks within each department.
    order = np.argsort(departments, kind="stable")
    documents = np.empty(n, dtype=np.int64)
    count = 0
    for d in range(DEPARTMENTS):
        members = order[departments[order] == d]
        documents[members] = count + np.arange(len(members)) // CHUNKS_PER_DOCUMENT
        count += -(-len(members) // CHUNKS_PER_DOCUMENT)
    return vectors, clusters, documents, departments


def generate(n: int, seed: int, structure: str = "documents") -> Corpus:
    rng = np.random.default_rng(seed)
    make = _documents_vectors if structure == "documents" else _isotropic_vectors
    vectors, clusters, documents, departments = make(rng, n)
    words = _pseudo_words(rng, VOCABULARY)
    zipf = 1.0 / np.arange(1, VOCABULARY + 1) ** 1.05
    zipf /= zipf.sum()
    # Topic words are mid-frequency words, the ones that tell one subject from another.
    topics = rng.choice(np.arange(300, VOCABULARY), size=(CLUSTERS, TOPIC_WORDS))
    common = rng.choice(VOCABULARY, size=(n, WORDS_PER_CHUNK), p=zipf)
    topical = topics[clusters[:, None], rng.integers(0, TOPIC_WORDS, (n, WORDS_PER_CHUNK))]
    picks = np.where(rng.random((n, WORDS_PER_CHUNK)) < 0.3, topical, common)
    texts = [" ".join(words[i] for i in row) for row in picks]
    return Corpus(vectors, departments, clusters, documents, texts, words, topics)


def neighbourhood(vectors: np.ndarray, sample: int = 200, seed: int = 0) -> dict[str, float]:
    """How the vectors' neighbourhoods look, to compare with real text embeddings: the
    local intrinsic dimension (maximum-likelihood estimate over 20 neighbours) and the
    cosine of the 1st, 10th and 100th nearest neighbour, medians over ``sample`` chunks.
    all-MiniLM-L6-v2 on real text: 18, 0.70, 0.56, 0.43 for 2,428 chunks of the PDFs in
    ../shared/corpus; 17, 0.68, 0.52, 0.39 for the 5,183 SciFact abstracts."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(vectors), size=min(sample, len(vectors)), replace=False)
    keep = 101
    best = np.full((len(chosen), keep), -2.0, dtype=np.float32)
    for start in range(0, len(vectors), 100_000):
        block = vectors[chosen] @ vectors[start : start + 100_000].T
        own = (chosen >= start) & (chosen < start + block.shape[1])
        block[own, chosen[own] - start] = -2.0  # not its own neighbour
        both = np.concatenate([best, block], axis=1)
        best = -np.sort(-both, axis=1)[:, :keep]
    distances = np.sqrt(np.maximum(2 - 2 * best[:, :20].astype(np.float64), 1e-12))
    dimension = -1 / np.mean(np.log(distances[:, :-1] / distances[:, -1:]), axis=1)
    return {
        "local_dimension": round(float(np.median(dimension)), 1),
        "cosine_1st": round(float(np.median(best[:, 0])), 3),
        "cosine_10th": round(float(np.median(best[:, 9])), 3),
        "cosine_100th": round(float(np.median(best[:, 99])), 3),
    }


@contextmanager
def scratch_database() -> Iterator[str]:
    """A migrated database of its own, like a test database; dropped afterwards."""
    old_name = connection.settings_dict["NAME"]
    name = f"{old_name}_bench_retrieval"
    connection.settings_dict.setdefault("TEST", {})["NAME"] = name
    try:
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    except Exception as exc:
        raise CommandError(
            f"Could not create the scratch database {name} ({exc}). The synthetic benchmark "
            "needs a role that may create databases: run it as the owner role "
            "(APPLIANCE_DB_USER=appliance_owner)."
        ) from exc
    try:
        yield name
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


FULL_TEXT_INDEX = "chunk_collection_search_vector"  # ingest.models.Chunk.Meta.indexes


def _load(corpus: Corpus, out: Any) -> dict[str, Any]:
    """People, collections, documents and chunks; returns the users by department."""
    from pgvector.psycopg import register_vector

    users, collections = [], []
    for d in range(DEPARTMENTS):
        department = Department.objects.create(name=f"department {d}")
        collections.append(
            Collection.objects.create(name=f"docs {d}", department=department, language="simple")
        )
        user = User.objects.create(username=f"reader{d}")
        Membership.objects.create(user=user, department=department, role=Role.EMPLOYEE)
        users.append(user)
    count = int(corpus.documents.max()) + 1
    by_document = np.argsort(corpus.documents, kind="stable")
    first = np.searchsorted(corpus.documents[by_document], np.arange(count))
    ordinal_of = np.empty(len(by_document), dtype=np.int64)
    ordinal_of[by_document] = np.arange(len(by_document)) - first[corpus.documents[by_document]]
    owner = corpus.departments[by_document[first]]
    documents = [
        Document(
            collection=collections[int(owner[i])],
            title=f"document {i}",
            original_name="synthetic.txt",
            stored_path="",
            sha256=f"{i:064x}",
            kind="txt",
            status=Status.READY,
            version=1,
            live_version=1,
        )
        for i in range(count)
    ]
    documents = Document.objects.bulk_create(documents, batch_size=2000)
    document_ids = np.array([doc.pk for doc in documents])
    # Rows lie in the table as ingestion leaves them: each document's chunks together,
    # documents of all departments in the random order they were uploaded.
    upload_rank = np.random.default_rng(len(documents)).permutation(len(documents))
    collection_ids = np.array([c.pk for c in collections])
    started = time.perf_counter()
    connection.ensure_connection()
    register_vector(connection.connection)  # binary COPY of numpy vectors
    with connection.cursor() as cursor:
        vectors.ensure_index(DIMENSIONS)
        hnsw_definition = vectors.create_index_sql(DIMENSIONS)
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [FULL_TEXT_INDEX])
        (gin_definition,) = cursor.fetchone()
        cursor.execute(f"DROP INDEX {vectors.index_name(DIMENSIONS)}")
        cursor.execute(f"DROP INDEX {FULL_TEXT_INDEX}")
        cursor.execute(
            "CREATE TEMP TABLE staging (id bigint, document_id bigint, collection_id bigint, "
            "ordinal integer, uploaded integer, text text, embedding vector(384))"
        )
        with cursor.cursor.copy(
            "COPY staging (id, document_id, collection_id, ordinal, uploaded, text, embedding) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int8", "int8", "int4", "int4", "text", "vector"])
            for i, text in enumerate(corpus.texts):
                copy.write_row(
                    (
                        i + 1,
                        int(document_ids[corpus.documents[i]]),
                        int(collection_ids[corpus.departments[i]]),
                        int(ordinal_of[i]),
                        int(upload_rank[corpus.documents[i]]),
                        text,
                        corpus.vectors[i],
                    )
                )
        # The same full-text terms as ingestion writes: the collection's configuration.
        cursor.execute(
            """
            INSERT INTO ingest_chunk (id, document_id, collection_id, version, embedding_model,
                                      ordinal, page, section, text, token_count, embedding,
                                      search_vector)
            SELECT s.id, s.document_id, s.collection_id, 1, c.embedding_model, s.ordinal, NULL,
                   '', s.text, 0, s.embedding, to_tsvector(c.language::regconfig, s.text)
            FROM staging s JOIN ingest_collection c ON c.id = s.collection_id
            ORDER BY s.uploaded, s.ordinal
            """
        )
        cursor.execute("DROP TABLE staging")
        out.write(f"  copied {len(corpus.texts)} chunks in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        vectors.set_build_memory(cursor, len(corpus.texts))
        cursor.execute(hnsw_definition)
        out.write(f"  built the HNSW index in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        cursor.execute(gin_definition)
        search_statistics.rebuild([int(c) for c in collection_ids])
        cursor.execute("VACUUM ANALYZE")
        out.write(
            f"  built the GIN index and BM25 statistics in {time.perf_counter() - started:.1f} s"
        )
    return {"users": users, "collection_ids": collection_ids}


def _queries(corpus: Corpus, count: int, seed: int) -> list[tuple[int, str, np.ndarray]]:
    """(department, text, vector): half asked in the small department, half elsewhere. A
    query is a perturbed chunk of the asker's department with words of its subject."""
    rng = np.random.default_rng(seed + 1)
    result = []
    for q in range(count):
        department = 0 if q % 2 == 0 else int(rng.integers(1, DEPARTMENTS))
        target = int(rng.choice(np.flatnonzero(corpus.departments == department)))
        vector = corpus.vectors[target] + QUERY_NOISE * rng.standard_normal(DIMENSIONS)
        vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        own = corpus.texts[target].split()
        topic = corpus.topics[corpus.clusters[target]]
        words = [corpus.words[int(i)] for i in rng.choice(topic, 2)]
        words += [*rng.choice(own, 3), corpus.words[int(rng.integers(0, 50))]]
        result.append((department, " ".join(words), vector))
    return result


WARM_UP_SEED = 1000  # the warm-up questions' seed, apart from the timed ones'


def _reference_exact_scan(asked: list[tuple[int, str, np.ndarray]], collection_id: int) -> float:
    """p95 of the plain exact query ARCHITECTURE.md timed, to tell how busy the machine is."""
    timings = []
    with connection.cursor() as cursor:
        cursor.execute("SET jit = off")
        for department, _, vector in asked:
            if department != 0:
                continue
            literal = "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"
            begun = time.perf_counter()
            cursor.execute(
                "SELECT id FROM ingest_chunk WHERE collection_id = %s "
                "ORDER BY (embedding <=> %s::vector) + 0 LIMIT 10",  # + 0: no index
                [int(collection_id), literal],
            )
            cursor.fetchall()
            timings.append(1000 * (time.perf_counter() - begun))
        cursor.execute("RESET jit")
    return round(float(np.percentile(timings, 95)), 2)


def _exact_top(corpus: Corpus, department: int, vector: np.ndarray) -> set[int]:
    members = np.flatnonzero(corpus.departments == department)
    distances = 1 - corpus.vectors[members] @ vector
    best = members[np.argsort(distances, kind="stable")[:K]]
    return {int(i) + 1 for i in best}  # chunk ids are row numbers + 1


def _measure(
    corpus: Corpus, asked: list[tuple[int, str, np.ndarray]], users: list[Any], params: Params
) -> dict[str, Any]:
    """Latency of the hybrid search and recall of its dense ranking, with ``params``."""
    for department, text, vector in asked[:20]:  # the statements' first plans
        search(users[department], text, vector, k=K, params=params)
    latencies: dict[bool, list[float]] = {True: [], False: []}
    for department, text, vector in asked:
        begun = time.perf_counter()
        search(users[department], text, vector, k=K, params=params)
        latencies[department == 0].append(1000 * (time.perf_counter() - begun))
    recalls: dict[bool, list[float]] = {True: [], False: []}
    dense_latencies = []
    for department, _, vector in asked:
        begun = time.perf_counter()
        hits = search(users[department], "", vector, k=K, mode="dense", params=params)
        dense_latencies.append(1000 * (time.perf_counter() - begun))
        found = {h.chunk_id for h in hits}
        exact = _exact_top(corpus, department, vector)
        recalls[department == 0].append(len(found & exact) / K)
    everything = latencies[True] + latencies[False]
    return {
        "p50_ms": round(float(np.percentile(everything, 50)), 2),
        "p95_ms": round(float(np.percentile(everything, 95)), 2),
        "p95_ms_small_department": round(float(np.percentile(latencies[True], 95)), 2),
        "p95_ms_large_departments": round(float(np.percentile(latencies[False], 95)), 2),
        "dense_p95_ms": round(float(np.percentile(dense_latencies, 95)), 2),
        "recall_at_10": round(float(np.mean(recalls[True] + recalls[False])), 4),
        "recall_at_10_small_department": round(float(np.mean(recalls[True])), 4),
        "recall_at_10_large_departments": round(float(np.mean(recalls[False])), 4),
    }


SWEEP_EF_SEARCH = (40, 100, 200, 400)
SWEEP_EXACT_MAX = (5000, 20000)


def _warm_up(asked: list[tuple[int, str, np.ndarray]], users: list[Any], params: Params) -> float:
    """Ask other questions of the same kind first, and return their hybrid p95.

    The benchmark builds its indexes in bulk, and PostgreSQL writes bulk builds past its
    shared buffers: right after loading, every question reads the graph from the operating
    system. The appliance's own ingestion adds chunks one document at a time, through the
    buffers, and a running appliance has answered questions before. So the timed questions
    come after as many different ones (never the same: their graph paths would all be
    cached), and this cold pass is reported beside them."""
    timings = []
    for department, text, vector in asked:
        begun = time.perf_counter()
        search(users[department], text, vector, k=K, params=params)
        timings.append(1000 * (time.perf_counter() - begun))
    return round(float(np.percentile(timings, 95)), 2)


def _sweep(corpus: Corpus, asked: list, users: list[Any], params: Params, out: Any) -> list:
    out.write("sweep (hybrid p50 / p95 ms, recall@10 small / large departments):")
    rows = []
    for exact_max in SWEEP_EXACT_MAX:
        for ef_search in SWEEP_EF_SEARCH:
            tried = replace(params, ef_search=ef_search, exact_scan_max_chunks=exact_max)
            figures = _measure(corpus, asked, users, tried)
            rows.append({"ef_search": ef_search, "exact_scan_max_chunks": exact_max, **figures})
            out.write(
                f"  ef_search {ef_search:>4}, exact scan up to {exact_max:>6} chunks: "
                f"{figures['p50_ms']:6.1f} / {figures['p95_ms']:6.1f} ms, recall "
                f"{figures['recall_at_10_small_department']:.3f} / "
                f"{figures['recall_at_10_large_departments']:.3f}"
            )
    return rows


def run(
    n: int,
    params: Params,
    out: Any,
    *,
    queries: int,
    seed: int,
    sweep: bool = False,
    structure: str = "documents",
) -> dict[str, Any]:
    out.write(f"synthetic: {n} chunks ({structure}) over {DEPARTMENTS} departments, one holding 1%")
    started = time.perf_counter()
    corpus = generate(n, seed, structure)
    generated = time.perf_counter() - started
    shape = neighbourhood(corpus.vectors)
    out.write(
        f"  generated in {generated:.1f} s; local dimension "
        f"{shape['local_dimension']}, cosine of the 1st / 10th / 100th neighbour "
        f"{shape['cosine_1st']} / {shape['cosine_10th']} / {shape['cosine_100th']} (real "
        "text chunks, all-MiniLM-L6-v2: about 18, 0.70 / 0.56 / 0.43)"
    )
    asked = _queries(corpus, queries, seed)
    with scratch_database() as name:
        out.write(f"  scratch database {name}")
        loaded = _load(corpus, out)
        users = loaded["users"]
        cold_p95 = _warm_up(_queries(corpus, queries, seed + WARM_UP_SEED), users, params)
        figures = _measure(corpus, asked, users, params)
        reference = _reference_exact_scan(asked, loaded["collection_ids"][0])
        exhaustive = replace(
            params, bm25=replace(params.bm25, candidate_budget=10**12, common_share=1.0)
        )
        overlap = []
        for department, text, vector in asked[: max(20, len(asked) // 4)]:
            got = search(users[department], text, vector, k=K, mode="fulltext", params=params)
            full = search(users[department], text, vector, k=K, mode="fulltext", params=exhaustive)
            if full:
                overlap.append(len({h.chunk_id for h in got} & {h.chunk_id for h in full}) / K)
        grid = _sweep(corpus, asked, users, params, out) if sweep else None
    result = {
        "chunks": n,
        "structure": structure,
        "neighbourhood": shape,
        "queries": len(asked),
        **figures,
        "cold_p95_ms": cold_p95,
        "bm25_top10_overlap_with_unbudgeted": round(float(np.mean(overlap)), 4),
        "reference_exact_scan_small_department_p95_ms": reference,
        "parameters": describe(params),
    }
    if grid is not None:
        result["sweep"] = grid
    out.write(
        f"hybrid query, access-filtered, k={K}: p50 {result['p50_ms']} ms, p95 "
        f"{result['p95_ms']} ms (small department p95 {result['p95_ms_small_department']}, "
        f"large {result['p95_ms_large_departments']}); dense alone p95 {result['dense_p95_ms']}"
    )
    out.write(
        f"  before them, {len(asked)} other questions right after loading (cold caches): "
        f"p95 {cold_p95} ms"
    )
    out.write(
        f"recall@10 against exact filtered search: {result['recall_at_10']} overall, "
        f"{result['recall_at_10_small_department']} in the 1% department, "
        f"{result['recall_at_10_large_departments']} in the others"
    )
    out.write(
        "machine load reference: a bare exact scan of the 1% department (no access filter, "
        f"no full text) p95 {reference} ms here; ARCHITECTURE.md measured 4.4 ms for the 1k "
        "rows of 100k chunks on a quiet machine (the scan grows with the department)"
    )
    out.write(
        "BM25 top 10 with the candidate budget vs without: "
        f"{result['bm25_top10_overlap_with_unbudgeted']} overlap"
    )
    return result
