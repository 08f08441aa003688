"""Exporting the audit log (CSV or JSON Lines) with a signed manifest, and verifying one.

The manifest (``<file>.manifest.json``) records the filters, the row count, the first and
last row (id and hash), the hash the first row follows, the SHA-256 of the file and an
Ed25519 signature over all of that with the appliance's own key (``signing.py``).
``verify_export`` checks the signature, re-reads the file, checks every row against its
hash (and, for an unfiltered export, each row against the one before it), then the file's
digest.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from appliance.audit import chain, signing
from appliance.audit.actions import to_row
from appliance.audit.models import AuditEvent

FORMATS = ("jsonl", "csv")
CSV_COLUMNS = (
    "id",
    "created_at",
    "actor_id",
    "actor",
    "actor_departments",
    "ip",
    "user_agent",
    "subject",
    "identity_salt",
    "identity_digest",
    "action",
    "object_type",
    "object_id",
    "details",
    "prev_hash",
    "hash",
)
_JSON_COLUMNS = ("actor_departments", "details")
# Spreadsheet programs run cells that start with these as formulas.
_DANGEROUS_FIRST = ("=", "+", "-", "@", "\t", "\r", "\n", "'")


@dataclass
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    user: str = ""
    department: str = ""
    action: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "user": self.user,
            "department": self.department,
            "action": self.action,
        }

    @property
    def narrows_rows(self) -> bool:
        """True when rows in the middle of the log may be left out (the chain has gaps)."""
        return bool(self.user or self.department or self.action)


class BadFilter(ValueError):
    pass


def parse_time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadFilter(
            f"{name} must be a date or time like 2026-01-31 or 2026-01-31T12:00:00Z"
        ) from None
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, timezone.get_default_timezone())
    return parsed


def filtered(filters: Filters) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.order_by("id")
    if filters.since:
        events = events.filter(created_at__gte=filters.since)
    if filters.until:
        events = events.filter(created_at__lt=filters.until)
    if filters.user:
        # By the person and about the person: "everything concerning bob".
        events = events.filter(Q(actor=filters.user) | Q(subject=filters.user))
    if filters.department:
        events = events.filter(actor_departments__icontains=f'"{filters.department}:')
    if filters.action:
        events = events.filter(action=filters.action)
    return events


def _csv_cell(value: Any) -> str:
    if value is None:
        text = ""
    elif isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    else:
        text = str(value)
    if text.startswith(_DANGEROUS_FIRST):
        text = "'" + text
    return text


def _uncsv_cell(text: str) -> str:
    return text[1:] if text.startswith("'") else text


def render_rows(rows: Iterable[dict[str, Any]], fmt: str) -> Iterator[str]:
    if fmt == "jsonl":
        for row in rows:
            yield json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([_csv_cell(row[c]) for c in CSV_COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def iter_rows(events: QuerySet[AuditEvent]) -> Iterator[dict[str, Any]]:
    for event in events.iterator(chunk_size=2000):
        yield to_row(event)


@dataclass
class ExportSummary:
    rows: int = 0
    first_id: int | None = None
    last_id: int | None = None
    first_prev_hash: str | None = None
    first_hash: str | None = None
    last_hash: str | None = None
    sha256: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)


def write_export(path: Path, fmt: str, filters: Filters) -> ExportSummary:
    """Stream the export to ``path`` and write its signed manifest beside it."""
    if fmt not in FORMATS:
        raise BadFilter(f"format must be one of {', '.join(FORMATS)}")
    summary = ExportSummary()
    digest = hashlib.sha256()

    def counted(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for row in rows:
            if not summary.rows:
                summary.first_id, summary.first_hash = row["id"], row["hash"]
                summary.first_prev_hash = row["prev_hash"]
            summary.rows += 1
            summary.last_id, summary.last_hash = row["id"], row["hash"]
            yield row

    with open(path, "w", encoding="utf-8", newline="") as out:
        for text in render_rows(counted(iter_rows(filtered(filters))), fmt):
            data = text.encode("utf-8")
            digest.update(data)
            out.write(text)
    summary.sha256 = digest.hexdigest()
    summary.manifest = make_manifest(fmt, filters, summary)
    Path(f"{path}.manifest.json").write_text(
        json.dumps(summary.manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return summary


def make_manifest(fmt: str, filters: Filters, summary: ExportSummary) -> dict[str, Any]:
    manifest = {
        "format": fmt,
        "filters": filters.as_dict(),
        "contiguous": not filters.narrows_rows,
        "rows": summary.rows,
        "first_id": summary.first_id,
        "last_id": summary.last_id,
        # What the first row follows: the genesis hash, a retention anchor, or (for a
        # time-window export) the row before the window.
        "first_prev_hash": summary.first_prev_hash,
        "first_hash": summary.first_hash,
        "last_hash": summary.last_hash,
        "sha256": summary.sha256,
        "created_at": timezone.now().isoformat(),
        "chain": "sha256(prev_hash + '\\n' + canonical_json(row)); see appliance/audit/chain.py",
        "signature_algorithm": signing.ALGORITHM,
        "public_key": signing.public_key_hex(),
    }
    manifest["signature"] = signing.sign(manifest)
    return manifest


class VerificationFailed(Exception):
    pass


def read_rows(path: Path, fmt: str) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8", newline="") as handle:
        if fmt == "jsonl":
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        raise VerificationFailed(f"line {number} is not valid JSON") from None
            return
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise VerificationFailed("the CSV header is not the audit export's header")
        for record in reader:
            row: dict[str, Any] = {k: _uncsv_cell(v) for k, v in record.items()}
            try:
                row["id"] = int(row["id"])
                row["actor_id"] = int(row["actor_id"]) if row["actor_id"] else None
                for name in _JSON_COLUMNS:
                    row[name] = json.loads(row[name])
            except (ValueError, json.JSONDecodeError):
                raise VerificationFailed(f"row {row.get('id')}: a cell was altered") from None
            yield row


def read_manifest(manifest_path: Path) -> dict[str, Any]:
    if not manifest_path.exists():
        raise VerificationFailed(f"the manifest {manifest_path.name} is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise VerificationFailed("the manifest is not valid JSON") from None
    if not isinstance(manifest, dict):
        raise VerificationFailed("the manifest is not a JSON object")
    return manifest


def verify_export(
    path: Path, manifest_path: Path | None = None, *, public_key: str | None = None
) -> dict[str, Any]:
    """Raise VerificationFailed naming the first problem; return the manifest when intact.

    ``public_key``: the Ed25519 key to trust (hex); by default this appliance's own."""
    manifest = read_manifest(manifest_path or Path(f"{path}.manifest.json"))
    problem = signing.check(manifest, public_key)
    if problem:
        raise VerificationFailed(problem)
    fmt = manifest.get("format")
    if fmt not in FORMATS:
        raise VerificationFailed("the manifest names no known format")
    contiguous = bool(manifest.get("contiguous"))
    try:
        count, first, last = chain.verify_rows(
            read_rows(path, fmt),
            contiguous=contiguous,
            anchor=manifest.get("first_prev_hash") if contiguous else None,
        )
    except chain.ChainError as exc:
        raise VerificationFailed(str(exc)) from None
    except (KeyError, TypeError) as exc:
        raise VerificationFailed(f"a row is missing a field ({exc})") from None
    except UnicodeDecodeError:
        raise VerificationFailed("the file is not UTF-8 text") from None
    if count != manifest.get("rows"):
        raise VerificationFailed(
            f"the file holds {count} rows, the manifest says {manifest.get('rows')}"
        )
    if (first, last) != (manifest.get("first_hash"), manifest.get("last_hash")):
        raise VerificationFailed("the first or last row is not the one the manifest names")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != manifest.get("sha256"):
        raise VerificationFailed("the file's SHA-256 does not match the manifest")
    return manifest
