"""Pilot runs on the answer queue: one step, one golden question, then the next step goes
to the back of the line (see ``inference.pilot.runner``)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import transaction

from appliance import redis_client
from inference.pilot import drafts, runner

log = logging.getLogger(__name__)


@shared_task(
    name="inference.pilot_step",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=settings.ANSWER_TASK_TIME_LIMIT,
)
def pilot_step(run_id: int) -> str:
    outcome = runner.step(run_id)
    if outcome == runner.MORE:
        pilot_step.delay(run_id)
    return outcome


def enqueue_after_commit(run_id: int) -> None:
    transaction.on_commit(lambda: pilot_step.delay(run_id))


@shared_task(
    name="inference.pilot_draft_questions",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=settings.ANSWER_TASK_TIME_LIMIT,
)
def pilot_draft_questions(batch_id: int) -> str:
    """One passage of a draft batch; the next goes to the back of the answer queue, as a
    run's next question does."""
    outcome = drafts.step(batch_id)
    if outcome == drafts.MORE:
        pilot_draft_questions.delay(batch_id)
    return outcome


def enqueue_drafts_after_commit(batch_id: int) -> None:
    transaction.on_commit(lambda: pilot_draft_questions.delay(batch_id))


def reconcile() -> int:
    """Runs and draft batches whose step message was lost (Redis restarted, a worker
    died) go on."""
    if redis_client.queue_length("answer") != 0:
        return 0
    ids = runner.runs_to_resume()
    for run_id in ids:
        pilot_step.delay(run_id)
    if ids:
        log.info("reconciler resumed pilot run(s) %s", ids)
    batches = drafts.batches_to_resume()
    for batch_id in batches:
        pilot_draft_questions.delay(batch_id)
    if batches:
        log.info("reconciler resumed draft batch(es) %s", batches)
    return len(ids) + len(batches)
