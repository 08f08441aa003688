"""Checks of container formats before any parser opens them (run inside the sandbox).

- Zip-based documents (DOCX, XLSX, PPTX, ODT, EPUB): the entry count is read from the
  archive's end record before Python builds its directory (a forged count of millions
  would exhaust memory), unpacked sizes and ratios are bounded (zip bombs), the members
  must be those of the named format, and every XML part's prolog is read: a document type
  declaration with entities (billion laughs, external entities) is refused, as defusedxml
  would, before lxml, python-docx or pandoc see it.
- OLE files (DOC, XLS, PPT, MSG, and DOCX/XLSX/PPTX that were encrypted): encryption and
  the kind of document inside are recognised from the stream names.
- XML and HTML files: entity declarations are refused the same way.
"""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path
from typing import BinaryIO

from ingest.parsing.base import ParseError

MAX_ENTRIES = 10_000
MAX_UNPACKED_BYTES = 1 << 30  # the whole container, unpacked
MAX_RATIO = 200  # per entry, above MIN_RATIO_CHECK bytes
MIN_RATIO_CHECK = 10 << 20
PROLOG_LIMIT = 1 << 20  # XML parts whose prolog runs longer than this are refused

_PASSWORD = {
    "docx": "Password-protected Word file: upload a copy without a password.",
    "xlsx": "Password-protected Excel file: upload a copy without a password.",
    "pptx": "Password-protected PowerPoint file: upload a copy without a password.",
    "doc": "Password-protected Word file: upload a copy without a password.",
    "xls": "Password-protected Excel file: upload a copy without a password.",
    "ppt": "Password-protected PowerPoint file: upload a copy without a password.",
    "odt": "Password-protected OpenDocument file: upload a copy without a password.",
}
_LABEL = {
    "docx": "Word (.docx)",
    "xlsx": "Excel (.xlsx)",
    "pptx": "PowerPoint (.pptx)",
    "odt": "OpenDocument text (.odt)",
    "epub": "EPUB",
    "doc": "Word (.doc)",
    "xls": "Excel (.xls)",
    "ppt": "PowerPoint (.ppt)",
    "msg": "Outlook message (.msg)",
}
# Which zip members say which format the container holds.
_ZIP_MARKERS = [
    ("docx", "word/document.xml"),
    ("xlsx", "xl/workbook.xml"),
    ("pptx", "ppt/presentation.xml"),
    ("epub", "META-INF/container.xml"),
]
_XML_MEMBER = re.compile(r"\.(xml|rels|opf|ncx|xhtml|html|htm|svg|smil)$", re.IGNORECASE)
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ROOT = re.compile(rb"<[A-Za-z_:]")


def check(path: Path, kind: str) -> None:
    """Raise ParseError, with the reason for people, when the file must not be parsed."""
    if kind in ("docx", "xlsx", "pptx", "odt", "epub"):
        with open(path, "rb") as handle:
            if handle.read(8) == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":
                handle.seek(0)
                _check_ole(handle, kind)
                return
        _check_zip(path, kind)
    elif kind in ("doc", "xls", "ppt", "msg"):
        with open(path, "rb") as handle:
            if handle.read(5) == b"{\\rtf":
                return  # RTF saved as .doc: LibreOffice reads it
            handle.seek(0)
            _check_ole(handle, kind)
    elif kind in ("xml", "html"):
        with open(path, "rb") as handle:
            head = handle.read(PROLOG_LIMIT)
        if _ENTITY.search(_ascii_view(head)):
            raise ParseError(_xml_refusal(kind.upper()))


def zip_entry_count(handle: BinaryIO) -> int:
    """Entries as the archive's end record states them, read without building the
    directory. Raises ParseError when there is no end record (not a zip)."""
    handle.seek(0, 2)
    size = handle.tell()
    tail_size = min(size, 65_557)  # the end record plus the longest comment
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise ParseError("This file is damaged: its zip structure is incomplete.")
    (entries,) = struct.unpack("<H", tail[at + 10 : at + 12])
    locator = tail.rfind(b"PK\x06\x07", 0, at)
    if entries == 0xFFFF and locator >= 0:  # ZIP64: the real count is in the ZIP64 record
        (offset,) = struct.unpack("<Q", tail[locator + 8 : locator + 16])
        if offset + 40 <= size:
            handle.seek(offset)
            record = handle.read(56)
            if record[:4] == b"PK\x06\x06":
                (entries,) = struct.unpack("<Q", record[32:40])
    handle.seek(0)
    return int(entries)


