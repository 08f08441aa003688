"""PDFs through pdfium's text layer: about 400 pages/s here, one page in memory at a time.

(unstructured's "fast" strategy reads about 4 pages/s on the same files; the embedding,
not parsing, must be the bound.) Pages without a text layer yield nothing; a document
with no text at all fails with a reason the curator understands.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pypdfium2 as pdfium

from ingest.parsing.base import Block, ParseError, ProgressCallback
from ingest.parsing.text import clean, looks_like_heading


def _open(path: Path) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        message = str(exc).lower()
        if "password" in message:
            raise ParseError("Password-protected PDF: upload a copy without a password.") from None
        if "format" in message or "data" in message or "file" in message:
            raise ParseError(
                "This PDF is damaged or is not a PDF at all, so it cannot be read. "
                "Try saving it again from the program that made it."
            ) from None
        raise ParseError(f"This PDF could not be opened ({exc}).") from None


def parse_pdf(path: Path, progress: ProgressCallback | None = None) -> Iterator[Block]:
    pdf = _open(path)
    try:
        total = len(pdf)
        if progress:
            progress(0, total)
        heading = ""
        any_text = False
        for index in range(total):
            page = pdf[index]
            try:
                textpage = page.get_textpage()
                try:
                    raw = textpage.get_text_bounded()
                finally:
                    textpage.close()
            finally:
                page.close()
            for block in _blocks_of_page(raw, index + 1, heading):
                any_text = True
                if block.kind == "title":
                    heading = block.text
                yield block
            if progress and (index % 10 == 9 or index + 1 == total):
                progress(index + 1, total)
        if not any_text:
            raise ParseError(
                "This PDF has no text layer (it looks scanned), and reading scanned pages "
                "is not available for it. Upload a PDF with selectable text."
            )
    finally:
        pdf.close()


def _blocks_of_page(raw: str, page: int, heading: str) -> Iterator[Block]:
    """Paragraphs of one page. pdfium gives hard-wrapped lines; a paragraph ends at a blank
    line, after a line much shorter than its neighbours, or before a heading-like line."""
    lines = [clean(line) for line in raw.replace("\r\n", "\n").split("\n")]
    paragraph: list[str] = []

    def flush() -> Iterator[Block]:
        if paragraph:
            text = " ".join(paragraph)
            paragraph.clear()
            yield Block(text=text, page=page, heading=heading)

    for number, line in enumerate(lines):
        if not line:
            yield from flush()
            continue
        following = lines[number + 1] if number + 1 < len(lines) else ""
        if looks_like_heading(line) and (not paragraph or len(following) > len(line)):
            yield from flush()
            heading = line
            yield Block(text=line, page=page, heading=line, kind="title")
            continue
        paragraph.append(line)
        if line.endswith((".", "!", "?", ":")) and len(line) < 0.6 * max(len(following), 1):
            yield from flush()
    yield from flush()
