"""SciFact and XQuAD turned into documents and golden sets, read from ../shared/corpus.

No database: the converters read the benchmark files and write plain files; what they
write must read back through ``parse_file`` without a single error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.pilot.converters import ConvertedSet, scifact, xquad
from inference.pilot.goldens import parse_file

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"


def names(converted: ConvertedSet) -> set[str]:
    return {name for name, _, _ in converted.documents}


def assert_reads_back(converted: ConvertedSet, folder: Path) -> None:
    golden = converted.write(folder)
    parsed = parse_file(golden.name, golden.read_bytes())
    assert parsed.fatal is None and parsed.errors == []
    assert parsed.rows == converted.rows
    written = sorted(p.name for p in (folder / "documents").iterdir())
    assert written == sorted(names(converted))
    for name, _, text in converted.documents[:20]:
        assert (folder / "documents" / name).read_text(encoding="utf-8") == text
    index = [json.loads(line) for line in (folder / "documents.jsonl").open(encoding="utf-8")]
    assert [(d["name"], d["title"]) for d in index] == [(n, t) for n, t, _ in converted.documents]


# --- SciFact -------------------------------------------------------------------------


def test_scifact_keeps_the_first_claims_their_abstracts_and_sampled_distractors() -> None:
    converted = scifact(CORPUS, limit=5, distractors=40)

    assert len(converted.rows) == 5
    assert converted.rows[0].question == "0-dimensional biomaterials show inductive properties."
    needed = {s["document"] for row in converted.rows for s in row.expected_sources}
    assert needed <= names(converted)
    assert len(converted.documents) == len(needed) + 40
    for row in converted.rows:
        assert row.expected_answer == "" and row.answerable is True
        assert row.language == "en" and row.tags == ["scifact"]
        assert all(s["page"] is None for s in row.expected_sources)
    name, title, text = converted.documents[0]
    assert name.startswith("scifact-") and name.endswith(".txt")
    assert text.startswith(title) and len(text) > len(title) + 100


def test_scifact_is_the_same_every_time_and_the_seed_changes_the_distractors() -> None:
    first = scifact(CORPUS, limit=3, distractors=20)
    again = scifact(CORPUS, limit=3, distractors=20)
    other = scifact(CORPUS, limit=3, distractors=20, seed=8)
    assert first == again
    assert first.rows == other.rows and names(first) != names(other)


def test_scifact_whole_set_is_every_judged_claim_over_every_abstract() -> None:
    converted = scifact(CORPUS)
    assert len(converted.rows) == 300
    assert len(converted.documents) == 5183
    assert {s["document"] for r in converted.rows for s in r.expected_sources} <= names(converted)


def test_scifact_reads_back_without_errors(tmp_path: Path) -> None:
    assert_reads_back(scifact(CORPUS / "scifact", limit=10, distractors=30), tmp_path)


# --- XQuAD ---------------------------------------------------------------------------


def xquad_answers(lang: str) -> dict[str, str]:
    data = json.loads((CORPUS / "xquad" / f"xquad.{lang}.json").read_text(encoding="utf-8"))
    return {
        qa["question"].strip(): qa["answers"][0]["text"]
        for article in data["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    }


def test_xquad_limit_keeps_the_first_questions_in_both_languages_side_by_side() -> None:
    converted = xquad(CORPUS, limit=6, unanswerable=4, distractors=7)
    answerable = [r for r in converted.rows if r.answerable]

    assert len(answerable) == 6
    assert [r.language for r in answerable] == ["en", "de"] * 3
    assert answerable[0].question == "How many points did the Panthers defense surrender?"
    assert answerable[0].expected_answer == "308"
    assert answerable[0].expected_sources == [
        {"document": "xquad-en-super-bowl-50-1.txt", "page": None}
    ]
    assert answerable[1].tags == ["xquad", "de"]
    titles = {title for _, title, _ in converted.documents}
    assert "Super Bowl 50 ¶1 (en)" in titles and "Super Bowl 50 ¶1 (de)" in titles
    # Every paragraph of the articles asked about, and a few others to make search work.
    super_bowl = {n for n in names(converted) if n.split("-")[2:4] == ["super", "bowl"]}
    assert len(super_bowl) == 10
    assert len(converted.documents) == 10 + 7


def test_xquad_unanswerable_questions_lose_their_paragraph_in_every_language() -> None:
    converted = xquad(CORPUS, unanswerable=50, seed=7)
    refused = [r for r in converted.rows if not r.answerable]
    answerable = [r for r in converted.rows if r.answerable]

    assert len(refused) == 50
    assert {r.language for r in refused} == {"en", "de"}
    for row in refused:
        assert row.expected_sources == [] and row.expected_answer == ""
        assert "unanswerable" in row.tags
    kept = names(converted)
    assert all(s["document"] in kept for r in answerable for s in r.expected_sources)
    # A paragraph left out is left out in both languages (each is the other's translation).
    kept_en = {n.removeprefix("xquad-en-") for n in kept if n.startswith("xquad-en-")}
    kept_de = {n.removeprefix("xquad-de-") for n in kept if n.startswith("xquad-de-")}
    assert kept_en == kept_de
    assert len(converted.documents) < 480
    # No kept paragraph states the answer of a question made unanswerable.
    texts = [text.casefold() for _, _, text in converted.documents]
    answers = {**xquad_answers("en"), **xquad_answers("de")}
    for row in refused:
        assert not any(answers[row.question].casefold() in text for text in texts), row


def test_xquad_seed_chooses_other_unanswerable_questions() -> None:
    first = xquad(CORPUS, languages=("en",), unanswerable=10, seed=7)
    again = xquad(CORPUS, languages=("en",), unanswerable=10, seed=7)
    other = xquad(CORPUS, languages=("en",), unanswerable=10, seed=8)
    refused = [r.question for r in first.rows if not r.answerable]
    assert refused == [r.question for r in again.rows if not r.answerable]
    assert refused != [r.question for r in other.rows if not r.answerable]
    assert {r.language for r in first.rows} == {"en"}


def test_xquad_documents_have_unique_names_and_hold_their_paragraph() -> None:
    converted = xquad(CORPUS, unanswerable=0)
    assert len(names(converted)) == len(converted.documents) == 480
    answerable = [r for r in converted.rows if r.answerable]
    assert len(answerable) == len(converted.rows) > 2300
    bodies = {name: text for name, _, text in converted.documents}
    for row in answerable[:200]:
        assert row.expected_answer in bodies[row.expected_sources[0]["document"]]


def test_xquad_reads_back_without_errors(tmp_path: Path) -> None:
    assert_reads_back(xquad(CORPUS), tmp_path)


def test_xquad_names_a_missing_language() -> None:
    with pytest.raises(FileNotFoundError, match="“fr”"):
        xquad(CORPUS, languages=("fr",))
