"""Answering one question, in the answer worker: retrieve within the asker's access,
prompt the model, stream the reply's answer part, verify citations, store, audit."""

from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from appliance.audit import actions as audit
from appliance.audit.models import Action
from inference import conversation, events, prompts
from inference.models import Citation, Question, QuestionStatus
from inference.retrieval import Hit, search

log = logging.getLogger(__name__)

TOKEN_EVENT_SECONDS = 0.04
_CITATION = re.compile(r"\[(\d{1,3})\]")
WORKER_LOST = "The answer worker stopped while answering this question. Please ask it again."


def claim(question_id: int) -> Question | None:
    claimed = Question.objects.filter(pk=question_id, status=QuestionStatus.QUEUED).update(
        status=QuestionStatus.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1
    )
    if claimed:
        announce_queue_positions()
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
        with _Alive(question), _StopListener(question) as stop:
            return _answer(question, started, stop)
    except Exception as exc:
        log.exception("answering question %s failed", question_id)
        finish_with_error(question, f"The answer could not be produced ({type(exc).__name__}).")
        return "error"


class _Alive:
    """Says "still answering" every few seconds from a thread, so a long prompt read (a
    big model on a CPU reads for many seconds before its first token) is never taken for a
    dead worker; the signal stops only when the process does."""

    def __init__(self, question: Question) -> None:
        self.question = question
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="alive", daemon=True)

    def _run(self) -> None:
        while True:
            try:
                events.mark_alive(self.question)
            except Exception:
                log.warning("could not signal that question %s is alive", self.question.pk)
            if self.stop.wait(events.ALIVE_SECONDS / 4):
                return

    def __enter__(self) -> _Alive:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


class _StopListener:
    """Waits for the stop button on a thread of its own, so the model checks a flag after
    each token instead of asking Redis (a round trip per token, which a fast model feels)
    and still stops within one token of the click."""

    WAIT_SECONDS = 1

    def __init__(self, question: Question) -> None:
        self.question = question
        self.requested = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stop-listener", daemon=True)

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                if events.wait_for_stop(self.question, self.WAIT_SECONDS):
                    self.requested.set()
                    return
            except Exception:
                log.warning("could not listen for a stop of question %s", self.question.pk)
                if self.done.wait(self.WAIT_SECONDS):
                    return

    def __enter__(self) -> threading.Event:
        self.thread.start()
        return self.requested

    def __exit__(self, *exc: object) -> None:
        self.done.set()  # the listener returns within WAIT_SECONDS; nobody waits for it


# One thread per answer worker embeds the question while the database works out the
# asker's scope (torch and the database driver both release the GIL while they work).
_EMBEDDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="question-embedding")


class _QueryVectors:
    """The search query's vector for each embedding model in scope. The default model's
    starts at once on the embedding thread, since nearly every collection uses it; the
    vector for any other model is computed when the search asks for it."""

    def __init__(self, text: str) -> None:
        from ingest.embedding import embed

        self.text = text
        self.default = settings.EMBEDDING_MODEL
        self.pending: Future = _EMBEDDER.submit(embed, [text], name=self.default)

    def __call__(self, model: str) -> Any:
        from ingest.embedding import embed

        if model == self.default:
            return self.pending.result()[0]
        return embed([self.text], name=model)[0]


