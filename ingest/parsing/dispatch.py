"""Which parser reads which kind of file: ``parse`` checks the file, then hands it to the
parser of its kind. The parsers import their heavy libraries (unstructured, tesseract,
LibreOffice) only when they read a file of their kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ingest.parsing import containers, sniff
from ingest.parsing.base import Block, ParseError, ProgressCallback
from ingest.parsing.mail import parse_mail
from ingest.parsing.ocr import parse_image
from ingest.parsing.office import parse_legacy
from ingest.parsing.pdf import parse_pdf
from ingest.parsing.structured import parse_delimited, parse_json
from ingest.parsing.unstructured_files import parse_with_unstructured


def parse(
    path: Path,
    kind: str,
    progress: ProgressCallback | None = None,
    language: str = "english",
    *,
    depth: int = 0,
) -> Iterator[Block]:
    """Blocks of ``path`` in reading order. ``progress(pages_done, pages_total)`` is called
    as pages are read, where the format knows its pages. ``language`` (a collection
    language) picks the OCR language.

    The file is checked first (content against its extension, containers for bombs and
    encryption): those failures raise at once, before any parser sees the file. In the
    appliance this runs inside the parse sandbox (``sandbox.py``), under time and memory
    limits."""
    sniff.check_file(path, kind)
    containers.check(path, kind)
    if kind == "pdf":
        return parse_pdf(path, progress, language)
    if kind == "image":
        return parse_image(path, language, progress)
    if kind in ("eml", "msg"):

        def attachment(inner: Path, inner_kind: str) -> Iterator[Block]:
            return parse(inner, inner_kind, None, language, depth=depth + 1)

        return parse_mail(path, kind, attachment if depth == 0 else None, progress)
    if kind == "json":
        return parse_json(path, progress)
    if kind in ("csv", "tsv"):
        return parse_delimited(path, kind, progress)
    if kind in ("doc", "ppt"):
        return parse_legacy(path, kind, progress)
    if kind == "zip":
        raise ParseError("Zip archives are unpacked at upload; this one was not.")
    return parse_with_unstructured(path, kind, progress)
