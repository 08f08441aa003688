from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Block:
    """A run of text with where it came from. ``page`` is the page, slide or sheet number."""

    text: str
    page: int | None = None
    heading: str = ""
    kind: str = "text"  # "text", "title" or "table" (one row per line)


class ParseError(Exception):
    """A file that cannot be read. The message is shown to the curator as is."""


class UnsupportedFile(ParseError):
    """A type the appliance does not read (audio, executables, ...)."""


# Extension -> kind. The kind decides the parser and is shown to people.
KINDS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".doc": "doc",
    ".pptx": "pptx",
    ".ppt": "ppt",
    ".xlsx": "xlsx",
    ".xls": "xls",
    ".odt": "odt",
    ".rtf": "rtf",
    ".epub": "epub",
    ".html": "html",
    ".htm": "html",
    ".xml": "xml",
    ".eml": "eml",
    ".msg": "msg",
    ".txt": "txt",
    ".text": "txt",
    ".log": "txt",
    ".md": "md",
    ".markdown": "md",
    ".rst": "rst",
    ".org": "org",
    ".csv": "csv",
    ".tsv": "tsv",
    ".yaml": "txt",
    ".yml": "txt",
    ".json": "json",
    ".ndjson": "json",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".tif": "image",
    ".tiff": "image",
    ".bmp": "image",
    ".heic": "image",
    ".zip": "zip",
}


def kind_for_name(name: str) -> str:
    suffix = Path(name).suffix.lower()
    kind = KINDS.get(suffix)
    if kind is None:
        shown = f"{suffix} files are" if suffix else "Files without an extension are"
        raise UnsupportedFile(
            f"{shown} not supported. Upload PDF, Word, PowerPoint, Excel, OpenDocument, "
            "RTF, EPUB, HTML, XML, e-mail, text, Markdown, CSV, JSON, image or zip files."
        )
    return kind


ProgressCallback = Callable[[int, int | None], None]


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
    from ingest.parsing import containers, sniff

    sniff.check_file(path, kind)
    containers.check(path, kind)
    if kind == "pdf":
        from ingest.parsing.pdf import parse_pdf

        return parse_pdf(path, progress, language)
    if kind == "image":
        from ingest.parsing.ocr import parse_image

        return parse_image(path, language, progress)
    if kind in ("eml", "msg"):
        from ingest.parsing.mail import parse_mail

        def attachment(inner: Path, inner_kind: str) -> Iterator[Block]:
            return parse(inner, inner_kind, None, language, depth=depth + 1)

        return parse_mail(path, kind, attachment if depth == 0 else None, progress)
    if kind == "json":
        from ingest.parsing.structured import parse_json

        return parse_json(path, progress)
    if kind in ("csv", "tsv"):
        from ingest.parsing.structured import parse_delimited

        return parse_delimited(path, kind, progress)
    if kind in ("doc", "ppt"):
        from ingest.parsing.office import parse_legacy

        return parse_legacy(path, kind, progress)
    if kind == "zip":
        raise ParseError("Zip archives are unpacked at upload; this one was not.")
    from ingest.parsing.unstructured_files import parse_with_unstructured

    return parse_with_unstructured(path, kind, progress)
