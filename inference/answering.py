"""Answering one question, in the answer worker, top to bottom:

1. ``claim`` the question (a conditional UPDATE: only one worker answers it);
2. ``find_passages``: search within the asker's access, a follow-up as a standalone query;
3. no passage above the relevance floor: store the plain refusal (``prompts.NOT_FOUND``);
4. ``compose_prompt``: number the passages, put the conversation so far in front;
5. ``generate``: stream the reply's answer part to the asker (``AnswerRelay``), keep its
   reasoning apart, stop within a token when asked;
6. ``store``: verify the citations, save the answer and its citations, audit, say "done".

A question about whole documents ("Summarise the travel policy": picked by the asker,
named in the question, or the conversation's; ``inference.documents``) branches off before
step 2 (or after it, when search finds nothing above the floor): ``answer_from_documents``
reads them part by part (``inference.reading``) and steps 4 to 6 then answer from the
notes as from passages.

Everything the asker sees travels as events on the question's Redis stream
(``inference.events``); the database row is the truth once the answer is stored.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext_noop

from appliance import logs, metrics
from appliance.audit import actions as audit
from appliance.audit.models import Action
from inference import conversation, documents, events, prompts, reading
from inference import language as languages
from inference.conversation import History
from inference.liveness import AliveSignal, StopListener
from inference.llm.backend import get_model
from inference.llm.base import GenerationStats
from inference.models import Citation, Question, QuestionStatus
from inference.retrieval import Hit, search
from ingest.embedding import embed

log = logging.getLogger(__name__)

TOKEN_EVENT_SECONDS = 0.04
_CITATION = re.compile(r"\[(\d{1,3})\]")
# The asker reads these in their page language (``finish_with_error``); English here.
WORKER_LOST = gettext_noop(
    "The answer worker stopped while answering this question. Please ask it again."
)
NOT_PRODUCED = gettext_noop("The answer could not be produced (%(kind)s).")
REASONED_ONLY = gettext_noop(
    "The model reasoned but wrote no answer; try again or ask more precisely."
)
NO_ANSWER = gettext_noop("The model wrote no answer; try again.")


@dataclass
class Reply:
    """What one answer came to, as ``store`` saves it."""

    text: str = ""
    hits: list[Hit] = field(default_factory=list)  # what retrieval returned
    sources: list[prompts.Source] = field(default_factory=list)  # the passages of this turn
    grounded: bool | None = None  # True: from passages; False: nothing found; None: stopped early
    stopped: bool = False


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
    with logs.bound(question_id=question_id):
        question = claim(question_id)
        if question is None:
            return "skipped"
        started = time.monotonic()
        try:
            with AliveSignal(question), StopListener(question) as stop:
                return _answer(question, started, stop)
        except Exception as exc:
            log.exception("answering question %s failed", question_id)
            finish_with_error(question, NOT_PRODUCED, kind=type(exc).__name__)
            return "error"


def _answer(question: Question, started: float, stop: threading.Event) -> str:
    if stop.is_set() or events.cancel_requested(question):
        return store(question, Reply(stopped=True), History(), started)

    model = get_model()
    history = conversation.history(question)
    about = documents.focus(question, history)
    if about.unavailable:  # picked, but no longer readable: the same words as a missing one
        return refuse(question, [], history, started, why="unreadable_document")
    if about.whole:
        return answer_from_documents(question, model, history, about, started, stop)

    hits, relevant = find_passages(question, model, history)
    if not relevant and about.documents:
        # No single passage is like the question, but it names a document the asker may
        # read: the floor must not refuse it, so the document is read whole.
        return answer_from_documents(question, model, history, about, started, stop)
    if not relevant:
        return refuse(question, hits, history, started)
    packed = prompts.pack_sources(relevant, model.count_tokens, settings.CONTEXT_BUDGET_TOKENS)
    return answer_from_sources(question, model, history, hits, packed, started, stop)


def refuse(
    question: Question, hits: list[Hit], history: History, started: float, why: str = "no_passage"
) -> str:
    """The plain refusal (``prompts.NOT_FOUND``, in the answer's language), without calling
    the model: nothing the asker may read answers the question. Its words never depend on
    ``why`` (which only the metrics see)."""
    metrics.answer_refused(why)
    question.documents = []
    said = prompts.not_found(languages.for_person(question.text, question.user))
    events.publish(question, "sources", {"sources": []})
    events.publish(question, "token", {"text": said})
    refusal = Reply(text=said, hits=hits, grounded=False)
    return store(question, refusal, history, started)


def answer_from_sources(
    question: Question,
    model: Any,
    history: History,
    hits: list[Hit],
    packed: list[prompts.Source],
    started: float,
    stop: threading.Event,
    spent: GenerationStats | None = None,
) -> str:
    """Steps 4 to 6 for ``packed`` sources: passages found by search, or notes on whole
    documents (``spent``: what reading them cost)."""
    sources, listed, again = history.number(packed)
    events.publish(question, "sources", {"sources": [source_json(s) for s in sources]})
    language = languages.for_person(question.text, question.user)
    prompt = compose_prompt(model, history, question.text, listed, again, language)

    relay = AnswerRelay(
        started, send=lambda text: events.publish(question, "token", {"text": text})
    )
    stats = generate(model, prompt, relay, stop)
    spent = spent or GenerationStats()
    question.prompt_tokens = spent.prompt_tokens + stats.prompt_tokens
    question.completion_tokens = spent.completion_tokens + stats.completion_tokens
    question.ttft_ms = relay.ttft_ms
    if settings.LLM_STORE_REASONING:
        question.reasoning = relay.reasoning
    reply = Reply(text=relay.answer.strip(), hits=hits, sources=sources, grounded=True)
    if stats.stopped_by == "cancelled":
        reply.stopped = True
        return store(question, reply, history, started)
    if not reply.text:
        finish_with_error(question, REASONED_ONLY if relay.reasoning else NO_ANSWER)
        return "error"
    return store(question, reply, history, started)


# --- questions about whole documents -----------------------------------------------------


def answer_from_documents(
    question: Question,
    model: Any,
    history: History,
    about: documents.Focus,
    started: float,
    stop: threading.Event,
) -> str:
    """Read the documents part by part (``inference.reading``), telling the asker how far
    reading has come, then answer from the notes as from passages."""
    spent = GenerationStats()

    def write(prompt: str, max_tokens: int) -> str:
        relay = AnswerRelay(started)  # notes are for the model, never sent to the asker
        stats = generate(model, prompt, relay, stop, max_tokens=max_tokens)
        spent.prompt_tokens += stats.prompt_tokens
        spent.completion_tokens += stats.completion_tokens
        return relay.answer

    def progress(done: int, total: int, stage: str, title: str) -> None:
        events.publish(
            question, "progress", {"done": done, "total": total, "stage": stage, "title": title}
        )

    question.documents = [target.id for target in about.documents]
    read = reading.read(question, model, about, write, progress, stop)
    if read.stopped:
        question.prompt_tokens = spent.prompt_tokens
        question.completion_tokens = spent.completion_tokens
        return store(question, Reply(hits=read.read, stopped=True), history, started)
    if not read.sources:  # nothing of them is readable now (deleted, access revoked)
        return refuse(question, [], history, started, why="unreadable_document")
    return answer_from_sources(
        question, model, history, read.read, read.sources, started, stop, spent
    )


# --- 2. retrieval -------------------------------------------------------------------------

# One thread per answer worker embeds the question while the database works out the
# asker's scope (torch and the database driver both release the GIL while they work).
_EMBEDDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="question-embedding")


class QueryVectors:
    """The search query's vector for each embedding model in scope. The default model's
    starts at once on the embedding thread, since nearly every collection uses it; the
    vector for any other model is computed when the search asks for it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.default = settings.EMBEDDING_MODEL
        self.pending: Future = _EMBEDDER.submit(embed, [text], name=self.default, query=True)

    def __call__(self, model: str) -> Any:
        if model == self.default:
            return self.pending.result()[0]
        return embed([self.text], name=model, query=True)[0]


def find_passages(question: Question, model: Any, history: History) -> tuple[list[Hit], list[Hit]]:
    """(everything retrieval returned, the hits above the relevance floor). A follow-up is
    searched as a standalone query; if a weak model's rewrite finds nothing, the previous
    question and this one together are tried before giving up. Sets the question's
    ``search_query`` to the query that was used last."""
    hits: list[Hit] = []
    for query in conversation.search_queries(model, history.turns, question.text):
        question.search_query = query
        hits = search(
            question.user,
            query,
            QueryVectors(query),  # embedded by each model whose vectors the scope holds
            k=settings.RETRIEVAL_TOP_K,
            narrow_to=question.scope or None,
            mode=settings.RETRIEVAL_MODE,
        )
        relevant = [h for h in hits if h.score >= settings.RELEVANCE_FLOOR]
        if relevant:
            return hits, relevant
    return hits, []


# --- 4. prompt ----------------------------------------------------------------------------


def compose_prompt(
    model: Any,
    history: History,
    text: str,
    listed: list[prompts.Source],
    again: list[int],
    language: str = "",
) -> str:
    """The prompt of this turn. Earlier turns go first, word for word as the model read
    them, so the KV cache of the conversation so far is reused and only the new turn is
    read; a passage the model has already read in this conversation is named by its number
    (``again``), not repeated. The oldest turns give way when the conversation outgrows the
    model's context. ``language`` is the answer's (``inference.language``)."""
    turns = history.turns
    room = settings.LLM_CONTEXT_TOKENS - settings.LLM_MAX_ANSWER_TOKENS
    while True:
        prompt = model.format.render(
            prompts.SYSTEM,
            prompts.INSTRUCTIONS,
            prompts.user_message(text, listed, again, language),
            [(turn.user_message, turn.answer) for turn in turns],
        )
        if not turns or model.count_tokens(prompt) <= room:
            return prompt
        turns = turns[1:]


# --- 5. generation ------------------------------------------------------------------------


class AnswerRelay:
    """Takes the reply's pieces as the model writes them. Answer text goes out through
    ``send`` as it comes, but at most once per TOKEN_EVENT_SECONDS (on a small host every
    event wakes the web process and the browser, which steals time from the model; the
    first piece always goes at once). Reasoning is kept apart and never sent. Without
    ``send`` (a pilot run) the answer is only collected."""

    def __init__(self, started: float, send: Callable[[str], None] | None = None) -> None:
        self.send = send
        self.started = started
        self.answer_parts: list[str] = []
        self.reasoning_parts: list[str] = []
        self.unsent: list[str] = []
        self.last_sent = 0.0
        self.ttft_ms: int | None = None

    def take(self, pieces: list[Any]) -> None:
        for piece in pieces:
            if piece.kind != "answer":
                self.reasoning_parts.append(piece.text)
                continue
            if self.ttft_ms is None:
                self.ttft_ms = int((time.monotonic() - self.started) * 1000)
            self.answer_parts.append(piece.text)
            self.unsent.append(piece.text)
            if time.monotonic() - self.last_sent >= TOKEN_EVENT_SECONDS:
                self.flush()

    def flush(self) -> None:
        if self.unsent and self.send is not None:
            self.send("".join(self.unsent))
            self.unsent.clear()
            self.last_sent = time.monotonic()

    @property
    def answer(self) -> str:
        return "".join(self.answer_parts)

    @property
    def reasoning(self) -> str:
        return "".join(self.reasoning_parts)


def generate(
    model: Any,
    prompt: str,
    relay: AnswerRelay,
    stop: threading.Event,
    max_tokens: int | None = None,
) -> GenerationStats:
    """Run the model over the prompt, feeding its reply through the chat format's reader
    into ``relay``; checks ``stop`` between tokens."""
    reader = model.format.reader()
    stats = GenerationStats()
    for text in model.stream(
        prompt,
        max_tokens=max_tokens or settings.LLM_MAX_ANSWER_TOKENS,
        temperature=settings.LLM_TEMPERATURE,
        top_p=settings.LLM_TOP_P,
        should_stop=stop.is_set,
        stats=stats,
    ):
        relay.take(reader.feed(text))
    relay.take(reader.close())
    relay.flush()
    metrics.model_generated(
        stats.prompt_tokens, stats.completion_tokens, stats.first_token_s, stats.total_s
    )
    return stats


# --- 6. storing ---------------------------------------------------------------------------


def source_json(source: prompts.Source) -> dict[str, Any]:
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


def store(question: Question, reply: Reply, history: History, started: float) -> str:
    """Save the answer with its citations and its audit row in one transaction, then tell
    the asker it is done."""
    # The model may cite any passage it has read in this conversation, not only this turn's.
    earlier = {s.n: s for s in history.known.values()}
    text, cited = verify_citations(reply.text, {s.n for s in reply.sources} | set(earlier))
    shown = {s.n for s in reply.sources}
    named_again = [earlier[n] for n in cited if n not in shown]
    if reply.stopped:
        text = (text + "\n\n(Stopped.)").strip()
    question.answer = text
    question.grounded = reply.grounded
    question.status = QuestionStatus.DONE
    question.finished_at = timezone.now()
    question.latency_ms = int((time.monotonic() - started) * 1000)
    question.model = settings.LLM_SPEC.name
    question.retrieved_chunk_ids = [h.chunk_id for h in reply.hits]
    cited_sources = [s for s in [*reply.sources, *named_again] if s.n in cited]
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
                "documents",
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
            for s in [*reply.sources, *named_again]
        )
        audit.record(
            Action.ANSWER,
            actor=question.user,
            obj=question,
            details={
                "model": question.model,
                "grounded": reply.grounded,
                "stopped": reply.stopped,
                "retrieved_chunk_ids": question.retrieved_chunk_ids,
                "documents": question.documents,
                "cited_chunk_ids": [s.hit.chunk_id for s in cited_sources],
                "prompt_tokens": question.prompt_tokens,
                "completion_tokens": question.completion_tokens,
                "ttft_ms": question.ttft_ms,
                "latency_ms": question.latency_ms,
            },
        )
        done = {
            "answer": text,
            "grounded": reply.grounded,
            "cited": cited,
            "stopped": reply.stopped,
            # passages of earlier turns that this answer cites again
            "earlier_sources": [source_json(s) for s in named_again],
        }
        transaction.on_commit(lambda: events.publish(question, "done", done))
    observe_answer(question, reply)
    return "done"


