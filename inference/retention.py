"""Chat retention: questions, answers and conversations older than the retention period
are deleted; the audit rows about them stay (their own retention is the audit log's).

The period is ``APPLIANCE_CHAT_RETENTION_DAYS`` for the whole organisation (0 keeps
everything) and, optionally, a department's ``chat_retention_days`` for its members. Every
rule that applies to a person is applied, so the shortest wins. A conversation goes when
its last question does.

It runs in every answer worker beside the reconcilers (``appliance/workers.py``), at most
once per ``RUN_EVERY_SECONDS``, and as ``manage.py chat_prune``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from appliance.accounts.models import Department, Membership
from appliance.audit import actions as audit
from appliance.audit.models import Action
from inference import events
from inference.models import Conversation, Question

RUN_EVERY_SECONDS = 3600


@dataclass
class PruneResult:
    questions: int = 0
    conversations: int = 0
    rules: list[dict[str, Any]] = field(default_factory=list)


def rules(now: datetime) -> list[tuple[str, datetime, Any]]:
    """(what, cutoff, whose questions) for every retention rule in force."""
    found: list[tuple[str, datetime, Any]] = []
    days = settings.CHAT_RETENTION_DAYS
    if days > 0:
        found.append(("organisation", now - timedelta(days=days), None))
    for department in Department.objects.filter(chat_retention_days__gt=0).order_by("name"):
        members = Membership.objects.filter(department=department).values("user_id")
        cutoff = now - timedelta(days=department.chat_retention_days)
        found.append((f"department {department.name}", cutoff, members))
    return found


def prune(*, actor_name: str = "", now: datetime | None = None) -> PruneResult:
    """Delete what every rule says is too old, in one transaction with its audit row (the
    counts and the rules, never the words). Nothing to delete writes nothing."""
    now = now or timezone.now()
    result = PruneResult()
    with transaction.atomic():
        doomed = Question.objects.none()
        for what, cutoff, whose in rules(now):
            old = Question.objects.filter(created_at__lt=cutoff)
            if whose is not None:
                old = old.filter(user_id__in=whose)
            doomed = doomed | old
            result.rules.append({"rule": what, "before": cutoff.isoformat(timespec="seconds")})
        gone = list(doomed.distinct().only("pk", "created_at", "conversation_id"))
        if not gone:
            return PruneResult(rules=result.rules)
        conversation_ids = {q.conversation_id for q in gone if q.conversation_id}
        Question.objects.filter(pk__in=[q.pk for q in gone]).delete()
        emptied = Conversation.objects.filter(pk__in=conversation_ids, questions__isnull=True)
        _, deleted = emptied.delete()
        result.conversations = deleted.get("inference.Conversation", 0)
        result.questions = len(gone)
        audit.record(
            Action.CHAT_PRUNE,
            actor_name=actor_name or "(chat retention)",
            details={
                "questions": result.questions,
                "conversations": result.conversations,
                "rules": result.rules,
            },
        )
        transaction.on_commit(lambda: events.forget(gone))
    return result


_last_run: float | None = None


def reconcile() -> int:
    """The answer worker's periodic pass: prune at most once per ``RUN_EVERY_SECONDS``."""
    global _last_run
    if _last_run is not None and time.monotonic() - _last_run < RUN_EVERY_SECONDS:
        return 0
    _last_run = time.monotonic()
    if (
        settings.CHAT_RETENTION_DAYS <= 0
        and not Department.objects.filter(chat_retention_days__gt=0).exists()
    ):
        return 0
    return prune().questions