def zip_format(path: Path) -> str | None:
    """Which document format a zip container holds ("docx", "odt", ...), "zip" for a plain
    archive, None when it cannot be told (damaged, or too many entries to look)."""
    try:
        with open(path, "rb") as handle:
            if zip_entry_count(handle) > MAX_ENTRIES:
                return None
            with zipfile.ZipFile(handle) as archive:
                names = set(archive.namelist())
                if "mimetype" in names:
                    mimetype = _read_small(archive, "mimetype", 100)
                    if mimetype.startswith(b"application/vnd.oasis.opendocument.text"):
                        return "odt"
                    if mimetype.startswith(b"application/epub+zip"):
                        return "epub"
    except (ParseError, zipfile.BadZipFile, OSError, ValueError):
        return None
    for marker_kind, marker in _ZIP_MARKERS:
        if marker in names:
            return marker_kind
    return "zip"


def _check_zip(path: Path, kind: str) -> None:
    label = _LABEL[kind]
    with open(path, "rb") as handle:
        if zip_entry_count(handle) > MAX_ENTRIES:
            raise ParseError(f"This {label} file holds more than {MAX_ENTRIES:,} parts; refused.")
        try:
            archive = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, OSError, ValueError):
            raise ParseError(f"This {label} file is damaged and cannot be opened.") from None
        with archive:
            infos = archive.infolist()
            names = {info.filename for info in infos}
            _check_members(names, archive, kind)
            total = 0
            for info in infos:
                total += info.file_size
                if total > MAX_UNPACKED_BYTES:
                    raise ParseError(
                        f"This {label} file would unpack to more than "
                        f"{MAX_UNPACKED_BYTES >> 20:,} MB (a zip bomb?); refused."
                    )
                if info.file_size > MIN_RATIO_CHECK and info.file_size > MAX_RATIO * max(
                    info.compress_size, 1
                ):
                    raise ParseError(
                        f"This {label} file holds a part that compresses suspiciously well "
                        "(a zip bomb?); refused."
                    )
                if info.flag_bits & 0x1:
                    raise ParseError(_PASSWORD.get(kind, f"This {label} file is encrypted."))
            for info in infos:
                if _XML_MEMBER.search(info.filename) or info.filename == "[Content_Types].xml":
                    _check_xml_member(archive, info, kind)


def _check_members(names: set[str], archive: zipfile.ZipFile, kind: str) -> None:
    label = _LABEL[kind]
    if kind == "odt":
        mimetype = _read_small(archive, "mimetype") if "mimetype" in names else b""
        if not mimetype.startswith(b"application/vnd.oasis.opendocument.text"):
            found = mimetype.decode("ascii", "replace").strip() or "something else"
            raise ParseError(
                f"This file is named .odt but holds {found}, not an OpenDocument text."
            )
        manifest = _read_small(archive, "META-INF/manifest.xml")
        if b"encryption-data" in manifest:
            raise ParseError(_PASSWORD["odt"])
        return
    for marker_kind, marker in _ZIP_MARKERS:
        if marker in names:
            if marker_kind != kind:
                raise ParseError(
                    f"This file is named .{kind} but holds {_LABEL[marker_kind]} content. "
                    f"Rename it to .{marker_kind} and upload it again."
                )
            break
    else:
        if kind == "epub" and _read_small(archive, "mimetype").startswith(b"application/epub+zip"):
            return
        raise ParseError(
            f"This file is named .{kind} but is not a {label} file (it is a zip archive of "
            "something else)."
        )
    if kind == "epub" and "META-INF/encryption.xml" in names:
        encryption = _read_small(archive, "META-INF/encryption.xml")
        references = re.findall(rb'CipherReference[^>]*URI="([^"]+)"', encryption)
        fonts = (b".otf", b".ttf", b".woff", b".woff2")
        if any(not ref.lower().endswith(fonts) for ref in references):
            raise ParseError(
                "This EPUB is protected by DRM, so its text cannot be read. Upload an "
                "unprotected copy."
            )


def _read_small(archive: zipfile.ZipFile, name: str, limit: int = 1 << 20) -> bytes:
    try:
        with archive.open(name) as member:
            return member.read(limit)
    except KeyError:
        return b""


