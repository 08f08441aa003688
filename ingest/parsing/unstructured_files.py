"""Office, OpenDocument, EPUB, RTF, HTML, XML and text formats through unstructured's
partitioners, fully offline. (PDFs, images, e-mail, JSON and the old binary Office
formats have their own modules; they reach this one only for what unstructured does best.)"""

from __future__ import annotations

import importlib
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ingest.parsing.base import Block, ParseError, ProgressCallback
from ingest.parsing.offline import configure_unstructured
from ingest.parsing.text import clean, looks_like_heading

# kind -> (module, function, extra keyword arguments)
PARTITIONERS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "docx": ("unstructured.partition.docx", "partition_docx", {}),
    "pptx": ("unstructured.partition.pptx", "partition_pptx", {}),
    "xlsx": ("unstructured.partition.xlsx", "partition_xlsx", {"find_subtable": False}),
    "xls": ("unstructured.partition.xlsx", "partition_xlsx", {"find_subtable": False}),
    "odt": ("unstructured.partition.odt", "partition_odt", {}),
    "rtf": ("unstructured.partition.rtf", "partition_rtf", {}),
    "epub": ("unstructured.partition.epub", "partition_epub", {}),
    "html": ("unstructured.partition.html", "partition_html", {}),
    "xml": ("unstructured.partition.xml", "partition_xml", {}),
    "txt": ("unstructured.partition.text", "partition_text", {}),
    "md": ("unstructured.partition.md", "partition_md", {}),
    "rst": ("unstructured.partition.rst", "partition_rst", {}),
    "org": ("unstructured.partition.org", "partition_org", {}),
    "csv": ("unstructured.partition.csv", "partition_csv", {}),
    "tsv": ("unstructured.partition.tsv", "partition_tsv", {}),
}


def parse_with_unstructured(
    path: Path, kind: str, progress: ProgressCallback | None = None
) -> Iterator[Block]:
    configure_unstructured()
    if kind not in PARTITIONERS:
        raise ParseError(f"Reading {kind} files is not available on this appliance yet.")
    module, function, options = PARTITIONERS[kind]
    partition = getattr(importlib.import_module(module), function)
    try:
        elements = partition(filename=str(path), **options)
    except (ParseError, MemoryError):
        raise
    except Exception as exc:
        raise ParseError(human_reason(kind, exc)) from exc
    return _blocks(elements, progress)


def _blocks(elements: list[Any], progress: ProgressCallback | None) -> Iterator[Block]:
    heading = ""
    last_page = 0
    for element in elements:
        category = getattr(element, "category", "")
        meta = element.metadata
        page = getattr(meta, "page_number", None)
        sheet = getattr(meta, "page_name", None)
        if sheet and category == "Table":
            heading = str(sheet)
        if category in ("PageBreak", "Image", "Header", "Footer"):
            continue  # running headers and footers repeat on every page: noise in passages
        if category == "Table":
            html = getattr(meta, "text_as_html", None)
            rows = _table_rows(html) if html else []
            text = "\n".join(rows) if rows else clean(element.text)
            if text:
                yield Block(text=text, page=page, heading=heading, kind="table")
        else:
            text = clean(element.text)
            if not text:
                continue
            if category == "Title" or (
                # Word documents often set headings as plain capitals ("A. PURPOSE")
                category == "UncategorizedText" and text.isupper() and looks_like_heading(text)
            ):
                heading = text[:300]
                yield Block(text=text, page=page, heading=heading, kind="title")
            else:
                yield Block(text=text, page=page, heading=heading)
        if progress and page and page > last_page:
            last_page = page
            progress(page, None)


class _RowCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            if not self.rows:
                self.rows.append([])
            self.rows[-1].append(clean(" ".join(self._cell)))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _table_rows(html: str) -> list[str]:
    """One line per table row, cells joined by " | ", empty rows dropped."""
    collector = _RowCollector()
    collector.feed(html)
    lines = []
    for row in collector.rows:
        cells = [c for c in row if c]
        if cells:
            lines.append(" | ".join(cells))
    return lines


def human_reason(kind: str, exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}".lower()
    label = kind.upper()
    if "password" in text or "encrypt" in text:
        return f"Password-protected {label} file: upload a copy without a password."
    if (
        isinstance(exc, zipfile.BadZipFile)
        or "not a zip file" in text
        or "package not found" in text
    ):
        return (
            f"This {label} file is damaged or is not really a {label} file, so it cannot be read."
        )
    if "soffice" in text or "libreoffice" in text:
        return (
            f"Reading old {label} files needs LibreOffice, which is not installed on this "
            "appliance. Save the file in the newer format (DOCX, PPTX) and upload that."
        )
    if "pandoc" in text:
        return f"Reading {label} files needs pandoc, which is not available on this appliance."
    if isinstance(exc, UnicodeError) or "codec" in text or "decode" in text:
        return f"This {label} file uses a text encoding that could not be recognised."
    return f"This {label} file could not be read ({type(exc).__name__}: {str(exc)[:200]})."
