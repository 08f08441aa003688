"""``manage.py benchmark retrieval``: both variants run through the appliance's own search on
the real database, print the figures the issue asks for on their last line, and leave
nothing behind."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from ingest.models import Chunk, Collection

# The synthetic benchmark creates and drops a database of its own, which no transaction can
# hold: these tests commit, and end like every live test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("live_db")


def last_json(out: StringIO) -> dict[str, Any]:
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_the_synthetic_benchmark_times_the_filtered_query_in_a_scratch_database() -> None:
    out = StringIO()
    call_command(
        "benchmark",
        "retrieval",
        "--synthetic",
        "3000",
        "--queries",
        "20",
        "--sweep",
        "--json",
        stdout=out,
    )
    result = last_json(out)
    assert result["chunks"] == 3000 and result["queries"] == 20
    assert 0 < result["p50_ms"] <= result["p95_ms"]
    assert result["cold_p95_ms"] > 0  # the warm-up's other questions, timed too
    # Every department is small enough to be read exactly: the ranking must then agree with
    # numpy's brute force over the asker's department, which an access filter that let
    # other departments in, or a wrong distance, would break.
    assert result["recall_at_10"] == result["recall_at_10_small_department"] == 1.0
    assert len(result["sweep"]) == 8
    assert all(row["recall_at_10"] == 1.0 for row in result["sweep"])
    with connection.cursor() as cursor:
        scratch = f"{connection.settings_dict['NAME']}_bench_retrieval"
        cursor.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [scratch])
        assert cursor.fetchone()[0] == 0  # the scratch database is dropped
    assert not Chunk.objects.exists()  # and the test database never saw its rows


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    """Six abstracts and three queries, each with one relevant abstract."""
    corpus = [
        ("d1", "Vitamin D", "Vitamin D deficiency is associated with bone fractures in adults."),
        ("d2", "Malaria", "Mosquito nets reduce malaria transmission in rural villages."),
        ("d3", "Statins", "Statins lower cholesterol and reduce the risk of heart attacks."),
        ("d4", "Sleep", "Short sleep duration impairs memory consolidation in students."),
        ("d5", "Coffee", "Coffee consumption shows no link to kidney stones in this cohort."),
        ("d6", "Exercise", "Regular aerobic exercise improves insulin sensitivity."),
    ]
    queries = [
        ("q1", "Do bed nets prevent malaria?", "d2"),
        ("q2", "cholesterol lowering drugs and heart attack risk", "d3"),
        ("q3", "sleep and memory", "d4"),
    ]
    (tmp_path / "qrels").mkdir()
    with (tmp_path / "corpus.jsonl").open("w") as handle:
        for doc_id, title, text in corpus:
            handle.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (tmp_path / "queries.jsonl").open("w") as handle:
        for query_id, text, _ in queries:
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    with (tmp_path / "qrels" / "test.tsv").open("w") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for query_id, _, doc_id in queries:
            handle.write(f"{query_id}\t{doc_id}\t1\n")
    return tmp_path


def test_the_beir_benchmark_scores_dense_fulltext_and_hybrid_retrieval(tiny_beir: Path) -> None:
    out = StringIO()
    call_command("benchmark", "retrieval", "--beir", str(tiny_beir), "--json", stdout=out)
    result = last_json(out)
    for measure in ("ndcg_at_10", "recall_at_100"):
        assert set(result[measure]) >= {"dense", "fulltext", "hybrid"}
    # Six abstracts: every relevant one is among the first hundred, whatever the ranking.
    assert result["recall_at_100"] == {"dense": 1.0, "fulltext": 1.0, "hybrid": 1.0}
    # Each query names its abstract plainly: the real model and BM25 both put it first.
    assert result["ndcg_at_10"]["dense"] == pytest.approx(1.0)
    assert result["ndcg_at_10"]["hybrid"] == pytest.approx(1.0)
    assert not Collection.objects.exists() and not Chunk.objects.exists()


def _xquad_file(folder: Path, lang: str, articles: list[tuple[str, list[tuple[str, str]]]]):
    """An XQuAD file: each article's paragraphs with one question each."""
    data = {
        "version": "1.1",
        "data": [
            {
                "title": title,
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [{"id": f"{title}-{i}", "question": question, "answers": []}],
                    }
                    for i, (context, question) in enumerate(paragraphs)
                ],
            }
            for title, paragraphs in articles
        ],
    }
    (folder / f"xquad.{lang}.json").write_text(json.dumps(data), encoding="utf-8")


def test_the_xquad_benchmark_compares_models_across_languages_and_writes_its_record(
    tmp_path: Path,
) -> None:
    _xquad_file(
        tmp_path,
        "en",
        [
            (
                "Rivers",
                [
                    ("The Rhine flows through Basel and Cologne.", "Where does the Rhine flow?"),
                    (
                        "Bridges over the Elbe were rebuilt in 1950.",
                        "When were the bridges rebuilt?",
                    ),
                ],
            ),
            ("Bread", [("Rye bread is baked for twelve hours.", "How long is rye bread baked?")]),
        ],
    )
    _xquad_file(
        tmp_path,
        "de",
        [
            (
                "Rivers",
                [
                    ("Der Rhein fließt durch Basel und Köln.", "Wo fließt der Rhein?"),
                    (
                        "Die Brücken über die Elbe wurden 1950 neu gebaut.",
                        "Wann wurden die Brücken gebaut?",
                    ),
                ],
            ),
            (
                "Bread",
                [
                    (
                        "Roggenbrot wird zwölf Stunden gebacken.",
                        "Wie lange wird Roggenbrot gebacken?",
                    )
                ],
            ),
        ],
    )
    out = StringIO()
    call_command(
        "benchmark",
        "retrieval",
        "--xquad",
        str(tmp_path),
        "--record",
        str(tmp_path),
        "--json",
        stdout=out,
    )
    result = last_json(out)
    assert result["questions_per_condition"] == 3 and result["collection_language"] == "auto"
    assert set(result["results"]) == {"all-MiniLM-L6-v2", "multilingual-e5-small-q4"}
    for conditions in result["results"].values():
        assert set(conditions) == {"en->en", "de->de", "de->en"}
        for modes in conditions.values():
            assert set(modes) == {"dense", "fulltext", "hybrid"}
            assert modes["dense"]["recall_at_10"] == 1.0  # three paragraphs: all are read
            assert all(0 <= m["ndcg_at_10"] <= 1 for m in modes.values())
    (record,) = tmp_path.glob("*-retrieval-xquad-cross-lingual.md")
    text = record.read_text(encoding="utf-8")
    assert text.count("| multilingual-e5-small-q4 | German questions, English paragraphs |") == 3
    assert f"--xquad {tmp_path}" in text
    assert not Collection.objects.exists()  # the scratch collections are gone