def _check_xml_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, kind: str) -> None:
    """Read the part only up to its root element: declarations can appear nowhere else."""
    with archive.open(info) as member:
        prolog = b""
        while len(prolog) < PROLOG_LIMIT:
            piece = member.read(4096)
            if not piece:
                break
            prolog += piece
            if _root_started(_ascii_view(prolog)) >= 0:
                break
        else:
            raise ParseError(_xml_refusal(_LABEL[kind], info.filename))
    view = _ascii_view(prolog)
    end = _root_started(view)
    head = view[:end] if end >= 0 else view
    if _ENTITY.search(head):
        raise ParseError(_xml_refusal(_LABEL[kind], info.filename))
    doctype = _DOCTYPE.search(head)
    # Office Open XML and OpenDocument never declare a document type; EPUB's XHTML does,
    # harmlessly, as long as it carries no internal subset.
    if doctype and (kind != "epub" or b"[" in head[doctype.start() :]):
        raise ParseError(_xml_refusal(_LABEL[kind], info.filename))


def _root_started(view: bytes) -> int:
    """Offset of the root element's ``<``, or -1 when not seen yet. Everything a prolog may
    hold (declarations, processing instructions, comments, a DOCTYPE and its internal
    subset) starts with ``<!`` or ``<?``; the first ``<`` followed by a name is the root.
    An entity value that hides such a ``<`` comes after its ``<!ENTITY``, which is refused."""
    match = _ROOT.search(view)
    return match.start() if match else -1


def _ascii_view(data: bytes) -> bytes:
    """UTF-16 and UTF-32 XML seen as ASCII, so one byte pattern finds declarations in all."""
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return data.decode("utf-32", "replace").encode("ascii", "replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or data[:2] in (b"<\x00", b"\x00<"):
        encoding = "utf-16-le" if data[:2] in (b"\xff\xfe", b"<\x00") else "utf-16-be"
        return data[: len(data) // 2 * 2].decode(encoding, "replace").encode("ascii", "replace")
    return data


def _xml_refusal(label: str, part: str = "") -> str:
    where = f" (in {part})" if part else ""
    return (
        f"This {label} file declares XML entities or a document type{where}, which documents "
        "never need and attacks (XML bombs, external entities) use; it was not opened."
    )


def _check_ole(handle: BinaryIO, kind: str) -> None:
    import olefile

    try:
        ole = olefile.OleFileIO(handle)
    except Exception:
        raise ParseError(
            f"This {_LABEL.get(kind, kind)} file is damaged and cannot be opened."
        ) from None
    with ole:
        streams = {"/".join(parts) for parts in ole.listdir(streams=True, storages=False)}
        if "EncryptionInfo" in streams and "EncryptedPackage" in streams:
            raise ParseError(
                _PASSWORD.get(kind, "This file is password-protected: upload it without one.")
            )
        found = _ole_kind(streams)
        if kind in ("docx", "xlsx", "pptx"):
            legacy = {"doc": ".doc", "xls": ".xls", "ppt": ".ppt", "msg": ".msg"}.get(found or "")
            raise ParseError(
                f"This file is named .{kind} but is an older-format "
                f"{_LABEL.get(found or '', 'Office')} file."
                + (f" Rename it to {legacy} and upload it again." if legacy else "")
            )
        if found != kind:
            what = _LABEL.get(found or "", "an Office file of another kind")
            raise ParseError(
                f"This file is named .{kind} but holds {what}."
                + (f" Rename it to .{found} and upload it again." if found else "")
            )
    if kind in ("doc", "xls", "ppt"):
        import msoffcrypto

        handle.seek(0)
        try:
            encrypted = msoffcrypto.OfficeFile(handle).is_encrypted()
        except Exception:
            encrypted = False  # the parser will say what is wrong, if anything
        if encrypted:
            raise ParseError(_PASSWORD[kind])


def _ole_kind(streams: set[str]) -> str | None:
    if "WordDocument" in streams:
        return "doc"
    if "Workbook" in streams or "Book" in streams:
        return "xls"
    if "PowerPoint Document" in streams:
        return "ppt"
    if "__properties_version1.0" in streams or any(s.startswith("__substg1.0_") for s in streams):
        return "msg"
    return None
