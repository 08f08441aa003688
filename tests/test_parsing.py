"""Parsing real files from the shared corpus, fully offline."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from ingest.parsing import ParseError, UnsupportedFile, kind_for_name, parse
from tests.conftest import DOCUMENTS


def text_of(path, kind: str) -> str:
    return "\n".join(block.text for block in parse(path, kind))


def test_a_text_pdf_yields_its_text() -> None:
    # The silent-empty-ingestion trap: this must never come back empty.
    text = text_of(DOCUMENTS / "pdf" / "layout-parser-paper-fast.pdf", "pdf")
    assert "LayoutParser" in text
    assert len(text) > 2000


def test_pdf_blocks_carry_their_page_numbers() -> None:
    blocks = list(parse(DOCUMENTS / "pdf" / "reliance.pdf", "pdf"))
    assert {b.page for b in blocks} == {1, 2, 3}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("handbook-1p.docx", "United States Trustee"),
        ("fake-power-point.pptx", "Adding a Bullet Slide"),
        ("2023-half-year-analyses-by-segment.xlsx", "Revenue"),
        ("eml/family-day.eml", "family day"),
        ("fake-email.msg", "test email"),
        ("fake-html.html", "My First Heading"),
        ("README.md", "Example Docs"),
        ("stanley-cups.csv", "Stanley"),
        ("fake.odt", "Lorem ipsum"),
    ],
)
def test_office_mail_and_text_formats_yield_text(name: str, expected: str) -> None:
    path = DOCUMENTS / name
    assert expected.lower() in text_of(path, kind_for_name(path.name)).lower()


def test_unstructured_reads_narrative_text_with_the_offline_spacy_model() -> None:
    # Narrative-text detection needs spaCy; offline, unstructured would try to download it.
    from ingest.parsing.offline import configure_unstructured, spacy_model_dir

    configure_unstructured()
    from unstructured.nlp import tokenize

    assert str(spacy_model_dir()) == tokenize._SPACY_MODEL_NAME
    assert tokenize.sent_tokenize("One sentence here. And another one.") == [
        "One sentence here.",
        "And another one.",
    ]


def test_a_password_protected_pdf_fails_with_a_reason_people_understand() -> None:
    with pytest.raises(ParseError, match="Password-protected PDF"):
        list(parse(DOCUMENTS / "pdf" / "password.pdf", "pdf"))


def test_a_file_that_is_not_a_pdf_fails_plainly(tmp_path) -> None:
    fake = tmp_path / "fake.pdf"
    fake.write_bytes(b"this is not a pdf at all")
    with pytest.raises(ParseError, match="damaged or is not a PDF"):
        list(parse(fake, "pdf"))


@pytest.mark.parametrize("name", ["CantinaBand3.wav", "program.exe", "noextension"])
def test_types_that_hold_no_text_are_refused(name: str) -> None:
    with pytest.raises(UnsupportedFile, match="not supported"):
        kind_for_name(name)


def test_torchvision_stays_out_and_transformers_imports() -> None:
    # unstructured's extras would pull torchvision, which breaks transformers beside CPU torch.
    assert importlib.util.find_spec("torchvision") is None
    subprocess.run(
        [sys.executable, "-c", "import transformers, sentence_transformers"],
        check=True,
        timeout=120,
    )