def observe_answer(question: Question, reply: Reply) -> None:
    """Count and log a stored answer: numbers and ids only, never the question or answer
    text (``appliance.logs``)."""
    if reply.stopped:
        outcome = "stopped"
    elif reply.grounded is False:
        outcome = "refused"
    else:
        outcome = "answered"
    ttft = None if question.ttft_ms is None else question.ttft_ms / 1000
    metrics.answer_finished(outcome, ttft, question.latency_ms / 1000)
    log.info(
        "question %s: %s",
        question.pk,
        outcome,
        extra={
            "event": "answer.finished",
            "outcome": outcome,
            "ttft_ms": question.ttft_ms,
            "latency_ms": question.latency_ms,
            "prompt_tokens": question.prompt_tokens,
            "completion_tokens": question.completion_tokens,
            "cited": len(set(_CITATION.findall(question.answer or ""))),
            "question": logs.content(question.text),
        },
    )


def finish_with_error(question: Question, message: str, **values: str) -> None:
    """End the question with ``message`` (English, marked for translation; ``values`` fill
    its placeholders): the asker reads it in their page language, the audit row in English."""
    english = message % values if values else message
    with translation.override(question.user.language or settings.LANGUAGE_CODE):
        said = translation.gettext(message) % values if values else translation.gettext(message)
    with transaction.atomic():
        updated = Question.objects.filter(
            pk=question.pk, status__in=[QuestionStatus.QUEUED, QuestionStatus.RUNNING]
        ).update(status=QuestionStatus.ERROR, error=said, finished_at=timezone.now())
        if updated:
            audit.record(
                Action.ANSWER,
                actor=question.user,
                obj=question,
                details={"error": english, "model": settings.LLM_SPEC.name},
            )
            transaction.on_commit(lambda: events.publish(question, "error", {"message": said}))
    if updated:
        metrics.answer_finished("error")
        log.info(
            "question %s: error",
            question.pk,
            extra={
                "event": "answer.finished",
                "outcome": "error",
                "question_id": question.pk,
                "reason": english,
            },
        )


# --- the line of waiting questions, and questions that lost their worker ------------------


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


def end_orphaned_answers() -> int:
    """Questions whose worker stopped signalling that it is alive (it died) end with an
    error, so nobody waits for them. Returns how many."""
    ended = 0
    since = timezone.now() - timedelta(seconds=events.ALIVE_SECONDS)
    running = Question.objects.select_related("user").filter(
        status=QuestionStatus.RUNNING, started_at__lt=since
    )
    for question in running:
        if not events.is_alive(question):
            finish_with_error(question, WORKER_LOST)
            ended += 1
    return ended


def lost_questions(limit: int = 500) -> list[int]:
    """Questions queued for a while; when the answer queue is empty, their message was
    lost (Redis restarted) and they need queueing again (``inference.tasks.reconcile``)."""
    since = timezone.now() - timedelta(seconds=30)
    waiting = Question.objects.filter(status=QuestionStatus.QUEUED, created_at__lt=since)
    return list(waiting.values_list("pk", flat=True)[:limit])
