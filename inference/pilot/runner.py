"""Working through a run, one golden question per step.

A step answers the next question that has no answer yet and stores it; the task then
queues the next step behind whatever else waits on the answer queue, so employees'
questions never wait for a whole run. The run's row is the truth: a step delivered twice,
or after a worker died, finds the questions already answered and goes on from there
(answers are unique per run and question).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from appliance import access
from appliance.audit import actions as audit
from appliance.audit.models import Action
from inference.pilot import engine, measures
from inference.pilot.models import GoldenQuestion, Run, RunAnswer, RunStatus

log = logging.getLogger(__name__)

MORE, FINISHED, STOPPED = "more", "finished", "stopped"


def step(run_id: int) -> str:
    """Answer the run's next question; MORE while questions remain."""
    Run.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, started_at=timezone.now()
    )
    run = (
        Run.objects.select_related("configuration", "judge", "as_user", "started_by")
        .filter(pk=run_id, status=RunStatus.RUNNING)
        .first()
    )
    if run is None:
        return STOPPED  # gone, cancelled or already finished
    golden = (
        GoldenQuestion.objects.filter(version_id=run.golden_version_id)
        .exclude(pk__in=RunAnswer.objects.filter(run=run).values("golden_id"))
        .order_by("position")
        .first()
    )
    if golden is None:
        finish(run)
        return FINISHED
    _answer_one(run, golden)
    return MORE


def _answer_one(run: Run, golden: GoldenQuestion) -> None:
    scope = access.pilot_run_scope(run.started_by)
    # Out of scope: answerable, but only from documents the run's person may not read.
    # Only a question that names sources needs the person's documents looked up.
    in_scope = not (golden.answerable and golden.expected_sources) or engine.answerable_for(
        golden, engine.readable_names(run.as_user, scope)
    )
    try:
        outcome = engine.answer(golden, run.configuration, run.as_user, scope)
    except Exception as exc:  # one question failing never stops the run
        log.exception("pilot run %s, question %s failed", run.pk, golden.pk)
        outcome = engine.Outcome(error=f"{type(exc).__name__}: {exc}"[:500])
    score, judge_prompt, judge_output = None, "", ""
    if run.judge is not None and not outcome.error:
        try:
            score, judge_prompt, judge_output = engine.judge(golden, outcome.answer, run.judge)
        except Exception as exc:
            judge_output = f"The judge failed: {type(exc).__name__}: {exc}"[:500]
    try:
        with transaction.atomic():
            RunAnswer.objects.create(
                run=run,
                golden=golden,
                answer=outcome.answer,
                refused=outcome.refused,
                in_scope=in_scope,
                language=outcome.language,
                retrieved=outcome.retrieved or [],
                cited=outcome.cited or [],
                ttft_ms=outcome.ttft_ms,
                total_ms=outcome.total_ms,
                prompt_tokens=outcome.prompt_tokens,
                output_tokens=outcome.output_tokens,
                judge_score=score,
                judge_prompt=judge_prompt,
                judge_output=judge_output,
                error=outcome.error,
            )
            Run.objects.filter(pk=run.pk).update(done=F("done") + 1)
    except IntegrityError:
        log.info("pilot run %s, question %s was answered twice; kept the first", run.pk, golden.pk)


def records(run: Run) -> list[dict[str, Any]]:
    """The run's answers as the measures read them, in question order."""
    answers = (
        RunAnswer.objects.filter(run=run).select_related("golden").order_by("golden__position")
    )
    return [record(answer) for answer in answers]


def record(answer: RunAnswer) -> dict[str, Any]:
    golden = answer.golden
    return {
        "id": golden.position,
        "question": golden.question,
        "language": golden.language,
        "tags": golden.tags,
        # Answerable for the run's person: see engine.answerable_for.
        "answerable": golden.answerable and answer.in_scope,
        "out_of_scope": not answer.in_scope,
        "expected_answer": golden.expected_answer,
        "expected_sources": golden.expected_sources,
        "answer": answer.answer,
        "refused": answer.refused,
        "answer_language": answer.language,
        "retrieved": answer.retrieved,
        "cited": answer.cited,
        "ttft_ms": answer.ttft_ms,
        "total_ms": answer.total_ms,
        "prompt_tokens": answer.prompt_tokens,
        "output_tokens": answer.output_tokens,
        "judge_score": answer.judge_score,
        "error": answer.error,
    }


def finish(run: Run) -> None:
    """Measure the run and close it, in one transaction with its audit row."""
    scores = measures.score(records(run), cost=run.configuration_snapshot.get("cost") or {})
    with transaction.atomic():
        updated = Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
            status=RunStatus.DONE, measures=scores, finished_at=timezone.now()
        )
        if updated:
            overall = {k: v for k, v in scores.items() if not isinstance(v, dict)}
            audit.record(Action.PILOT_RUN_END, actor=None, obj=run, details=overall)


def remeasure(run: Run) -> dict[str, Any]:
    """The measures of what a run has answered so far (a cancelled run, a running one)."""
    return measures.score(records(run), cost=run.configuration_snapshot.get("cost") or {})


STALE_SECONDS = 120


def runs_to_resume() -> list[int]:
    """Runs in progress whose last answer is old: their step's message was lost."""
    since = timezone.now() - timedelta(seconds=STALE_SECONDS)
    waiting = (
        Run.objects.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING], created_at__lt=since)
        .annotate(last_answer=Max("answers__created_at"))
        .filter(Q(last_answer__isnull=True) | Q(last_answer__lt=since))
    )
    return list(waiting.order_by("pk").values_list("pk", flat=True))
