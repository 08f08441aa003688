"""Parsing real files from the shared corpus, fully offline: every supported format, OCR,
pages and headings for citations, and plain reasons for what cannot be read."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.parsing import ParseError, UnsupportedFile, kind_for_name, parse
from tests.conftest import CORPUS, DOCUMENTS

PDF_SAMPLES = CORPUS / "pdf-samples"


def text_of(path: Path, kind: str | None = None, language: str = "english") -> str:
    kind = kind or kind_for_name(path.name)
    return "\n".join(block.text for block in parse(path, kind, language=language))


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
        ("tests-example.xls", "What is 2+2"),
        ("eml/family-day.eml", "family day"),
        ("fake-email.msg", "test email"),
        ("fake-html.html", "My First Heading"),
        ("README.md", "Example Docs"),
        ("README.rst", "Example Docs"),
        ("README.org", "Example Docs"),
        ("stanley-cups.csv", "Stanley"),
        ("stanley-cups.tsv", "Stanley"),
        ("fake.odt", "Lorem ipsum"),
        ("fake-doc.rtf", "My First Heading"),
        ("winter-sports.epub", "Winter Sports in Switzerland"),
        ("factbook.xml", "United States"),
        ("fake-text-utf-16.txt", "This is a test document"),
        ("simple.json", "element_id"),
        ("spring-weather.html.ndjson", "weather"),
    ],
)
def test_office_mail_text_and_data_formats_yield_text(name: str, expected: str) -> None:
    assert expected.lower() in text_of(DOCUMENTS / name).lower()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("fake.doc", "Lorem ipsum"), ("fake-power-point.ppt", "Adding a Bullet Slide")],
)
def test_old_binary_office_files_are_read_through_libreoffice(name: str, expected: str) -> None:
    assert expected.lower() in text_of(DOCUMENTS / name).lower()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("single-column.csv", "adipiscing | elit"),  # ragged rows: pandas refuses these
        ("stanley-cups-utf-16.csv", "Maple Leafs | TOR | 13"),
        ("semicolon-delimited.csv", "consectetur | adipiscing | elit"),
        ("stanley-cups-with-emoji.tsv", "Flyers | PHI | 2"),
    ],
)
def test_delimited_files_are_read_row_by_row(name: str, expected: str) -> None:
    blocks = list(parse(DOCUMENTS / name, name.rsplit(".", 1)[1]))
    assert all(b.kind == "table" for b in blocks)
    assert expected in "\n".join(b.text for b in blocks)


def test_csv_rows_carry_their_column_names_when_the_file_has_a_header(tmp_path: Path) -> None:
    table = tmp_path / "staff.csv"
    table.write_text("name,office,phone\nAda,London,1234\nGrace,Arlington,5678\n")
    (block,) = parse(table, "csv")
    assert block.text.splitlines() == [
        "name: Ada | office: London | phone: 1234",
        "name: Grace | office: Arlington | phone: 5678",
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("eml/mime-no-body.eml", ["Image Only Email", "From: sender@example.com"]),
        ("eml/mime-multipart-digest.eml", ["first message in the digest"]),
        ("eml/fake-email-utf-16-be.eml", ["Test Email", "This is a test email"]),
        ("eml/fake-email-utf-16-le.eml", ["Test Email", "This is a test email"]),
    ],
)
def test_mail_keeps_its_headers_and_body_whatever_its_shape(name: str, expected: list[str]) -> None:
    text = text_of(DOCUMENTS / name)
    for piece in expected:
        assert piece in text
    assert "\ufffd" not in text


def test_a_caption_in_the_text_layer_survives_an_ocr_that_reads_nothing() -> None:
    # One picture and the word "Test" in the text layer: too little text to skip OCR,
    # and OCR finds nothing in the picture.
    sample = PDF_SAMPLES / "008-reportlab-inline-image" / "inline-image.pdf"
    assert "Test" in text_of(sample, "pdf")


def test_yaml_is_read_as_text() -> None:
    assert kind_for_name("config.yaml") == kind_for_name("config.yml") == "txt"
    assert text_of(DOCUMENTS / "simple.yaml", "txt").strip()


def test_slides_keep_their_numbers_and_sheets_their_names() -> None:
    slides = list(parse(DOCUMENTS / "fake-power-point-many-pages.pptx", "pptx"))
    assert len({b.page for b in slides}) > 1
    sheets = list(parse(DOCUMENTS / "stanley-cups.xlsx", "xlsx"))
    tables = [b for b in sheets if b.kind == "table"]
    assert tables and all(b.heading for b in tables)  # the sheet's name
    assert all(b.page for b in tables)  # the sheet's number


def test_headings_label_the_text_under_them() -> None:
    blocks = list(parse(DOCUMENTS / "handbook-1p.docx", "docx"))
    assert any(b.kind == "title" for b in blocks)
    last_title = ""
    for block in blocks:
        if block.kind == "title":
            last_title = block.text
        elif last_title:
            assert block.heading == last_title
    assert any(b.heading == "A. PURPOSE" and "appoint" in b.text for b in blocks)


def test_json_records_become_field_lines() -> None:
    blocks = list(parse(DOCUMENTS / "arbitrary-records.json", "json"))
    assert blocks and all(b.kind == "table" for b in blocks)
    assert all(": " in line for b in blocks for line in b.text.splitlines())


def test_an_email_carries_its_subject_and_its_attachments() -> None:
    blocks = list(parse(DOCUMENTS / "eml" / "fake-email-attachment.eml", "eml"))
    assert blocks[0].kind == "title" and "attachment" in blocks[0].text.lower()
    attachment = [b for b in blocks if b.heading.startswith("Attachment: ")]
    assert attachment, [b.heading for b in blocks]
    assert "hey this is a fake attachment" in " ".join(b.text for b in attachment).lower()
    msg = list(parse(DOCUMENTS / "fake-email-attachment.msg", "msg"))
    assert any(b.heading == "Attachment: fake-attachment.txt" for b in msg)


def test_an_image_is_read_by_ocr() -> None:
    text = text_of(DOCUMENTS / "img" / "DA-1p.png", "image")
    assert "game" in text.lower() and len(text) > 500


def test_a_multi_page_tiff_keeps_its_page_numbers() -> None:
    blocks = list(parse(DOCUMENTS / "img" / "layout-parser-paper-combined.tiff", "image"))
    assert {b.page for b in blocks} >= {1, 2}
    assert "layoutparser" in " ".join(b.text for b in blocks).lower()


def test_a_scanned_pdf_page_is_rendered_and_read_by_ocr() -> None:
    blocks = list(parse(DOCUMENTS / "pdf" / "loremipsum-flat.pdf", "pdf"))
    assert "lorem ipsum" in " ".join(b.text for b in blocks).lower()
    assert {b.page for b in blocks} == {1}


def test_ocr_uses_the_collection_language() -> None:
    from ingest.parsing.ocr import languages_for

    assert languages_for("german") == "deu+eng"
    assert languages_for("norwegian") == "nor+eng"
    assert languages_for("simple") == "eng"


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


@pytest.mark.parametrize(
    ("path", "kind", "reason"),
    [
        (DOCUMENTS / "pdf" / "password.pdf", "pdf", "Password-protected PDF"),
        (
            PDF_SAMPLES / "005-libreoffice-writer-password" / "libreoffice-writer-password.pdf",
            "pdf",
            "Password-protected PDF",
        ),
        (DOCUMENTS / "password_protected.xlsx", "xlsx", "Password-protected Excel"),
        (DOCUMENTS / "fake-encrypted.msg", "msg", "e-mail is encrypted"),
        (DOCUMENTS / "eml" / "fake-encrypted.eml", "eml", "e-mail is encrypted"),
    ],
)
def test_protected_files_fail_with_a_reason_people_understand(
    path: Path, kind: str, reason: str
) -> None:
    with pytest.raises(ParseError, match=reason):
        list(parse(path, kind))


def test_a_pdf_with_a_broken_structure_fails_as_damaged() -> None:
    broken = PDF_SAMPLES / "017-unreadable-meta-data" / "unreadablemetadata.pdf"
    with pytest.raises(ParseError, match="damaged"):
        list(parse(broken, "pdf"))


def test_a_pdf_of_pictures_without_text_says_no_text_was_found() -> None:
    pictures = PDF_SAMPLES / "019-grayscale-image" / "grayscale-image.pdf"
    with pytest.raises(ParseError, match="No text could be found"):
        list(parse(pictures, "pdf"))


def test_a_file_that_is_not_a_pdf_fails_plainly(tmp_path: Path) -> None:
    fake = tmp_path / "fake.pdf"
    fake.write_bytes(b"this is not a pdf at all")
    with pytest.raises(ParseError, match=r"named \.pdf but holds plain text.*\.txt"):
        list(parse(fake, "pdf"))


def test_a_truncated_pdf_fails_as_damaged(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pdf"
    cut.write_bytes((DOCUMENTS / "pdf" / "reliance.pdf").read_bytes()[:3000])
    with pytest.raises(ParseError, match="damaged"):
        list(parse(cut, "pdf"))


@pytest.mark.parametrize("name", ["CantinaBand3.wav", "program.exe", "noextension", "x.xsl"])
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
