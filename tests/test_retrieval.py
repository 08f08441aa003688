"""Hybrid search (inference/retrieval.py): the access filter holds on the lexical side as on
the dense side, scores come only from what the person may read, every hit carries its
cosine similarity for the relevance floor, each collection is searched in its own
language, the plan follows the scope's size, and the query count is pinned."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from inference import lexical
from inference.retrieval import Params, search
from ingest import actions, embedding, stages
from ingest import vectors as ingest_vectors
from ingest.chunking import ChunkDraft
from ingest.models import Document, Status
from tests.test_lexical import published, unit_vectors

pytestmark = pytest.mark.django_db

EXHAUSTIVE = lexical.Bm25(candidate_budget=10**9, common_share=1)


def ask(user: Any, text: str, *, mode: str = "hybrid", k: int = 5, **kwargs: Any) -> list[Any]:
    (vector,) = embedding.embed([text])
    return search(user, text, vector, k=k, mode=mode, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def library(people: Any) -> dict[str, Any]:
    hr = actions.create_collection(people.carol, "HR policies", people.hr)
    finance = actions.create_collection(people.carol, "Budgets", people.finance)
    canary = published(hr, ["The secret canary phrase is purple elephant zanzibarite."])
    budget = published(finance, ["The travel budget for 2026 is 40,000 euros."])
    return {"hr": hr, "finance": finance, "canary": canary, "budget": budget}


def documents(hits: list[Any]) -> set[int]:
    return {h.document_id for h in hits}


def test_lexical_side_never_returns_another_departments_chunk(
    people: Any, library: dict[str, Any]
) -> None:
    question = "zanzibarite purple elephant"
    assert documents(ask(people.alice, question, mode="fulltext")) == {library["canary"].pk}
    for outsider in (people.bob, people.oscar, people.dave, people.erin):
        assert ask(outsider, question, mode="fulltext") == []
        assert library["canary"].pk not in documents(ask(outsider, question))
    # A forged narrowing only ever narrows.
    for mode in ("fulltext", "hybrid", "dense"):
        assert ask(people.bob, question, mode=mode, narrow_to=[library["hr"].pk]) == []
    assert documents(
        ask(people.bob, question, narrow_to=[library["hr"].pk, library["finance"].pk])
    ) == {library["budget"].pk}


def test_sharing_opens_the_lexical_side_and_unsharing_closes_it(
    people: Any, library: dict[str, Any]
) -> None:
    actions.share_collection(people.carol, library["hr"], people.finance)
    assert library["canary"].pk in documents(ask(people.bob, "zanzibarite", mode="fulltext"))
    actions.unshare_collection(people.carol, library["hr"], people.finance)
    assert ask(people.bob, "zanzibarite", mode="fulltext") == []


def test_statistics_of_unreadable_collections_do_not_shape_a_persons_scores(
    people: Any,
) -> None:
    mine = actions.create_collection(people.carol, "Mine", people.finance, language="simple")
    published(mine, ["ledger ledger audit", "audit trail", "quarterly report"])
    params = Params(bm25=EXHAUSTIVE)
    vector = unit_vectors(1)[0]
    before = search(people.bob, "ledger audit", vector, k=5, mode="fulltext", params=params)
    # HR's collection is full of "audit": it would lower the word's IDF if it counted.
    theirs = actions.create_collection(people.carol, "Theirs", people.hr, language="simple")
    published(theirs, ["audit audit", "audit again", "more audit", "audit"])
    after = search(people.bob, "ledger audit", vector, k=5, mode="fulltext", params=params)
    assert [(h.chunk_id, h.bm25) for h in after] == [(h.chunk_id, h.bm25) for h in before]


def directions(*cosines: float) -> tuple[np.ndarray, np.ndarray]:
    """A query vector and one chunk vector per cosine, each at that similarity to it."""
    basis = np.linalg.qr(np.random.default_rng(1).standard_normal((384, 384)))[0].T
    query = basis[0]
    chunks = [c * basis[0] + np.sqrt(1 - c * c) * basis[i + 1] for i, c in enumerate(cosines)]
    return query.astype(np.float32), np.array(chunks, dtype=np.float32)


def test_every_hit_carries_its_cosine_similarity_even_when_only_bm25_found_it(
    people: Any,
) -> None:
    notes = actions.create_collection(people.carol, "Notes", people.hr)
    texts = ["Minutes of the budget meeting.", "Minutes of the hiring meeting.", "A quokka."]
    query, vectors = directions(0.9, 0.8, 0.1)
    document = published(notes, texts, vectors)
    # One candidate from each ranking: the nearest chunk, and the only one saying "quokka".
    hits = search(people.alice, "quokka", query, k=2, params=Params(depth=1, bm25=EXHAUSTIVE))
    found = {h.text: h for h in hits}
    assert (found[texts[2]].dense_rank, found[texts[2]].lexical_rank) == (None, 1)
    assert (found[texts[0]].dense_rank, found[texts[0]].lexical_rank) == (1, None)
    for text, cosine in ((texts[0], 0.9), (texts[2], 0.1)):
        assert found[text].document_id == document.pk
        assert found[text].score == pytest.approx(cosine, abs=1e-5)


def test_a_chunk_both_rankings_agree_on_comes_first(people: Any) -> None:
    notes = actions.create_collection(people.carol, "Mixed", people.hr)
    texts = [
        "Employees receive paid vacation every year.",  # second in both rankings
        "The cafeteria serves lunch.",  # first by meaning only
        "Paid vacation: employees, vacation, vacation, paid vacation.",  # first by words only
    ]
    query, vectors = directions(0.8, 0.9, 0.2)
    published(notes, texts, vectors)
    hits = search(people.alice, "paid vacation for employees", query, k=2, params=Params(depth=2))
    assert (hits[0].text, hits[0].dense_rank, hits[0].lexical_rank) == (texts[0], 2, 2)
    assert [h.fused for h in hits] == sorted((h.fused for h in hits), reverse=True)


def test_each_collection_is_searched_with_its_own_language(people: Any) -> None:
    german = actions.create_collection(people.carol, "Intern", people.hr, language="german")
    english = actions.create_collection(people.carol, "Internal", people.hr)
    haus = published(german, ["Die Häuser der Stadt wurden im Sommer renoviert."])
    published(english, ["The houses of the town were painted in spring."])
    # German stemming maps "Haus" and "Häuser" to one lexeme; English never would.
    hits = ask(people.alice, "Haus", mode="fulltext")
    assert documents(hits) == {haus.pk}
    hits = ask(people.alice, "house", mode="fulltext")
    assert haus.pk not in documents(hits) and len(hits) == 1


def _plan_of_last_search(user: Any, params: Params) -> str:
    vector = unit_vectors(1)[0]
    with CaptureQueriesContext(connection) as captured:
        search(user, "", vector, k=3, mode="dense", params=params)
    ranking = next(q["sql"] for q in captured.captured_queries if "dense0 AS" in q["sql"])
    settings = next(q["sql"] for q in captured.captured_queries if "set_config" in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute(settings)
        cursor.execute("EXPLAIN " + ranking)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_bm25_candidates_are_found_by_collection_and_lexeme_in_one_index_scan(
    people: Any, library: dict[str, Any]
) -> None:
    """The collection id sits in the full-text GIN index (ingest migration 0008), so a
    large department's candidates come from one scan, not from AND-ing a bitmap of its
    every chunk. The planner takes that scan where the lexemes are common outside the
    asker's collections and the collection is large, so the test gives it statistics like
    that: 1,000 copies of HR's canary chunk filed under Finance, and 20,000 other chunks
    in HR (rows written for the plan only, in this test's transaction)."""
    text = "secret canary phrase"
    with CaptureQueriesContext(connection) as captured:
        assert ask(people.alice, text, mode="fulltext", params=Params(bm25=EXHAUSTIVE))
    ranking = next(q["sql"] for q in captured.captured_queries if "lexical AS" in q["sql"])
    settings = next(q["sql"] for q in captured.captured_queries if "set_config" in q["sql"])
    copies = """
        INSERT INTO ingest_chunk (document_id, collection_id, version, embedding_model, ordinal,
                                  section, text, token_count, embedding, search_vector)
        SELECT c.document_id, %s, c.version, c.embedding_model, c.ordinal + {offset} + g,
               '', c.text, 0, c.embedding, {vector}
        FROM ingest_chunk c CROSS JOIN generate_series(1, {rows}) g
        WHERE c.id = (SELECT min(id) FROM ingest_chunk
                      WHERE document_id = %s AND search_vector @@ 'secret'::tsquery)
    """
    canary = library["canary"]
    with connection.cursor() as cursor:
        # not needed here, and slow to grow by 21,000 vectors
        cursor.execute(f"DROP INDEX {ingest_vectors.index_name(384)}")
        cursor.execute(
            copies.format(vector="c.search_vector", offset=0, rows=1000),
            [library["finance"].pk, canary.pk],
        )
        cursor.execute(
            copies.format(vector="to_tsvector('simple', 'filler ' || g)", offset=10000, rows=20000),
            [library["hr"].pk, canary.pk],
        )
        cursor.execute("ANALYZE ingest_chunk")
        cursor.execute(settings)
        cursor.execute("EXPLAIN " + ranking)
        plan = [row[0] for row in cursor.fetchall()]
    scan = next(i for i, line in enumerate(plan) if "Bitmap Index Scan" in line)
    assert "chunk_collection_search_vector" in plan[scan]
    assert "collection_id" in plan[scan + 1] and "search_vector @@" in plan[scan + 1]


def test_small_scopes_are_read_exactly_and_large_ones_through_the_hnsw_index(
    people: Any,
) -> None:
    notes = actions.create_collection(people.carol, "Plans", people.hr)
    published(notes, [f"note number {i}" for i in range(30)])
    exact = _plan_of_last_search(people.alice, Params(exact_scan_max_chunks=30))
    assert "chunk_embedding_hnsw" not in exact
    approximate = _plan_of_last_search(people.alice, Params(exact_scan_max_chunks=29))
    assert "chunk_embedding_hnsw" in approximate
    vector = unit_vectors(1, seed=5)[0]
    both = [
        [h.chunk_id for h in search(people.alice, "", vector, k=5, mode="dense", params=p)]
        for p in (Params(exact_scan_max_chunks=30), Params(exact_scan_max_chunks=0))
    ]
    assert both[0] == both[1]


@pytest.mark.parametrize("exact_max", [1000, 0], ids=["exact", "hnsw"])
def test_chunks_of_a_version_not_yet_published_are_never_found(people: Any, exact_max: int) -> None:
    notes = actions.create_collection(people.carol, "Plans", people.hr)
    document = published(notes, [f"note {i}" for i in range(10)])
    # A new version being read: its chunks are stored, it is not published yet.
    Document.objects.filter(pk=document.pk).update(
        version=F("version") + 1, status=Status.EMBEDDING
    )
    document.refresh_from_db()
    drafts = [(i, ChunkDraft(f"draft {i}", None, "", 10)) for i in range(10)]
    stages.insert(document, drafts, unit_vectors(10, seed=100 + document.pk))
    plan = _plan_of_last_search(people.alice, Params(exact_scan_max_chunks=exact_max))
    assert ("chunk_embedding_hnsw" in plan) == (exact_max == 0)

    vector = unit_vectors(1, seed=5)[0]
    params = Params(exact_scan_max_chunks=exact_max)
    hits = search(people.alice, "", vector, k=20, mode="dense", params=params)
    assert {h.text for h in hits} == {f"note {i}" for i in range(10)}


def _graph_options() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reloptions FROM pg_class WHERE relname = %s", [ingest_vectors.index_name(384)]
        )
        return cursor.fetchone()[0]


