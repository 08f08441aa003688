"""The only two changes ever made to audit rows: retention pruning and GDPR erasure.

Both run as the database role that owns the table (the application's role holds no UPDATE
or DELETE privilege on it), declare themselves to the append-only trigger with
``SET LOCAL appliance.audit_maintenance = on`` for the statement that needs it, and record
what they did as an audit event in the same transaction. Neither breaks verification:

- pruning deletes a prefix of the chain and stores an anchor (last pruned id and hash), so
  the remaining rows verify from the anchor;
- erasure replaces identity columns (actor, address, user agent; the subject of rows about
  the person) with a pseudonym and drops the row's salt; the hash covers identity only
  through the salted digest, which stays, so the chain still verifies (that row's
  identity simply can no longer be checked).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from appliance.accounts.models import User
from appliance.audit import actions as audit
from appliance.audit import chain, integrity
from appliance.audit.models import Action, AuditAnchor, AuditEvent


class MaintenanceRefused(Exception):
    """The database or the chain does not allow this maintenance now; nothing changed."""


@dataclass
class PruneResult:
    rows: int
    anchor: AuditAnchor | None
    cutoff: datetime


def _declare_maintenance(cursor: Any, on: bool) -> None:
    cursor.execute(
        "SELECT set_config('appliance.audit_maintenance', %s, true)", ["on" if on else "off"]
    )


def _lock_chain(cursor: Any) -> None:
    # The writers' lock: no row is appended while the prefix is verified and removed.
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [audit.CHAIN_LOCK_KEY])


def prune(retention_days: int, *, actor_name: str, now: datetime | None = None) -> PruneResult:
    """Delete rows older than ``retention_days`` (never the newest row) and anchor the rest.

    Refuses when the rows to be deleted do not verify: pruning must not destroy the
    evidence of tampering."""
    cutoff = (now or timezone.now()) - timedelta(days=retention_days)
    with transaction.atomic(), connection.cursor() as cursor:
        _lock_chain(cursor)
        newest = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()
        last = (
            AuditEvent.objects.filter(created_at__lt=cutoff, id__lt=newest or 0)
            .order_by("-id")
            .first()
        )
        if last is None:
            return PruneResult(0, None, cutoff)
        previous = AuditAnchor.objects.order_by("-id").first()
        start = previous.last_pruned_hash if previous else chain.GENESIS
        try:
            chain.verify_rows(
                integrity.rows_in_order(AuditEvent.objects.filter(id__lte=last.id)), anchor=start
            )
        except chain.ChainError as exc:
            raise MaintenanceRefused(
                f"the rows to be pruned do not verify ({exc}); nothing was deleted"
            ) from None
        _declare_maintenance(cursor, True)
        try:
            cursor.execute("DELETE FROM audit_auditevent WHERE id <= %s", [last.id])
        except DatabaseError as exc:
            raise MaintenanceRefused(_privilege_hint(exc)) from None
        rows = cursor.rowcount
        _declare_maintenance(cursor, False)
        try:
            anchor = AuditAnchor.objects.create(
                created_at=timezone.now(),
                last_pruned_id=last.id,
                last_pruned_hash=last.hash,
                last_pruned_created_at=last.created_at,
                rows_pruned=rows,
                retention_days=retention_days,
            )
        except DatabaseError as exc:
            raise MaintenanceRefused(_privilege_hint(exc)) from None
        audit.record(
            Action.AUDIT_PRUNE,
            actor_name=actor_name,
            obj=anchor,
            details={
                "anchor_id": anchor.pk,
                "last_pruned_id": last.id,
                "last_pruned_hash": last.hash,
                "rows": rows,
                "cutoff": cutoff.isoformat(),
                "retention_days": retention_days,
            },
        )
    return PruneResult(rows, anchor, cutoff)


@dataclass
class EraseResult:
    rows: int
    pseudonym: str
    account: str  # "anonymised", "kept" or "none"


def erase_person(username: str, *, actor_name: str, keep_account: bool = False) -> EraseResult:
    """Replace ``username``'s identity in every audit row with one pseudonym.

    The person's account (if it still exists) is anonymised too, unless ``keep_account``:
    otherwise the rows' actor id would still lead to their name. Rows *about* the person
    (their membership, account or token changed) get the pseudonym as subject; their
    salt goes too, so the other identity values of such a row can no longer be checked
    against its digest, while the row's hash still verifies. Free text inside event
    details (a question someone typed) is hashed content and stays; see docs/security.md."""

    pseudonym = "erased-" + secrets.token_hex(6)
    user = User.objects.filter(username=username).first()
    match = Q(actor=username)
    if user is not None:
        match |= Q(actor_id=user.pk)
    with transaction.atomic(), connection.cursor() as cursor:
        _declare_maintenance(cursor, True)
        try:
            acted = AuditEvent.objects.filter(match)
            about = AuditEvent.objects.filter(subject=username).exclude(match)
            rows = about.update(subject=pseudonym, identity_salt="")
            AuditEvent.objects.filter(match, subject=username).update(subject=pseudonym)
            rows += acted.update(actor=pseudonym, ip="", user_agent="", identity_salt="")
        except DatabaseError as exc:
            raise MaintenanceRefused(_privilege_hint(exc)) from None
        _declare_maintenance(cursor, False)
        account = "none"
        if user is not None and not keep_account:
            user.username = pseudonym
            user.email = user.first_name = user.last_name = ""
            user.is_active = False
            user.set_unusable_password()
            user.save(
                update_fields=[
                    "username",
                    "email",
                    "first_name",
                    "last_name",
                    "is_active",
                    "password",
                ]
            )
            user.api_tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
            account = "anonymised"
        elif user is not None:
            account = "kept"
        # The event names only the pseudonym: the erased name must not re-enter the log.
        audit.record(
            Action.AUDIT_ERASE,
            actor_name=actor_name,
            details={"pseudonym": pseudonym, "rows": rows, "account": account},
        )
    return EraseResult(rows, pseudonym, account)


def _privilege_hint(exc: Exception) -> str:
    return (
        f"the database refused ({str(exc).strip().splitlines()[0]}). Run this command as the "
        "owner role: APPLIANCE_DB_USER=appliance_owner APPLIANCE_DB_PASSWORD=<owner password>"
    )
