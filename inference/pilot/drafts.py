"""Drafting golden questions from a collection's passages with the local model.

A curator asks for up to ``MAX_DRAFTS`` drafts from a collection they may read.
``sample_passages`` picks live passages through the access policy
(``Chunk.objects.visible_to``), spread over the collection's documents. The answer worker
then reads them one per step (``step``), as it works through a pilot run: each step asks
the model for one question the passage answers and its short answer, keeps the pair only
when ``read_reply`` finds it usable, and the task queues the next step behind employees'
questions. The batch's row is the truth of its progress: a step delivered twice finds its
passage already counted and stops.

Nothing here joins a golden set: a curator accepts (perhaps after editing), edits or
rejects each draft, and accepting makes the set's next version
(``inference.pilot.actions.review_drafts``).

Small models write poor questions, or none, or answers that are not in the passage.
Such output is skipped, never stored: a draft whose answer the passage does not hold
would teach the measures something false.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.db.models.functions import Length
from django.utils import timezone

from appliance.audit import actions as audit
from appliance.audit.models import Action
from inference import answering
from inference.llm.backend import get_model
from inference.llm.base import LanguageModel, ModelUnavailable
from inference.llm.formats import HarmonyFormat
from inference.pilot import goldens
from inference.pilot.goldens import GoldenRow
from inference.pilot.models import Draft, DraftBatch, DraftBatchStatus
from ingest.models import Chunk, Collection

log = logging.getLogger(__name__)

MORE, FINISHED, STOPPED = "more", "finished", "stopped"

MAX_DRAFTS = 50  # per request: a batch of gpt-oss-120b drafts should end within minutes
# Passages shorter than this rarely hold a fact to ask about (headings, page furniture);
# they are used only when a collection has too few longer ones.
MIN_PASSAGE_CHARS = 200
# Passages considered per request, sampled by the database before the spread over documents.
SAMPLE_POOL = 2_000
MAX_QUESTION_CHARS = 300
MAX_ANSWER_CHARS = 300
MAX_ANSWER_EDIT_CHARS = 2_000
# gpt-oss thinks before it answers (its reasoning is dropped); a template model is told to
# start with the question, so it needs only the two lines.
HARMONY_MAX_TOKENS = 512
TEMPLATE_MAX_TOKENS = 96
TAG = "drafted"  # accepted drafts carry it, so measures per tag tell them apart
STALE_SECONDS = 180

SYSTEM = "You write test questions for a document search system."
# One worked example: without it small models describe the passage instead of asking about
# it. A "when" example with a time made SmolLM2-135M ask "when" of every passage and answer
# "6 pm"; this one gave it three usable drafts in six (tried on the same passages).
EXAMPLE_QUESTION = "Who founded the city museum?"
EXAMPLE_ANSWER = "the town council"
PROMPT = """\
Read the passage and write one question that the passage answers, then the answer in a \
few words taken from the passage.{language}

Example:
Passage: The city museum was founded in 1887 by the town council and holds 40,000 paintings.
QUESTION: {example_question}
ANSWER: {example_answer}

Passage: {passage}"""
# A template model is given the start of its reply, so it keeps to the two lines.
PREFILL = "QUESTION:"

LANGUAGE_NAMES = {
    "da": "Danish",
    "de": "German",
    "en": "English",
    "es": "Spanish",
    "fi": "Finnish",
    "fr": "French",
    "it": "Italian",
    "nb": "Norwegian",
    "nl": "Dutch",
    "nn": "Norwegian",
    "no": "Norwegian",
    "pl": "Polish",
    "pt": "Portuguese",
    "sv": "Swedish",
}


# --- choosing passages --------------------------------------------------------------------


def sample_passages(
    person: Any, collection: Collection, count: int, exclude: Iterable[int] = ()
) -> list[int]:
    """Up to ``count`` ids of live passages of ``collection`` that ``person`` may read,
    taking turns between documents so one long document does not fill the batch, and
    preferring passages long enough to hold a fact. None outside ``person``'s access."""
    pool = list(
        Chunk.objects.visible_to(person)
        .filter(collection=collection)
        .exclude(pk__in=list(exclude))
        .annotate(length=Length("text"))
        .order_by("?")
        .values_list("pk", "document_id", "length")[:SAMPLE_POOL]
    )
    long_enough = [row for row in pool if row[2] >= MIN_PASSAGE_CHARS]
    short = [row for row in pool if row[2] < MIN_PASSAGE_CHARS]
    chosen = _spread(long_enough, count)
    if len(chosen) < count:
        chosen += _spread(short, count - len(chosen))
    return chosen


