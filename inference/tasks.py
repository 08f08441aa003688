"""The answer queue: the Celery task that answers one question, and every way work is put
on that queue (after a question commits, by the reconciler)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from appliance import logs, metrics, redis_client
from inference import answering, events, passages
from inference.models import Question

log = logging.getLogger(__name__)


@shared_task(
    name="inference.answer_question",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=settings.ANSWER_TASK_TIME_LIMIT,
)
def answer_question(question_id: int) -> str:
    return answering.answer(question_id)


@shared_task(name="inference.search_passages", time_limit=120)
def search_passages(request_id: str, user_id: int, query: str, k: int, scope: list[int]) -> None:
    """A search for the MCP server (``inference.passages``). Not acknowledged late: a
    search lost with its worker is only a timeout for its caller, never worth repeating."""
    passages.answer(request_id, user_id, query, k, scope or None)


def enqueue(question: Question) -> None:
    """Tell the asker their place in the line, then queue the question. Call after the
    question's transaction commits, so the worker finds the row."""
    with logs.bound(question_id=question.pk):
        metrics.question_asked()
        log.info(
            "question %s queued",
            question.pk,
            extra={"event": "question.queued", "question": logs.content(question.text)},
        )
        events.publish(question, "queued", answering.queue_position(question))
        answer_question.delay(question.pk)


def reconcile() -> int:
    """Questions that lost their worker end with an error; questions that lost their queue
    message are queued again. Returns how many were touched."""
    touched = answering.end_orphaned_answers()
    if redis_client.queue_length("answer") == 0:
        lost = answering.lost_questions()
        for question_id in lost:
            answer_question.delay(question_id)
        touched += len(lost)
    return touched
