from __future__ import annotations

from celery import shared_task
from django.conf import settings

from inference import answering


@shared_task(
    name="inference.answer_question",
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=settings.ANSWER_TASK_TIME_LIMIT,
)
def answer_question(question_id: int) -> str:
    return answering.answer(question_id)
