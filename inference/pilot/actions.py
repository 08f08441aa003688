"""Every change the pilot workbench makes: golden set versions, configurations, runs. Each
runs in one transaction with its audit row; a run is queued after it commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from appliance.audit import actions as audit
from appliance.audit.models import Action
from inference.pilot import drafts, goldens, tasks
from inference.pilot.goldens import GoldenRow
from inference.pilot.models import (
    Configuration,
    Draft,
    DraftBatch,
    DraftBatchStatus,
    DraftStatus,
    GoldenQuestion,
    GoldenSet,
    GoldenSetVersion,
    Run,
    RunStatus,
)
from ingest.models import Collection


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


# --- drafted questions (see inference.pilot.drafts) ---------------------------------------


def request_drafts(
    actor: Any, golden_set: GoldenSet, collection: Collection, count: int
) -> DraftBatch | None:
    """Queue drafting of up to ``count`` questions from passages of ``collection`` that
    ``actor`` may read, for ``golden_set``; None when there is no passage left to draft
    from (passages drafted for this set before are not drafted again)."""
    count = max(1, min(count, drafts.MAX_DRAFTS))
    seen = Draft.objects.filter(golden_set=golden_set).values_list("chunk_id", flat=True)
    chunk_ids = drafts.sample_passages(actor, collection, count, exclude=seen)
    if not chunk_ids:
        return None
    with transaction.atomic():
        batch = DraftBatch.objects.create(
            golden_set=golden_set,
            collection=collection,
            collection_name=collection.name[:200],
            requested_by=_person(actor),
            chunk_ids=chunk_ids,
            asked=count,
            total=len(chunk_ids),
        )
        audit.record(
            Action.GOLDEN_DRAFTS,
            actor=actor,
            obj=batch,
            details={
                "change": "requested",
                "golden_set": golden_set.name,
                "collection": collection.name,
                "asked": count,
                "passages": len(chunk_ids),
            },
        )
        tasks.enqueue_drafts_after_commit(batch.pk)
    return batch


def stop_drafting(actor: Any, batch: DraftBatch) -> bool:
    """Stop a batch before its next passage; the drafts written so far stay for review."""
    with transaction.atomic():
        now = timezone.now()
        updated = DraftBatch.objects.filter(
            pk=batch.pk, status__in=[DraftBatchStatus.QUEUED, DraftBatchStatus.DRAFTING]
        ).update(status=DraftBatchStatus.STOPPED, finished_at=now, updated_at=now)
        if updated:
            audit.record(
                Action.GOLDEN_DRAFTS,
                actor=actor,
                obj=batch,
                details={"change": "stopped", "golden_set": batch.golden_set.name},
            )
    return bool(updated)


def review_drafts(
    actor: Any, golden_set: GoldenSet, decisions: Sequence[drafts.Decision]
) -> drafts.Review:
    """Apply a curator's decisions on pending drafts of ``golden_set``: edits are saved,
    rejected drafts closed, and the accepted ones (with their edits) join the set's next
    version beside every question of the latest one. Drafts no longer pending (another
    curator got there first) and drafts of other sets are left alone. A draft whose text
    breaks a golden set's rules, or repeats a question of the set, stays pending with the
    reason in ``problems``. The audit row names drafts by id, never their text: an
    auditor reads no documents, and drafts are made of them."""
    review = drafts.Review()
    wanted = {decision.draft_id: decision for decision in decisions}
    with transaction.atomic():
        locked = GoldenSet.objects.select_for_update().get(pk=golden_set.pk)
        pending = Draft.objects.select_for_update().filter(
            golden_set=locked, status=DraftStatus.PENDING, pk__in=list(wanted)
        )
        latest = locked.latest
        existing = (
            [GoldenRow(**q.as_row()) for q in latest.questions.order_by("position")]
            if latest
            else []
        )
        keys = {goldens.question_key(row.question) for row in existing}
        now, reviewer = timezone.now(), _person(actor)
        accepted: list[Draft] = []
        for draft in pending.order_by("created_at", "id"):
            decision = wanted[draft.pk]
            if decision.action == drafts.REJECT:
                draft.status, draft.reviewed_by, draft.reviewed_at = (
                    DraftStatus.REJECTED,
                    reviewer,
                    now,
                )
                draft.save(update_fields=["status", "reviewed_by", "reviewed_at"])
                review.rejected.append(draft.pk)
                continue
            question = " ".join(decision.question.split())
            answer = decision.expected_answer.strip()
            shown = f"Draft “{(question or draft.question)[:60]}”"
            problem = drafts.check_edit(question, answer)
            if problem:
                review.problems.append(f"{shown}: {problem}. It was left for review.")
                continue
            if (question, answer) != (draft.question, draft.expected_answer):
                draft.question, draft.expected_answer = question, answer
                draft.language = goldens.detect_language(question) or draft.language
                draft.save(update_fields=["question", "expected_answer", "language"])
                review.edited.append(draft.pk)
            if decision.action != drafts.ACCEPT:
                continue
            key = goldens.question_key(question)
            if key in keys:
                review.problems.append(
                    f"{shown}: the set already holds this question. It was left for review."
                )
                continue
            keys.add(key)
            accepted.append(draft)
        if accepted:
            rows = existing + [drafts.golden_row(draft) for draft in accepted]
            note = f"{len(accepted)} drafted question{'s' if len(accepted) != 1 else ''} accepted"
            review.version = add_version(actor, locked, rows, note=note)
            Draft.objects.filter(pk__in=[draft.pk for draft in accepted]).update(
                status=DraftStatus.ACCEPTED,
                accepted_in=review.version,
                reviewed_by=reviewer,
                reviewed_at=now,
            )
            review.accepted = [draft.pk for draft in accepted]
        if review.changed:
            audit.record(
                Action.GOLDEN_DRAFTS,
                actor=actor,
                obj=locked,
                details={
                    "change": "reviewed",
                    "golden_set": locked.name,
                    "accepted": review.accepted,
                    "edited": review.edited,
                    "rejected": review.rejected,
                    "version": review.version.number if review.version else None,
                },
            )
    return review


# --- questions employees asked (see appliance/web/feedback.py) ----------------------------


class GoldenEntryRefused(ValueError):
    pass


def add_asked_question(
    actor: Any,
    golden_set: GoldenSet,
    question: str,
    expected_answer: str = "",
    expected_sources: Sequence[dict[str, Any]] = (),
    answerable: bool = True,
    feedback_id: int | None = None,
) -> GoldenSetVersion:
    """Add a question an employee asked (shared with curators through their feedback) to
    ``golden_set``: its next version holds every question of the latest one and this one.
    A question the set already holds is refused."""
    question = " ".join((question or "").split())
    if not question:
        raise GoldenEntryRefused(_("The question is empty."))
    with transaction.atomic():
        locked = GoldenSet.objects.select_for_update().get(pk=golden_set.pk)
        latest = locked.latest
        existing = (
            [GoldenRow(**q.as_row()) for q in latest.questions.order_by("position")]
            if latest
            else []
        )
        if goldens.question_key(question) in {goldens.question_key(r.question) for r in existing}:
            raise GoldenEntryRefused(
                _("“%(name)s” already holds this question.") % {"name": locked.name}
            )
        row = GoldenRow(
            question=question,
            expected_answer=(expected_answer or "").strip(),
            expected_sources=[dict(s) for s in expected_sources],
            answerable=answerable,
            language=goldens.detect_language(question) or "",
            tags=["from-feedback"],
        )
        note = f"question from feedback #{feedback_id}" if feedback_id else "asked question"
        return add_version(actor, locked, [*existing, row], note=note)


def _person(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) else None
