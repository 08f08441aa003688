"""JSON, NDJSON, CSV and TSV as readable passages: one record per line or block, each value
with the name of its field, so a question about a field finds the record that holds it.
A file that is not valid JSON after all is read as plain text rather than refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.parsing.base import Block, ParseError, ProgressCallback
from ingest.parsing.text import clean

MAX_DEPTH = 32


def decode(raw: bytes) -> str:
    for bom, encoding in (
        (b"\xef\xbb\xbf", "utf-8-sig"),
        (b"\xff\xfe\x00\x00", "utf-32"),
        (b"\x00\x00\xfe\xff", "utf-32"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
    ):
        if raw.startswith(bom):
            return raw.decode(encoding, "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def parse_json(path: Path, progress: ProgressCallback | None = None) -> Iterator[Block]:
    text = decode(path.read_bytes())
    records = _records(text)
    if records is None:  # not JSON after all: its text is still worth finding
        for paragraph in text.split("\n\n"):
            if paragraph.strip():
                yield Block(text=clean(paragraph))
        return
    for heading, record in records:
        lines = list(_lines(record, "", 0))
        if lines:
            yield Block(text="\n".join(lines), heading=heading[:300], kind="table")
    if progress:
        progress(1, 1)


def _records(text: str) -> list[tuple[str, Any]] | None:
    try:
        data = json.loads(text)
    except RecursionError:
        raise ParseError("This JSON file is nested too deeply to be read.") from None
    except ValueError:
        return _ndjson(text)
    if isinstance(data, list):
        return [("", item) for item in data]
    if isinstance(data, dict):
        return [(str(key), {key: value}) for key, value in data.items()]
    return [("", data)]


def _ndjson(text: str) -> list[tuple[str, Any]] | None:
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(("", json.loads(line)))
        except (ValueError, RecursionError):
            return None
    return records or None


def _lines(value: Any, path: str, depth: int) -> Iterator[str]:
    if depth > MAX_DEPTH:
        raise ParseError("This JSON file is nested too deeply to be read.")
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _lines(item, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, list):
        if all(not isinstance(item, dict | list) for item in value):
            shown = ", ".join(_scalar(item) for item in value)
            if shown:
                yield f"{path}: {shown}" if path else shown
        else:
            for index, item in enumerate(value):
                yield from _lines(item, f"{path}[{index}]", depth + 1)
    else:
        shown = _scalar(value)
        if shown:
            yield f"{path}: {shown}" if path else shown


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    return clean(str(value))


ROWS_PER_BLOCK = 50


def parse_delimited(
    path: Path, kind: str, progress: ProgressCallback | None = None
) -> Iterator[Block]:
    """CSV and TSV: rows as lines ("column: value | column: value" when the first row
    names the columns), so every chunk of a long table still says what its cells mean.
    Ragged rows, odd delimiters and UTF-16 files are read rather than refused."""
    import csv
    import io

    text = decode(path.read_bytes())
    sample = text[:65536]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel_tab if kind == "tsv" else csv.excel
    if kind == "tsv" and "\t" in sample:
        dialect = csv.excel_tab  # a TSV's tabs win over commas inside its cells
    try:
        header_row = csv.Sniffer().has_header(sample)
    except csv.Error:
        header_row = False
    csv.field_size_limit(16 << 20)
    reader = csv.reader(io.StringIO(text), dialect)
    header: list[str] = []
    lines: list[str] = []
    try:
        for number, row in enumerate(reader):
            cells = [clean(cell) for cell in row]
            if not any(cells):
                continue
            if number == 0 and header_row:
                header = cells
                continue
            if header and len(cells) <= len(header):
                pairs = [f"{h}: {c}" if h else c for h, c in zip(header, cells, strict=False) if c]
                lines.append(" | ".join(pairs))
            else:
                lines.append(" | ".join(c for c in cells if c))
            if len(lines) >= ROWS_PER_BLOCK:
                yield Block(text="\n".join(lines), kind="table")
                lines = []
    except csv.Error as exc:
        raise ParseError(f"This {kind.upper()} file is malformed ({exc}).") from None
    if lines:
        yield Block(text="\n".join(lines), kind="table")
    if progress:
        progress(1, 1)
