"""PDFs through pdfium's text layer: about 400 pages/s here, one page in memory at a time.

(unstructured's "fast" strategy reads about 4 pages/s on the same files; the embedding,
not parsing, must be the bound.) A page without a text layer but with pictures on it (a
scan) is rendered by pdfium and read by tesseract; a document with no text at all, even
then, fails with a reason the curator understands.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from ingest.parsing import ocr
from ingest.parsing.base import Block, ParseError, ProgressCallback
from ingest.parsing.text import clean, looks_like_heading

# A page with fewer visible characters than this in its text layer is treated as scanned
# when it holds a picture (page numbers or a stamp on a scan do not make it text).
MIN_TEXT_CHARS = 32


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


def parse_pdf(
    path: Path, progress: ProgressCallback | None = None, language: str = "english"
) -> Iterator[Block]:
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
                scanned = _is_scanned(page, raw)
                if scanned:
                    picture = ocr.render_pdf_page(page)
            finally:
                page.close()
            blocks = None
            if scanned:
                read = ocr.recognise(picture, language)
                del picture
                # A stamp or caption in the text layer beats an OCR that found less.
                if len("".join(read.split())) >= len("".join(raw.split())):
                    blocks = ocr.text_blocks(read, index + 1, heading)
            if blocks is None:
                blocks = _blocks_of_page(raw, index + 1, heading)
            for block in blocks:
                any_text = True
                if block.kind == "title":
                    heading = block.text
                yield block
            if progress and (index % 10 == 9 or index + 1 == total):
                progress(index + 1, total)
        if not any_text:
            raise ParseError(
                "No text could be found in this PDF, not even by reading its pages as "
                "pictures. If it is a scan, check that the scan is legible."
            )
    finally:
        pdf.close()


def _is_scanned(page: pdfium.PdfPage, raw: str) -> bool:
    if len(raw) >= 8 * MIN_TEXT_CHARS or len("".join(raw.split())) >= MIN_TEXT_CHARS:
        return False
    images = page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2)
    return next(iter(images), None) is not None


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
