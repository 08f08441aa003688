from __future__ import annotations

from collections.abc import Callable
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
