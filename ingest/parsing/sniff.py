"""What a file really is, from its first bytes, compared with what its name says.

A file whose content does not match its extension fails with a plain reason (and a hint
at the right extension), so a program renamed to ``.pdf`` or a spreadsheet renamed to
``.docx`` never reaches a parser that was not written for it. Only the header is read
here: this runs in the web process at upload, where nothing may be slow or fragile. The
deeper checks of containers (zip members, XML prologs, encryption) run in the parse
sandbox (``containers.py``).
"""

from __future__ import annotations

from pathlib import Path

from ingest.parsing.base import ParseError
from ingest.parsing.containers import zip_format

HEAD_BYTES = 8192

# Content families, with how to name each to a person.
FAMILY_NAMES = {
    "pdf": "a PDF document",
    "zip": "a zip container (Word, Excel, PowerPoint, OpenDocument, EPUB or a zip archive)",
    "ole": "an older Microsoft Office file (Word, Excel, PowerPoint or Outlook)",
    "rtf": "an RTF document",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "gif": "a GIF image",
    "tiff": "a TIFF image",
    "bmp": "a BMP image",
    "heic": "a HEIC image",
    "program": "a program (an executable file)",
    "media": "audio or video",
    "archive": "a compressed archive other than zip",
    "text": "plain text",
    "binary": "binary data that is not a document",
}

_TEXT_KINDS = {"txt", "md", "rst", "org", "csv", "tsv", "json", "html", "xml", "eml"}
# What each kind may contain. Text kinds take any text; RTF is text too.
EXPECTED: dict[str, set[str]] = {
    "pdf": {"pdf"},
    "docx": {"zip", "ole"},  # an encrypted DOCX is an OLE file: reported as password-protected
    "xlsx": {"zip", "ole"},
    "pptx": {"zip", "ole"},
    "odt": {"zip"},
    "epub": {"zip"},
    "zip": {"zip"},
    "doc": {"ole", "rtf"},  # Word happily saves RTF under .doc; LibreOffice reads both
    "xls": {"ole"},
    "ppt": {"ole"},
    "msg": {"ole"},
    "rtf": {"rtf"},
    "image": {"png", "jpeg", "gif", "tiff", "bmp", "heic"},
    **{kind: {"text", "rtf"} if kind == "txt" else {"text"} for kind in _TEXT_KINDS},
}

_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff", b"\xff\xfe", b"\xfe\xff")

# Hints at the extension the content deserves, for the message.
_HINT = {
    "pdf": ".pdf",
    "rtf": ".rtf",
    "png": ".png",
    "jpeg": ".jpg",
    "tiff": ".tif",
    "bmp": ".bmp",
    "heic": ".heic",
    "text": ".txt",
}


def family(head: bytes) -> str:
    """The content family of a file that starts with ``head``."""
    if not head:
        return "empty"
    if b"%PDF-" in head[:1024]:
        return "pdf"
    signatures: list[tuple[bytes, str]] = [
        (b"PK\x03\x04", "zip"),
        (b"PK\x05\x06", "zip"),  # an empty zip
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"),
        (b"{\\rtf", "rtf"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff", "jpeg"),
        (b"GIF87a", "gif"),
        (b"GIF89a", "gif"),
        (b"II*\x00", "tiff"),
        (b"MM\x00*", "tiff"),
        (b"MZ", "program"),
        (b"\x7fELF", "program"),
        (b"\xcf\xfa\xed\xfe", "program"),
        (b"\xca\xfe\xba\xbe", "program"),
        (b"RIFF", "media"),
        (b"ID3", "media"),
        (b"OggS", "media"),
        (b"fLaC", "media"),
        (b"\x1a\x45\xdf\xa3", "media"),
        (b"\x1f\x8b", "archive"),
        (b"BZh", "archive"),
        (b"\xfd7zXZ\x00", "archive"),
        (b"7z\xbc\xaf\x27\x1c", "archive"),
        (b"Rar!", "archive"),
    ]
    for magic, name in signatures:
        if head.startswith(magic):
            return name
    if head.startswith(b"BM") and len(head) > 14 and head[6:10] == b"\x00\x00\x00\x00":
        return "bmp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc", b"heim", b"heis"):
            return "heic"
        return "media"  # mp4, mov, m4a ...
    return "text" if _looks_like_text(head) else "binary"


def _looks_like_text(head: bytes) -> bool:
    if head.startswith(_BOMS):
        return True
    sample = head[:4096]
    if b"\x00" in sample:
        # UTF-16 without a byte order mark: every other byte is zero for Latin text.
        zeros_even = sample[0::2].count(0)
        zeros_odd = sample[1::2].count(0)
        half = len(sample) // 2 or 1
        return max(zeros_even, zeros_odd) > 0.3 * half and min(zeros_even, zeros_odd) < 0.05 * half
    # Control characters other than whitespace, escape and form feed mean binary data.
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls <= len(sample) * 0.01


def check(head: bytes, kind: str, name: str = "") -> None:
    """Raise ParseError when ``head`` is not what a ``kind`` file holds."""
    found = family(head)
    if found == "empty":
        raise ParseError("The file is empty.")
    if found in EXPECTED.get(kind, {found}):
        return
    suffix = Path(name).suffix.lower() if name else f".{kind}"
    message = f"This file is named {suffix or kind} but holds {FAMILY_NAMES[found]}"
    if found in ("program", "media", "archive", "binary"):
        raise ParseError(message + ", which cannot be read as a document.")
    hint = _HINT.get(found)
    if hint:
        raise ParseError(message + f". Rename it to {hint} and upload it again.")
    raise ParseError(
        message + ". Give it the extension of the program that made it and upload it again."
    )


_ZIP_LABELS = {
    "docx": "a Word document in the newer format (.docx)",
    "xlsx": "an Excel workbook in the newer format (.xlsx)",
    "pptx": "a PowerPoint presentation in the newer format (.pptx)",
    "odt": "an OpenDocument text (.odt)",
    "epub": "an EPUB book (.epub)",
    "zip": "a zip archive (.zip)",
}


def check_file(path: Path, kind: str, name: str = "") -> None:
    with open(path, "rb") as handle:
        head = handle.read(HEAD_BYTES)
    try:
        check(head, kind, name or path.name)
    except ParseError:
        if family(head) != "zip":
            raise
        # A zip container under another name ("report.doc" saved by a newer Word): say
        # which format it holds, so the curator knows the one right extension.

        found = zip_format(path)
        if found is None:
            raise
        suffix = Path(name or path.name).suffix.lower() or f".{kind}"
        raise ParseError(
            f"This file is named {suffix} but is {_ZIP_LABELS[found]}. Rename it to "
            f".{found} and upload it again."
        ) from None
