"""Every change the pilot workbench makes: golden set versions, configurations, runs. Each
runs in one transaction with its audit row; a run is queued after it commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from appliance.audit import actions as audit
from appliance.audit.models import Action
from inference.pilot import tasks
from inference.pilot.goldens import GoldenRow
from inference.pilot.models import (
    Configuration,
    GoldenQuestion,
    GoldenSet,
    GoldenSetVersion,
    Run,
    RunStatus,
)


def add_version(
    actor: Any, golden_set: GoldenSet, rows: Sequence[GoldenRow], note: str = ""
) -> GoldenSetVersion:
    """The set's next version, holding ``rows`` (an edit is a new version: runs keep
    naming the version they used)."""
    with transaction.atomic():
        locked = GoldenSet.objects.select_for_update().get(pk=golden_set.pk)
        last = locked.versions.aggregate(n=Max("number"))["n"] or 0
        version = GoldenSetVersion.objects.create(
            golden_set=locked, number=last + 1, note=note[:300], created_by=_person(actor)
        )
        GoldenQuestion.objects.bulk_create(
            GoldenQuestion(version=version, position=i, **row.as_dict())
            for i, row in enumerate(rows, start=1)
        )
        audit.record(
            Action.GOLDEN_SET_VERSION,
            actor=actor,
            obj=version,
            details={
                "golden_set": locked.name,
                "version": version.number,
                "questions": len(rows),
                "note": note[:300],
            },
        )
    return version


def create_golden_set(
    actor: Any, name: str, department: Any, rows: Sequence[GoldenRow], note: str = ""
) -> GoldenSetVersion:
    """A new golden set (or the next version of the department's set of that name)."""
    golden_set, _ = GoldenSet.objects.get_or_create(
        department=department, name=name[:200], defaults={"created_by": _person(actor)}
    )
    return add_version(actor, golden_set, rows, note)


CONFIGURATION_FIELDS = (
    "description",
    "backend",
    "model",
    "server_url",
    "api_key_setting",
    "chat_format",
    "reasoning_effort",
    "retrieval_mode",
    "top_k",
    "reranker",
    "context_budget",
    "max_answer_tokens",
    "cost",
)


def save_configuration(actor: Any, name: str, **fields: Any) -> Configuration:
    """Create or change the configuration called ``name``. The API key itself is never
    stored: only the name of the setting that holds it."""
    unknown = set(fields) - set(CONFIGURATION_FIELDS)
    if unknown:
        raise ValueError(f"Unknown configuration fields: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        config, created = Configuration.objects.select_for_update().get_or_create(
            name=name[:120], defaults=fields
        )
        if not created and fields:
            for key, value in fields.items():
                setattr(config, key, value)
            config.save(update_fields=list(fields))
        config.full_clean()
        audit.record(
            Action.PILOT_CONFIGURATION,
            actor=actor,
            obj=config,
            details={"name": config.name, "created": created, **snapshot(config)},
        )
    return config


def snapshot(config: Configuration) -> dict[str, Any]:
    return {field: getattr(config, field) for field in CONFIGURATION_FIELDS}


def start_run(
    actor: Any,
    version: GoldenSetVersion,
    configuration: Configuration,
    as_user: Any,
    judge: Configuration | None = None,
) -> Run:
    """Queue a run of every question of ``version`` under ``configuration``, answered as
    ``as_user`` would be (and never from more than ``actor`` may read)."""
    with transaction.atomic():
        run = Run.objects.create(
            golden_version=version,
            configuration=configuration,
            judge=judge,
            as_user=as_user,
            started_by=_person(actor),
            total=version.questions.count(),
            configuration_snapshot=snapshot(configuration),
        )
        audit.record(
            Action.PILOT_RUN_START,
            actor=actor,
            obj=run,
            details={
                "golden_set": version.golden_set.name,
                "version": version.number,
                "configuration": configuration.name,
                "judge": judge.name if judge else None,
                "as_user": as_user.username,
                "questions": run.total,
            },
        )
        tasks.enqueue_after_commit(run.pk)
    return run


def cancel_run(actor: Any, run: Run) -> bool:
    """Stop a run before its next question; what it answered so far is kept and measured."""
    with transaction.atomic():
        updated = Run.objects.filter(
            pk=run.pk, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
        ).update(status=RunStatus.CANCELLED, finished_at=timezone.now())
        if updated:
            audit.record(Action.PILOT_RUN_CANCEL, actor=actor, obj=run, details={})
    return bool(updated)


def _person(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) else None
