"""Which files of a folder the appliance ingests, per file type, and why the others fail
(``manage.py benchmark ingest <path> --formats``).

Each file goes through the upload checks (type, content against extension, zip
unpacking) and then the worker's parse sandbox and chunker, as ingestion does. Embedding
is left out: it never refuses text, and leaving it out keeps a corpus of thousands of
pages a matter of minutes.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from django.conf import settings

from ingest import archives, embedding, stages
from ingest.chunking import chunk_blocks
from ingest.parsing import ParseError, kind_for_name, sniff


def _outcome(path: Path, name: str) -> tuple[str, str, int]:
    """("ok" | "refused" | "failed", reason, chunks) for one file."""

    try:
        kind = kind_for_name(name)
        if kind == "zip":
            return _zip_outcome(path)
        sniff.check_file(path, kind, name)
    except ParseError as exc:  # an unsupported type, or content not matching its extension
        return "refused", str(exc), 0
    try:
        blocks = stages.sandbox().parse(path, kind)
        chunks = sum(
            1
            for _ in chunk_blocks(
                blocks,
                embedding.count_tokens,
                target_tokens=settings.CHUNK_TOKENS,
                overlap_tokens=settings.CHUNK_OVERLAP_TOKENS,
                limit_tokens=embedding.max_tokens() - 2,
            )
        )
    except ParseError as exc:
        return "failed", str(exc), 0
    if not chunks:
        return "failed", "No text could be found in this file.", 0
    return "ok", "", chunks


def _zip_outcome(path: Path) -> tuple[str, str, int]:
    good, bad, chunks = 0, [], 0
    with open(path, "rb") as handle, tempfile.TemporaryDirectory() as folder:
        try:
            for index, entry in enumerate(archives.entries(handle, path.name)):
                if entry.skipped_reason:
                    bad.append(f"{entry.name}: {entry.skipped_reason}")
                    continue
                inner = PurePosixPath(entry.inner_name).name
                target = Path(folder) / f"{index}{PurePosixPath(inner).suffix.lower()}"
                target.write_bytes(entry.stream.read())
                status, reason, count = _outcome(target, inner)
                if status == "ok":
                    good, chunks = good + 1, chunks + count
                else:
                    bad.append(f"{entry.name}: {reason}")
        except archives.ArchiveError as exc:
            return "refused", str(exc), 0
    if not good:
        return "failed", "; ".join(bad) or "The archive is empty.", 0
    note = f"{good} entries ingest" + (f"; not: {'; '.join(bad)}" if bad else "")
    return "ok", note, chunks


def report(root: Path, out: TextIO, as_json: bool = False) -> dict[str, Any]:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    by_type: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"files": 0, "ingest": 0, "chunks": 0, "not": []}
    )
    for path in files:
        label = path.suffix.lower().lstrip(".") or "(no extension)"
        status, reason, chunks = _outcome(path, path.name)
        row = by_type[label]
        row["files"] += 1
        if status == "ok":
            row["ingest"] += 1
            row["chunks"] += chunks
        else:
            shown = path.relative_to(root) if root.is_dir() else path.name
            stage = "refused at upload" if status == "refused" else "failed"
            row["not"].append(f"{shown}: {stage}: {reason}")
        out.write(f"{status:8} {path.name}: {reason or f'{chunks} chunks'}\n")
        out.flush()
    out.write("\n| type | files | ingest | not ingested, and why |\n|---|---|---|---|\n")
    for label in sorted(by_type):
        row = by_type[label]
        why = "<br>".join(row["not"]) or "all"
        out.write(f"| {label} | {row['files']} | {row['ingest']} | {why} |\n")
    total = sum(r["files"] for r in by_type.values())
    ingested = sum(r["ingest"] for r in by_type.values())
    out.write(f"\n{ingested} of {total} files ingest.\n")
    result = {"files": total, "ingest": ingested, "types": dict(by_type)}
    if as_json:
        out.write(json.dumps(result) + "\n")
    return result