def _answer(question: Question, started: float, stop: threading.Event) -> str:
    from inference.llm.backend import GenerationStats, get_model

    if stop.is_set() or events.cancel_requested(question):
        return _finish(
            question, "", [], [], conversation.Thread(), started, grounded=None, stopped=True
        )

    model = get_model()
    thread = conversation.history(question)
    # A follow-up is searched as a standalone query; if a weak model's rewrite finds
    # nothing, the previous question and this one together are tried before giving up.
    queries = conversation.search_queries(model, thread.turns, question.text)
    hits: list[Hit] = []
    relevant: list[Hit] = []
    for query in queries:
        question.search_query = query
        hits = search(
            question.user,
            query,
            # embedded by each model whose vectors the scope's collections hold
            _QueryVectors(query),
            k=settings.RETRIEVAL_TOP_K,
            narrow_to=question.scope or None,
            mode=settings.RETRIEVAL_MODE,
        )
        relevant = [h for h in hits if h.score >= settings.RELEVANCE_FLOOR]
        if relevant:
            break
    if not relevant:
        events.publish(question, "sources", {"sources": []})
        events.publish(question, "token", {"text": prompts.NOT_FOUND})
        return _finish(question, prompts.NOT_FOUND, hits, [], thread, started, grounded=False)

    packed = prompts.pack_sources(relevant, model.count_tokens, settings.CONTEXT_BUDGET_TOKENS)
    sources, listed, again = thread.number(packed)
    events.publish(question, "sources", {"sources": [_source_json(s) for s in sources]})
    # Earlier turns go first, word for word as the model read them, so the KV cache of the
    # conversation so far is reused and only the new turn is read; a passage the model has
    # already read in this conversation is named by its number, not repeated. The oldest
    # turns give way when the conversation outgrows the model's context.
    turns = thread.turns
    room = settings.LLM_CONTEXT_TOKENS - settings.LLM_MAX_ANSWER_TOKENS
    while True:
        prompt = model.format.render(
            prompts.SYSTEM,
            prompts.INSTRUCTIONS,
            prompts.user_message(question.text, listed, again),
            [(turn.user_message, turn.answer) for turn in turns],
        )
        if not turns or model.count_tokens(prompt) <= room:
            break
        turns = turns[1:]
    reader = model.format.reader()
    stats = GenerationStats()
    answer_parts: list[str] = []
    reasoning_parts: list[str] = []

    def should_stop() -> bool:
        return stop.is_set()

    # Tokens go out as they come, but at most one event per TOKEN_EVENT_SECONDS: on a small
    # host every event wakes the web process and the browser, which steals time from the
    # model. The first token always goes out at once.
    unsent: list[str] = []
    last_sent = 0.0

    def flush() -> None:
        nonlocal last_sent
        if unsent:
            events.publish(question, "token", {"text": "".join(unsent)})
            unsent.clear()
            last_sent = time.monotonic()

    def emit(pieces: list[Any]) -> None:
        for piece in pieces:
            if piece.kind == "answer":
                if not answer_parts:
                    question.ttft_ms = int((time.monotonic() - started) * 1000)
                answer_parts.append(piece.text)
                unsent.append(piece.text)
                if time.monotonic() - last_sent >= TOKEN_EVENT_SECONDS:
                    flush()
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
    emit(reader.close())
    flush()

    question.prompt_tokens = stats.prompt_tokens
    question.completion_tokens = stats.completion_tokens
    if settings.LLM_STORE_REASONING:
        question.reasoning = "".join(reasoning_parts)
    text = "".join(answer_parts).strip()
    if stats.stopped_by == "cancelled":
        return _finish(question, text, hits, sources, thread, started, grounded=True, stopped=True)
    if not text:
        reason = (
            "The model reasoned but wrote no answer; try again or ask more precisely."
            if reasoning_parts
            else "The model wrote no answer; try again."
        )
        finish_with_error(question, reason)
        return "error"
    return _finish(question, text, hits, sources, thread, started, grounded=True)


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
    thread: conversation.Thread,
    started: float,
    *,
    grounded: bool | None,
    stopped: bool = False,
) -> str:
    # The model may cite any passage it has read in this conversation, not only this turn's.
    earlier = {s.n: s for s in thread.known.values()}
    text, cited = verify_citations(text, {s.n for s in sources} | set(earlier))
    shown = {s.n for s in sources}
    named_again = [earlier[n] for n in cited if n not in shown]
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
                "search_query",
            ]
        )
        Citation.objects.bulk_create(
            Citation(
                question=question,
                n=s.n,
                chunk_id=s.hit.chunk_id or None,
                document_id=s.hit.document_id,
                title=s.hit.title,
                page=s.hit.page,
                snippet=s.text,  # the whole passage the model read; shortened for display
                cited=s.n in cited,
                in_prompt=s not in named_again,
            )
            for s in [*sources, *named_again]
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
                "cited_chunk_ids": [
                    s.hit.chunk_id for s in [*sources, *named_again] if s.n in cited
                ],
                "prompt_tokens": question.prompt_tokens,
                "completion_tokens": question.completion_tokens,
                "ttft_ms": question.ttft_ms,
                "latency_ms": question.latency_ms,
            },
        )
        transaction.on_commit(
            lambda: events.publish(
                question,
                "done",
                {
                    "answer": text,
                    "grounded": grounded,
                    "cited": cited,
                    "stopped": stopped,
                    # passages of earlier turns that this answer cites again
                    "earlier_sources": [_source_json(s) for s in named_again],
                },
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
            transaction.on_commit(lambda: events.publish(question, "error", {"message": message}))


def queue_position(question: Question) -> dict[str, int]:
    """How many questions will be answered before this one (running ones included)."""
    ahead = (
        Question.objects.filter(
            status=QuestionStatus.QUEUED, created_at__lt=question.created_at
        ).count()
        + Question.objects.filter(status=QuestionStatus.RUNNING).count()
    )
    return {"position": ahead + 1, "ahead": ahead}


def announce_queue_positions(limit: int = 200) -> None:
    """Tell every waiting question its new place when the line moves."""
    running = Question.objects.filter(status=QuestionStatus.RUNNING).count()
    waiting = Question.objects.filter(status=QuestionStatus.QUEUED).order_by("created_at", "id")
    for index, question in enumerate(waiting.only("pk", "created_at")[:limit]):
        ahead = running + index
        events.publish(question, "queued", {"position": ahead + 1, "ahead": ahead})


def reconcile() -> int:
    """Questions that lost their worker end with an error; questions that lost their queue
    message (Redis restarted) are queued again. Returns how many were touched."""
    from inference.tasks import answer_question

    now = timezone.now()
    touched = 0
    for question in Question.objects.select_related("user").filter(
        status=QuestionStatus.RUNNING, started_at__lt=now - timedelta(seconds=events.ALIVE_SECONDS)
    ):
        if not events.is_alive(question):
            finish_with_error(question, WORKER_LOST)
            touched += 1
    if events.client().llen("answer") == 0:
        for question_id in Question.objects.filter(
            status=QuestionStatus.QUEUED, created_at__lt=now - timedelta(seconds=30)
        ).values_list("pk", flat=True)[:500]:
            answer_question.delay(question_id)
            touched += 1
    return touched
