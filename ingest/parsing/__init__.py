"""Turning files into text blocks: PDFs through pdfium (page by page, fast, bounded memory),
everything else through unstructured. Both yield the same ``Block`` stream."""

from ingest.parsing.base import Block, ParseError, UnsupportedFile, kind_for_name
from ingest.parsing.dispatch import parse

__all__ = ["Block", "ParseError", "UnsupportedFile", "kind_for_name", "parse"]