def test_vector_indexes_are_built_as_the_denser_graph(db: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {ingest_vectors.index_name(384)}")
    ingest_vectors.ensure_index(384)  # what ingestion does for a model of a new length
    assert _graph_options() == ["m=24", "ef_construction=96"]


def test_upgrading_rebuilds_an_index_built_with_the_old_graph_settings(people: Any) -> None:
    notes = actions.create_collection(people.carol, "Plans", people.hr)
    published(notes, [f"note number {i}" for i in range(40)])
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # DDL after the test's inserts
    rebuild = importlib.import_module("ingest.migrations.0007_denser_hnsw_graph")
    operation = rebuild.Migration.operations[0]
    editor = SimpleNamespace(connection=connection)
    operation.reverse_code(None, editor)  # the graph as an earlier version left it
    assert _graph_options() == ["m=16", "ef_construction=64"]
    operation.code(None, editor)
    assert _graph_options() == ["m=24", "ef_construction=96"]
    # The rebuilt graph holds every chunk: a walk finds what an exact read finds.
    assert "chunk_embedding_hnsw" in _plan_of_last_search(
        people.alice, Params(exact_scan_max_chunks=0)
    )
    vector = unit_vectors(1, seed=5)[0]
    both = [
        [h.chunk_id for h in search(people.alice, "", vector, k=40, mode="dense", params=p)]
        for p in (Params(exact_scan_max_chunks=1000), Params(exact_scan_max_chunks=0))
    ]
    assert len(both[0]) == 40 and both[0] == both[1]


def test_a_scope_that_is_a_small_share_of_all_chunks_is_read_exactly_a_while_longer(
    people: Any,
) -> None:
    notes = actions.create_collection(people.carol, "Plans", people.hr)
    published(notes, [f"note number {i}" for i in range(30)])
    ledger = actions.create_collection(people.carol, "Ledger", people.finance)
    for start in range(0, 1500, 500):
        published(ledger, [f"entry number {i}" for i in range(start, start + 500)])
    # Alice reads 30 of 1,530 chunks (under 2%): exact up to four times the limit.
    assert "chunk_embedding_hnsw" not in _plan_of_last_search(
        people.alice, Params(exact_scan_max_chunks=8)
    )
    assert "chunk_embedding_hnsw" in _plan_of_last_search(
        people.alice, Params(exact_scan_max_chunks=7)
    )
    # Bob reads 1,500 of 1,530: a large share goes through the graph past the limit.
    assert "chunk_embedding_hnsw" in _plan_of_last_search(
        people.bob, Params(exact_scan_max_chunks=1499)
    )


@pytest.mark.parametrize("mode", ["hybrid", "dense", "fulltext"])
def test_retrieval_path_runs_a_fixed_number_of_queries(
    people: Any, library: dict[str, Any], django_assert_num_queries: Any, mode: str
) -> None:
    (vector,) = embedding.embed(["secret canary phrase"])
    # savepoint, scope (statistics and planner settings), ranking, release: whatever the scope
    with django_assert_num_queries(4):
        hits = search(people.alice, "secret canary phrase", vector, k=5, mode=mode)
    assert documents(hits) == {library["canary"].pk}
    # Full text over a scope that holds none of the words needs no ranking query.
    with django_assert_num_queries(3 if mode == "fulltext" else 4):
        search(people.bob, "secret canary phrase", vector, k=5, mode=mode)


def test_the_ranking_statement_runs_under_the_search_planner_settings(
    people: Any, library: dict[str, Any]
) -> None:
    """The settings travel in the scope statement; the ranking, planned after it in the same
    transaction, must see them (read on the raw connection, just before it runs)."""
    seen: list[tuple[str, ...]] = []

    def before_ranking(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "fused AS" in sql:
            with context["connection"].connection.cursor() as raw:
                raw.execute(
                    "SELECT current_setting('jit'), current_setting('enable_seqscan'), "
                    "current_setting('enable_sort'), "
                    "current_setting('max_parallel_workers_per_gather'), "
                    "current_setting('hnsw.iterative_scan'), current_setting('hnsw.ef_search')"
                )
                seen.append(raw.fetchone())
        return execute(sql, params, many, context)

    with connection.execute_wrapper(before_ranking):
        hits = ask(people.alice, "secret canary phrase", params=Params(ef_search=123, depth=20))
    assert documents(hits) == {library["canary"].pk}
    assert seen == [("off", "off", "off", "0", "relaxed_order", "123")]


def test_nothing_readable_means_no_hits_and_no_ranking_query(
    people: Any, library: dict[str, Any], django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(3):  # savepoint, scope, release
        assert ask(people.oscar, "secret canary phrase") == []


def test_a_deleted_document_is_gone_from_both_rankings_at_once(
    people: Any, library: dict[str, Any]
) -> None:
    actions.delete_document(people.carol, library["canary"])
    for mode in ("hybrid", "dense", "fulltext"):
        assert library["canary"].pk not in documents(
            ask(people.alice, "secret canary zanzibarite", mode=mode)
        )
    assert not Document.objects.filter(pk=library["canary"].pk).exists()


def test_unknown_words_leave_the_dense_ranking_alone(people: Any, library: dict[str, Any]) -> None:
    question = "qwxzv plorkt"
    (vector,) = embedding.embed([question])
    hybrid = search(people.alice, question, vector, k=5)
    dense = search(people.alice, question, vector, k=5, mode="dense")
    assert [h.chunk_id for h in hybrid] == [h.chunk_id for h in dense]
    assert all(h.bm25 is None for h in hybrid)


def tiny_cross_encoder(folder: Path) -> Path:
    """A stand-in cross-encoder: a one-layer BERT with random weights and the embedding
    model's own tokenizer (no real reranker can be downloaded here)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    source = embedding.path_of()
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    return folder


def test_a_configured_cross_encoder_reorders_the_fused_candidates(
    people: Any, tmp_path: Path
) -> None:
    from sentence_transformers import CrossEncoder

    notes = actions.create_collection(people.carol, "Reranked", people.hr)
    texts = [f"Travel policy note {i}: trains, flights and hotel budgets." for i in range(8)]
    published(notes, texts, embedding.embed(texts))
    reranker = str(tiny_cross_encoder(tmp_path / "reranker"))
    question = "travel budget for hotels"
    (vector,) = embedding.embed([question])
    fused = search(people.alice, question, vector, k=8)
    reranked = search(
        people.alice, question, vector, k=3, params=Params(reranker=reranker, rerank_depth=8)
    )
    scores = CrossEncoder(reranker, device="cpu").predict([(question, h.text) for h in fused])
    expected = [fused[i].chunk_id for i in np.argsort(-np.asarray(scores), kind="stable")[:3]]
    assert [h.chunk_id for h in reranked] == expected
    assert expected != [h.chunk_id for h in fused[:3]]  # the reranker did change the order
    cosine = {h.chunk_id: h.score for h in fused}
    assert all(h.score == cosine[h.chunk_id] and h.rerank is not None for h in reranked)
