"""Checking the live audit table, from its retention anchor to its newest row.

``audit_verify --database`` runs this. It reports the first row whose link, content or
identity does not verify, an anchor that no prune event confirms, and (given the manifest
of an earlier export) a log whose end was cut off since that export.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from appliance.audit import chain
from appliance.audit.actions import to_row
from appliance.audit.models import Action, AuditAnchor, AuditEvent


class Broken(Exception):
    pass


def rows_in_order(events: QuerySet[AuditEvent], batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Rows by id, a batch at a time by keyset: no server-side cursor, so the caller may
    stop half-way (a broken row) without leaving a cursor open in its transaction."""
    after = None
    while True:
        page = events.order_by("id")
        if after is not None:
            page = page.filter(id__gt=after)
        chunk = list(page[:batch])
        for event in chunk:
            yield to_row(event)
        if len(chunk) < batch:
            return
        after = chunk[-1].id


@dataclass
class DatabaseReport:
    rows: int
    first_id: int | None
    last_id: int | None
    last_hash: str | None
    anchor: AuditAnchor | None


def verify_database(earlier_manifest: dict[str, Any] | None = None) -> DatabaseReport:
    """Raise Broken naming the first problem; return a summary when the chain is whole."""
    anchor = AuditAnchor.objects.order_by("-id").first()
    start = anchor.last_pruned_hash if anchor else chain.GENESIS
    if anchor is not None and not _anchor_confirmed(anchor):
        raise Broken(
            f"the retention anchor #{anchor.pk} is not confirmed by an audit_prune event "
            "in the log (an anchor was added or changed by hand)"
        )
    first_id: int | None = None
    last_id: int | None = None

    def rows() -> Iterator[dict[str, Any]]:
        nonlocal first_id, last_id
        for row in rows_in_order(AuditEvent.objects.all()):
            if first_id is None:
                first_id = row["id"]
            last_id = row["id"]
            yield row

    try:
        count, _first, last = chain.verify_rows(rows(), anchor=start)
    except chain.ChainError as exc:
        if exc.row_id == first_id and "previous-hash" in exc.reason:
            what = f"retention anchor #{anchor.pk}" if anchor else "the start of the log"
            raise Broken(
                f"row {exc.row_id}: it does not follow {what} (rows before it were removed)"
            ) from None
        raise Broken(str(exc)) from None
    if earlier_manifest is not None:
        _check_not_cut(earlier_manifest, anchor, last_id)
    return DatabaseReport(count, first_id, last_id, last, anchor)


def _anchor_confirmed(anchor: AuditAnchor) -> bool:
    return AuditEvent.objects.filter(
        action=Action.AUDIT_PRUNE,
        details__anchor_id=anchor.pk,
        details__last_pruned_hash=anchor.last_pruned_hash,
    ).exists()


def _check_not_cut(manifest: dict[str, Any], anchor: AuditAnchor | None, last_id: Any) -> None:
    """Every row an earlier export held must still be here, unless pruned since."""
    wanted_id, wanted_hash = manifest.get("last_id"), manifest.get("last_hash")
    if wanted_id is None or wanted_hash is None:
        return
    if anchor is not None and wanted_id <= anchor.last_pruned_id:
        return
    found = AuditEvent.objects.filter(id=wanted_id).values_list("hash", flat=True).first()
    if found is None:
        raise Broken(
            f"row {wanted_id}, the last row of the earlier export, is gone: the log was cut "
            f"(it now ends at row {last_id})"
        )
    if found != wanted_hash:
        raise Broken(f"row {wanted_id} differs from the earlier export's last row")
