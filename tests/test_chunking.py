"""Chunks are sized in the embedding model's own word pieces, follow sections and keep
table rows whole (real all-MiniLM-L6-v2 tokenizer)."""

from __future__ import annotations

import itertools

import pytest

from ingest import embedding
from ingest.chunking import chunk_blocks
from ingest.parsing import Block, parse
from tests.conftest import DOCUMENTS

LIMIT = 254  # 256 word pieces, minus [CLS] and [SEP]


def chunks(blocks, target=200, overlap=30):
    return list(
        chunk_blocks(
            blocks,
            embedding.count_tokens,
            target_tokens=target,
            overlap_tokens=overlap,
            limit_tokens=LIMIT,
        )
    )


def test_no_chunk_is_longer_than_the_model_reads() -> None:
    blocks = parse(DOCUMENTS / "book-war-and-peace-1p.txt", "txt")
    result = chunks(blocks)
    assert len(result) > 3
    for chunk in result:
        (measured,) = embedding.count_tokens([chunk.embedding_text()])
        assert measured <= LIMIT, chunk.embedding_text()[:100]
        assert chunk.token_count >= measured - 2  # the count we store is honest


def test_a_sentence_longer_than_the_model_reads_is_split_not_cut() -> None:
    giant = " ".join(f"word{i}" for i in range(600)) + "."
    result = chunks([Block(giant, page=1)])
    assert len(result) >= 2
    assert " ".join(c.text for c in result).split() == giant.split()
    assert all(embedding.count_tokens([c.embedding_text()])[0] <= LIMIT for c in result)


def test_a_new_heading_starts_a_new_chunk_and_labels_it() -> None:
    blocks = [
        Block("Annual leave", page=1, heading="Annual leave", kind="title"),
        Block("Employees get 25 days of annual leave.", page=1, heading="Annual leave"),
        Block("Sick leave", page=2, heading="Sick leave", kind="title"),
        Block("Report sickness before nine.", page=2, heading="Sick leave"),
    ]
    result = chunks(blocks)
    assert [(c.section, c.page) for c in result] == [("Annual leave", 1), ("Sick leave", 2)]
    assert result[1].embedding_text() == "Sick leave\nReport sickness before nine."


def test_table_rows_stay_whole() -> None:
    rows = "\n".join(f"Region {i} | revenue {i * 1000} | margin {i}%" for i in range(120))
    result = chunks([Block(rows, page=1, kind="table")])
    assert len(result) > 1
    seen = [line for c in result for line in c.text.split("\n")]
    assert all(line.startswith("Region ") and line.endswith("%") for line in seen)
    assert [line for line in seen] == rows.split("\n")  # no overlap repeats table rows


@pytest.mark.parametrize("overlap", [0, 30])
def test_overlap_repeats_only_the_end_of_the_previous_chunk(overlap: int) -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    result = chunks([Block(text, page=1)], overlap=overlap)
    for before, after in itertools.pairwise(result):
        first_sentence = after.text.split(". ")[0]
        assert (first_sentence in before.text) == (overlap > 0)


def test_headings_without_text_of_their_own_are_kept_as_text() -> None:
    # A cover page or a slide of headings only: nothing may vanish from the index.
    blocks = [
        Block("Corporate", page=1, heading="Corporate", kind="title"),
        Block("Overview", page=1, heading="Overview", kind="title"),
        Block(
            "Integrated Annual Report 2021-22",
            page=1,
            heading="Integrated Annual Report 2021-22",
            kind="title",
        ),
        Block("Chairman's letter", page=2, heading="Chairman's letter", kind="title"),
        Block("Our revenue grew by a third.", page=2, heading="Chairman's letter"),
        Block("Appendix", page=3, heading="Appendix", kind="title"),
    ]
    result = chunks(blocks)
    everything = " ".join(c.embedding_text() for c in result)
    for block in blocks:
        assert block.text in everything
    assert result[0].page == 1 and result[0].section == "Chairman's letter"
    assert result[-1].text == "Appendix"


def test_a_heading_as_long_as_a_paragraph_is_read_as_text() -> None:
    long_title = " ".join(["Overlong heading words"] * 40)
    blocks = [
        Block("Scope", page=1, heading="Scope", kind="title"),
        Block(long_title, page=1, heading=long_title, kind="title"),
        Block("Body text.", page=1, heading=long_title),
    ]
    result = chunks(blocks)
    assert long_title in " ".join(c.text for c in result)
    assert all(c.section == "Scope" for c in result)


def test_real_pdf_pages_are_all_represented() -> None:
    blocks = list(parse(DOCUMENTS / "pdf" / "reliance.pdf", "pdf"))
    result = chunks(blocks)
    assert {c.page for c in result} == {b.page for b in blocks}
    assert "For an inclusive ecosystem" in " ".join(c.text for c in result)


def test_counting_agrees_with_the_model_s_own_tokenizer() -> None:
    text = (DOCUMENTS / "book-war-and-peace-1p.txt").read_text()
    pieces = [p for p in text.split("\n\n") if p.strip()][:50]
    pieces.append("Ünïcödé naïve café \u2013 123,45 €")
    reference = embedding.model().tokenizer(pieces, add_special_tokens=False)["input_ids"]
    assert embedding.count_tokens(pieces) == [len(ids) for ids in reference]


def test_counting_leaves_the_model_s_tokenizer_state_alone() -> None:
    # The chunker counts on its own thread while the model encodes on another. The model's
    # tokenizer keeps padding as state that each call rewrites: counting with it once broke
    # a batch mid-document ("Unable to create tensor"). Counting must not touch that state.
    backend = embedding.model().tokenizer.backend_tokenizer
    backend.enable_padding()  # as encode() leaves it set while it tokenizes a batch
    try:
        embedding.count_tokens(["A sentence to count.", "And another, longer one to count."])
        assert backend.padding is not None
    finally:
        backend.no_padding()
