"""JSON and NDJSON as readable passages: one record per block, one ``path: value`` line per
field, so a question about a field finds the record that holds it. A file that is not
valid JSON after all is read as plain text rather than refused."""

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