def _spread(rows: list[tuple[int, int, int]], count: int) -> list[int]:
    by_document: dict[int, list[int]] = defaultdict(list)
    for pk, document_id, _length in rows:  # already in random order
        by_document[document_id].append(pk)
    queues = list(by_document.values())
    random.shuffle(queues)
    chosen: list[int] = []
    while queues and len(chosen) < count:
        for queue in list(queues):
            if len(chosen) == count:
                break
            chosen.append(queue.pop())
            if not queue:
                queues.remove(queue)
    return chosen


# --- asking the model, reading its reply --------------------------------------------------


@dataclass
class Candidate:
    """A usable question and answer from one passage."""

    question: str
    answer: str
    language: str = ""


_LABEL = re.compile(
    r"^\s*(?:\d+[.)]\s*)?(question|q|spørsmål|frage|answer|a|svar|antwort)\s*[:\uff1a]\s*(.*)$",
    re.IGNORECASE,
)
_QUESTION_LABELS = {"question", "q", "spørsmål", "frage"}
_ASKED = re.compile(r"[^\n.!?\"“”«»]{8,}\?")
_MARKUP = re.compile(r"[*_`#]+")
_WORD = re.compile(r"\w+")
# Words that say nothing about a passage's content, in the languages the appliance ships
# full-text configurations for; a question or answer must share more than these with it.
_STOPWORD_TEXT = """
    the and for are was were what when where which who whom whose how why does did that
    this these those with from has have had not but you your its his her their they them
    there can could would should will shall may might into onto about than then passage
    question answer text
    der die das und ist den dem des ein eine einer nicht von mit wer wie was wann warum
    det den som til med hva hvem hvor hvordan hvorfor når ikke har var kan skal
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _plain(text: str) -> str:
    return " ".join(_MARKUP.sub("", text).split())


def _content_words(text: str) -> list[str]:
    words = (w.casefold() for w in _WORD.findall(text))
    return [w for w in words if w not in _STOPWORDS and (len(w) >= 3 or w.isdigit())]


def _labelled(text: str) -> tuple[str, str]:
    """The first labelled question and the first labelled answer after it (or anywhere,
    when no line is labelled as the question)."""
    question = answer = ""
    for line in text.splitlines():
        found = _LABEL.match(_MARKUP.sub("", line))
        if not found:
            continue
        label, value = found.group(1).casefold(), found.group(2).strip()
        if label in _QUESTION_LABELS:
            if question:
                break  # a second question: the model went on with another example
            question, answer = value, ""
        elif not answer:
            answer = value
    return question, answer


def _clean_question(text: str) -> str:
    text = _plain(text).strip(" \"'“”«»")
    if "?" in text:
        text = text[: text.index("?") + 1]
    return text.strip(" \"'“”«»")


def _clean_answer(text: str) -> str:
    return _plain(text).strip(" \"'“”«»").rstrip(".").strip()


def read_reply(reply: str, passage: str) -> Candidate | None:
    """The question and answer in the model's reply, or None when they are not usable: no
    question, a question the passage does not touch, the example copied, an answer that
    only repeats the question, or an answer whose words the passage does not hold."""
    question, answer = _labelled(reply)
    if not question:
        asked = _ASKED.search(_plain(reply))  # 'The passage asks: "Who ...?"'
        question = asked.group(0) if asked else ""
    question, answer = _clean_question(question), _clean_answer(answer)
    problem = _unusable(question, answer, passage)
    if problem:
        log.debug("draft skipped (%s): %r", problem, reply[:200])
        return None
    return Candidate(question=question, answer=answer)


def _unusable(question: str, answer: str, passage: str) -> str:
    if not question.endswith("?") or len(question.split()) < 3:
        return "no question"
    if len(question) > MAX_QUESTION_CHARS or len(answer) > MAX_ANSWER_CHARS:
        return "too long"
    if not answer:
        return "no answer"
    if goldens.looks_like_formula(question) or goldens.looks_like_formula(answer):
        return "formula"
    if goldens.question_key(question) == goldens.question_key(EXAMPLE_QUESTION):
        return "the example"
    if answer.endswith("?") or goldens.question_key(answer) == goldens.question_key(question):
        return "the answer repeats the question"
    in_passage = set(_content_words(passage))
    if not in_passage & set(_content_words(question)):
        return "the question is not about the passage"
    words = _content_words(answer)
    if not words or sum(w in in_passage for w in words) * 2 < len(words):
        return "the answer is not in the passage"
    return ""


def _fit(model: LanguageModel, passage: str) -> str:
    """The passage, cut to leave room in the model's context for the prompt and reply."""
    budget = max(128, model.context // 2 - 256)
    text = " ".join(passage.split())
    for _ in range(4):
        tokens = model.count_tokens(text)
        if tokens <= budget:
            break
        text = text[: int(len(text) * budget / tokens * 0.9)]
    return text


def prompt_for(model: LanguageModel, passage: str) -> tuple[str, str]:
    """(the prompt, the start of the reply already written into it)."""
    language = LANGUAGE_NAMES.get(goldens.detect_language(passage), "")
    body = PROMPT.format(
        passage=passage,
        language=f" Write the question and the answer in {language}." if language else "",
        example_question=EXAMPLE_QUESTION,
        example_answer=EXAMPLE_ANSWER,
    )
    prompt = model.format.render(SYSTEM, "", body, [])
    if isinstance(model.format, HarmonyFormat):
        return prompt, ""  # its reply opens with reasoning: nothing can be written for it
    return prompt + PREFILL, PREFILL


def draft_one(model: LanguageModel, passage: str) -> Candidate | None:
    """Ask ``model`` for one question ``passage`` answers; None when the reply is unusable."""
    text = _fit(model, passage)
    prompt, prefill = prompt_for(model, text)
    relay = answering.AnswerRelay(time.monotonic())
    limit = TEMPLATE_MAX_TOKENS if prefill else HARMONY_MAX_TOKENS
    answering.generate(model, prompt, relay, threading.Event(), max_tokens=limit)
    candidate = read_reply(prefill + relay.answer, text)
    if candidate is not None:
        # A short question is often too short to tell; the passage it came from is not.
        candidate.language = goldens.detect_language(candidate.question) or (
            goldens.detect_language(text)
        )
    return candidate


# --- the worker's steps -------------------------------------------------------------------


def step(batch_id: int) -> str:
    """Read the batch's next passage; MORE while passages remain."""
    DraftBatch.objects.filter(pk=batch_id, status=DraftBatchStatus.QUEUED).update(
        status=DraftBatchStatus.DRAFTING, updated_at=timezone.now()
    )
    batch = (
        DraftBatch.objects.select_related("golden_set", "requested_by")
        .filter(pk=batch_id, status=DraftBatchStatus.DRAFTING)
        .first()
    )
    if batch is None:
        return STOPPED  # gone, stopped or already finished
    position = batch.done
    if position >= len(batch.chunk_ids):
        finish(batch)
        return FINISHED
    chunk = (
        Chunk.objects.visible_to(batch.requested_by)
        .filter(pk=batch.chunk_ids[position], collection_id=batch.collection_id)
        .select_related("document")
        .first()
    )  # None: replaced by a newer version of its document, or no longer readable
    candidate = None
    if chunk is not None:
        try:
            candidate = draft_one(get_model(), chunk.text)
        except ModelUnavailable as exc:
            # A missing model file or an unreachable server fails every passage alike:
            # say so once instead of reading the rest for nothing. (Passages are cut to
            # fit the context, so "does not fit" is not expected here.)
            fail(batch, f"The model could not write drafts: {exc}")
            return FINISHED
        except Exception:  # one passage failing never stops the batch
            log.exception("drafting from passage %s of batch %s failed", chunk.pk, batch.pk)
    if not _store(batch, position, chunk, candidate):
        return STOPPED  # another delivery of this step counted the passage and goes on
    if position + 1 >= len(batch.chunk_ids):
        batch.refresh_from_db()
        finish(batch)
        return FINISHED
    return MORE


def _store(
    batch: DraftBatch, position: int, chunk: Chunk | None, candidate: Candidate | None
) -> bool:
    """Count the passage as read (only if nobody has yet) and keep its draft, together."""
    try:
        with transaction.atomic():
            moved = DraftBatch.objects.filter(
                pk=batch.pk, status=DraftBatchStatus.DRAFTING, done=position
            ).update(
                done=position + 1,
                drafted=F("drafted") + (1 if candidate else 0),
                updated_at=timezone.now(),
            )
            if moved and candidate is not None and chunk is not None:
                Draft.objects.create(
                    golden_set=batch.golden_set,
                    batch=batch,
                    chunk_id=chunk.pk,
                    document_name=chunk.document.original_name[:300],
                    page=chunk.page,
                    question=candidate.question,
                    expected_answer=candidate.answer,
                    language=candidate.language,
                    requested_by=batch.requested_by,
                )
    except IntegrityError:
        log.info("passage %s of batch %s was drafted twice; kept the first", position, batch.pk)
        return False
    return bool(moved)


def finish(batch: DraftBatch) -> None:
    _end(batch, DraftBatchStatus.DONE, "")


def fail(batch: DraftBatch, reason: str) -> None:
    _end(batch, DraftBatchStatus.FAILED, reason[:500])


def _end(batch: DraftBatch, status: str, error: str) -> None:
    """Close the batch, in one transaction with its audit row."""
    with transaction.atomic():
        now = timezone.now()
        updated = DraftBatch.objects.filter(
            pk=batch.pk, status__in=[DraftBatchStatus.QUEUED, DraftBatchStatus.DRAFTING]
        ).update(status=status, error=error, finished_at=now, updated_at=now)
        if updated:
            batch.refresh_from_db()
            audit.record(
                Action.GOLDEN_DRAFTS,
                actor=None,
                obj=batch,
                details={
                    "change": "drafted" if status == DraftBatchStatus.DONE else status,
                    "golden_set": batch.golden_set.name,
                    "collection": batch.collection_name,
                    "passages": batch.done,
                    "drafted": batch.drafted,
                    "error": error,
                },
            )


def batches_to_resume() -> list[int]:
    """Batches in progress that no step has touched for a while: their message was lost."""
    since = timezone.now() - timedelta(seconds=STALE_SECONDS)
    return list(
        DraftBatch.objects.filter(
            status__in=[DraftBatchStatus.QUEUED, DraftBatchStatus.DRAFTING], updated_at__lt=since
        ).values_list("pk", flat=True)
    )


# --- reviewing ----------------------------------------------------------------------------

KEEP, ACCEPT, REJECT = "keep", "accept", "reject"


@dataclass(frozen=True)
class Decision:
    """What a curator decided for one draft, with the text as they left it."""

    draft_id: int
    action: str  # KEEP (perhaps edited), ACCEPT or REJECT
    question: str
    expected_answer: str


@dataclass
class Review:
    accepted: list[int] = field(default_factory=list)
    edited: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    version: Any = None  # the new GoldenSetVersion when any draft was accepted

    @property
    def changed(self) -> bool:
        return bool(self.accepted or self.edited or self.rejected)


def check_edit(question: str, answer: str) -> str:
    """Why a curator's text cannot join a golden set, or "" when it can (the rules of an
    uploaded file's rows)."""
    if not question:
        return "the question is empty"
    if len(question) > goldens.MAX_QUESTION_CHARS:
        return f"the question is longer than {goldens.MAX_QUESTION_CHARS:,} characters"
    if len(answer) > MAX_ANSWER_EDIT_CHARS:
        return f"the answer is longer than {MAX_ANSWER_EDIT_CHARS:,} characters"
    if goldens.looks_like_formula(question) or goldens.looks_like_formula(answer):
        return "it looks like a spreadsheet formula; write it as plain text"
    return ""


def golden_row(draft: Draft) -> GoldenRow:
    return GoldenRow(
        question=draft.question,
        expected_answer=draft.expected_answer,
        expected_sources=[{"document": draft.document_name, "page": draft.page}],
        answerable=True,
        language=draft.language,
        tags=[TAG],
    )
