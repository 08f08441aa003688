"""Answering one question, in the answer worker: retrieve within the asker's access,
prompt the model, stream the reply's answer part, verify citations, store, audit."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from appliance.audit import actions as audit
from appliance.audit.models import Action
from inference import events, prompts
from inference.models import Citation, Question, QuestionStatus
from inference.retrieval import Hit, dense_search

log = logging.getLogger(__name__)

_CITATION = re.compile(r"\[(\d{1,3})\]")
WORKER_LOST = "The answer worker stopped while answering this question. Please ask it again."


def claim(question_id: int) -> Question | None:
    claimed = Question.objects.filter(pk=question_id, status=QuestionStatus.QUEUED).update(
        status=QuestionStatus.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1
    )
    question = Question.objects.select_related("user").filter(pk=question_id).first()
    if question is None:
        return None
    if not claimed:
        if question.status == QuestionStatus.RUNNING:
            # Delivered again after the worker that ran it died: end the stream plainly.
            finish_with_error(question, WORKER_LOST)
        return None
    return question


def answer(question_id: int) -> str:
    question = claim(question_id)
    if question is None:
        return "skipped"
    started = time.monotonic()
    try:
        return _answer(question, started)
    except Exception as exc:
        log.exception("answering question %s failed", question_id)
        finish_with_error(question, f"The answer could not be produced ({type(exc).__name__}).")
        return "error"


def _answer(question: Question, started: float) -> str:
    from inference.llm.backend import GenerationStats, get_model
    from ingest.embedding import embed

    events.mark_alive(question.pk)
    if events.cancel_requested(question.pk):
        return _finish(question, "", [], [], started, grounded=None, stopped=True)

    (vector,) = embed([question.text])
    hits = dense_search(
        question.user, vector, k=settings.RETRIEVAL_TOP_K, narrow_to=question.scope or None
    )
    relevant = [h for h in hits if h.score >= settings.RELEVANCE_FLOOR]
    if not relevant:
        events.publish(question.pk, "sources", {"sources": []})
        events.publish(question.pk, "token", {"text": prompts.NOT_FOUND})
        return _finish(question, prompts.NOT_FOUND, hits, [], started, grounded=False)

    model = get_model()
    sources = prompts.pack_sources(relevant, model.count_tokens, settings.CONTEXT_BUDGET_TOKENS)
    events.publish(question.pk, "sources", {"sources": [_source_json(s) for s in sources]})
    prompt = model.format.render(
        prompts.SYSTEM, prompts.INSTRUCTIONS, prompts.user_message(question.text, sources), []
    )
    reader = model.format.reader()
    stats = GenerationStats()
    answer_parts: list[str] = []
    reasoning_parts: list[str] = []
    last_alive = time.monotonic()

    def should_stop() -> bool:
        return events.cancel_requested(question.pk)

    def emit(pieces: list[Any]) -> None:
        for piece in pieces:
            if piece.kind == "answer":
                if not answer_parts:
                    question.ttft_ms = int((time.monotonic() - started) * 1000)
                answer_parts.append(piece.text)
                events.publish(question.pk, "token", {"text": piece.text})
            else:
                reasoning_parts.append(piece.text)

    for text in model.stream(
        prompt,
        max_tokens=settings.LLM_MAX_ANSWER_TOKENS,
        temperature=settings.LLM_TEMPERATURE,
        top_p=settings.LLM_TOP_P,
        should_stop=should_stop,
        stats=stats,
    ):
        emit(reader.feed(text))
        if time.monotonic() - last_alive > 2:
            events.mark_alive(question.pk)
            last_alive = time.monotonic()
    emit(reader.close())

    question.prompt_tokens = stats.prompt_tokens
    question.completion_tokens = stats.completion_tokens
    if settings.LLM_STORE_REASONING:
        question.reasoning = "".join(reasoning_parts)
    text = "".join(answer_parts).strip()
    if stats.stopped_by == "cancelled":
        return _finish(question, text, hits, sources, started, grounded=True, stopped=True)
    if not text:
        reason = (
            "The model reasoned but wrote no answer; try again or ask more precisely."
            if reasoning_parts
            else "The model wrote no answer; try again."
        )
        finish_with_error(question, reason)
        return "error"
    return _finish(question, text, hits, sources, started, grounded=True)


def _source_json(source: prompts.Source) -> dict[str, Any]:
    return {
        "n": source.n,
        "document_id": source.hit.document_id,
        "chunk_id": source.hit.chunk_id,
        "title": source.hit.title,
        "page": source.hit.page,
        "snippet": source.text[:400],
    }


def verify_citations(text: str, available: set[int]) -> tuple[str, list[int]]:
    """Drop markers that name no source; return the text and the cited numbers in order."""
    cited: list[int] = []

    def keep(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if n not in available:
            return ""
        if n not in cited:
            cited.append(n)
        return match.group(0)

    return _CITATION.sub(keep, text), cited


def _finish(
    question: Question,
    text: str,
    hits: list[Hit],
    sources: list[prompts.Source],
    started: float,
    *,
    grounded: bool | None,
    stopped: bool = False,
) -> str:
    text, cited = verify_citations(text, {s.n for s in sources})
    if stopped:
        text = (text + "\n\n(Stopped.)").strip()
    question.answer = text
    question.grounded = grounded
    question.status = QuestionStatus.DONE
    question.finished_at = timezone.now()
    question.latency_ms = int((time.monotonic() - started) * 1000)
    question.model = settings.LLM_SPEC.name
    question.retrieved_chunk_ids = [h.chunk_id for h in hits]
    with transaction.atomic():
        question.save(
            update_fields=[
                "answer",
                "grounded",
                "status",
                "finished_at",
                "latency_ms",
                "model",
                "retrieved_chunk_ids",
                "prompt_tokens",
                "completion_tokens",
                "ttft_ms",
                "reasoning",
            ]
        )
        Citation.objects.bulk_create(
            Citation(
                question=question,
                n=s.n,
                chunk_id=s.hit.chunk_id,
                document_id=s.hit.document_id,
                title=s.hit.title,
                page=s.hit.page,
                snippet=s.text[:1000],
                cited=s.n in cited,
            )
            for s in sources
        )
        audit.record(
            Action.ANSWER,
            actor=question.user,
            obj=question,
            details={
                "model": question.model,
                "grounded": grounded,
                "stopped": stopped,
                "retrieved_chunk_ids": question.retrieved_chunk_ids,
                "cited_chunk_ids": [s.hit.chunk_id for s in sources if s.n in cited],
                "prompt_tokens": question.prompt_tokens,
                "completion_tokens": question.completion_tokens,
                "ttft_ms": question.ttft_ms,
                "latency_ms": question.latency_ms,
            },
        )
        transaction.on_commit(
            lambda: events.publish(
                question.pk,
                "done",
                {"answer": text, "grounded": grounded, "cited": cited, "stopped": stopped},
            )
        )
    return "done"


def finish_with_error(question: Question, message: str) -> None:
    with transaction.atomic():
        updated = Question.objects.filter(
            pk=question.pk, status__in=[QuestionStatus.QUEUED, QuestionStatus.RUNNING]
        ).update(status=QuestionStatus.ERROR, error=message, finished_at=timezone.now())
        if updated:
            audit.record(
                Action.ANSWER,
                actor=question.user,
                obj=question,
                details={"error": message, "model": settings.LLM_SPEC.name},
            )
            transaction.on_commit(
                lambda: events.publish(question.pk, "error", {"message": message})
            )
