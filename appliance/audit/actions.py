"""Writing audit rows.

``record`` must run inside the transaction of the act it records, as its last statement:
it takes a transaction-scoped advisory lock so that concurrent writers append one after
another (the chain never forks), and taking that lock last, after the act's own row locks,
means two writers can never wait on each other in opposite orders (no deadlock).
The lock is held until commit, so appends are serialised: the chain's throughput is one
commit at a time (measured in tests/test_security_audit_concurrency.py). Transactions must
be READ COMMITTED (Django's default) so the read after the lock sees the previous row.
"""

from __future__ import annotations

import getpass
import secrets
from datetime import UTC
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from appliance.accounts.models import Membership
from appliance.audit import chain
from appliance.audit.context import current
from appliance.audit.models import AuditAnchor, AuditEvent

# Any constant works; it only has to be the same in every writer.
CHAIN_LOCK_KEY = 0x61756469  # "audi"


_NEXT_ID_AND_LAST_HASH = (
    "SELECT nextval(pg_get_serial_sequence('audit_auditevent', 'id')), "
    "(SELECT hash FROM audit_auditevent ORDER BY id DESC LIMIT 1)"
)


def _departments_of(user: Any) -> list[str]:
    if user is None or not getattr(user, "pk", None):
        return []

    return sorted(
        {
            f"{name}:{role}"
            for name, role in Membership.objects.filter(user_id=user.pk).values_list(
                "department__name", "role"
            )
        }
    )


def record(
    action: str,
    *,
    actor: Any = None,
    actor_name: str = "",
    obj: Any = None,
    object_type: str = "",
    object_id: Any = "",
    details: dict[str, Any] | None = None,
    subject: Any = None,
) -> AuditEvent:
    """Append one row. ``subject`` is the person the act is about (a User or a name): it is
    kept beside the actor, out of ``details``, so that erasing a person reaches it too."""
    if not connection.in_atomic_block:
        raise RuntimeError("audit.record must run inside the transaction of the act it records")
    ctx = current.get()
    if obj is not None:
        object_type = object_type or obj._meta.model_name
        object_id = object_id or obj.pk
    name = actor_name or (actor.get_username() if actor is not None and actor.pk else "")
    about = (subject.get_username() if hasattr(subject, "get_username") else subject or "")[:150]
    salt = secrets.token_hex(16)
    event = AuditEvent(
        actor_id=actor.pk if actor is not None and actor.pk else None,
        actor=name[:150],
        actor_departments=_departments_of(actor),
        ip=ctx.ip,
        user_agent=ctx.user_agent,
        subject=about,
        identity_salt=salt,
        identity_digest=chain.identity_digest(salt, name[:150], ctx.ip, ctx.user_agent, about),
        action=action,
        object_type=object_type,
        object_id=str(object_id) if object_id not in (None, "") else "",
        details=details or {},
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
        # A statement of its own after the lock: its snapshot sees the previous holder's
        # committed row (READ COMMITTED). The id is drawn here too, so ids follow the chain.
        cursor.execute(_NEXT_ID_AND_LAST_HASH)
        event.id, last = cursor.fetchone()
    # Stamped under the lock, so time order and id order agree and an export of a time
    # window is an unbroken stretch of the chain.
    event.created_at = timezone.now()
    event.prev_hash = last or last_hash()
    event.hash = chain.row_hash(event.prev_hash, to_row(event))
    event.save(force_insert=True)
    return event


def last_hash() -> str:
    """The hash the next row follows: the newest row's, else (everything pruned) the
    retention anchor's, else the genesis hash. Read under the chain lock."""
    last = AuditEvent.objects.order_by("-id").values_list("hash", flat=True).first()
    if last:
        return last
    anchor = AuditAnchor.objects.order_by("-id").values_list("last_pruned_hash", flat=True)
    return anchor.first() or chain.GENESIS


def command_actor() -> str:
    """How a management command appears as the actor: who ran it on the host."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return f"(command line: {who})"


def to_row(event: AuditEvent) -> dict[str, Any]:
    """The exported and hashed form of a row (JSON-ready)."""
    return {
        "id": event.id,
        "created_at": event.created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_id": event.actor_id,
        "actor": event.actor,
        "actor_departments": list(event.actor_departments),
        "ip": event.ip,
        "user_agent": event.user_agent,
        "subject": event.subject,
        "identity_salt": event.identity_salt,
        "identity_digest": event.identity_digest,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def record_alone(action: str, **kwargs: Any) -> AuditEvent:
    """Record in a transaction of its own, for acts that change nothing else (a failed
    sign-in, a denied access, a download)."""
    with transaction.atomic():
        return record(action, **kwargs)
