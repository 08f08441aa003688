"""Reading whole documents for a question, map-reduce, within the context budget.

For the documents a question is about (``inference.documents``), in the answer worker:

1. ``live_passages``: the document's live chunks, in order, through the access policy
   (``Chunk.objects.visible_to``) and the question's scope;
2. ``group_parts``: consecutive passages grouped into parts of at most ``part_budget``
   tokens: ``CONTEXT_BUDGET_TOKENS``, or less when the model's context cannot hold a part
   with its prompt and notes;
3. map: the model writes notes on each part for the question. A ``progress`` event goes to
   the asker before each part, and the stop button is honoured between parts (and between
   tokens within one);
4. collapse: while the notes together outgrow the budget, consecutive notes of a document
   are merged into fewer;
5. the notes, each labelled with the pages it covers, become the numbered sources the
   answer is written from (reduce, in ``inference.answering``), so citations name the
   document and the pages the cited note came from.

A part the model writes nothing about keeps the start of its own text as its note, so a
readable document is never answered with a refusal because a weak model was silent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from inference import prompts
from inference.documents import Focus, Target
from inference.models import Question
from inference.retrieval import Hit
from ingest.models import Chunk

# Notes on one part are at most this share of the budget, so several fit one prompt.
NOTES_PER_PROMPT = 6
MIN_NOTE_TOKENS = 40
MIN_PART_TOKENS = 64
# Room kept for a document's title and the part's label in each prompt.
LABEL_TOKENS = 48

# (prompt, most tokens to write) -> the answer part of what the model wrote
Write = Callable[[str, int], str]
# (parts done, parts in all, "reading" or "combining", title of the document being read)
Progress = Callable[[int, int, str, str], None]
CountTokens = Callable[[str], int]


@dataclass(frozen=True)
class Passage:
    chunk_id: int
    ordinal: int
    page: int | None
    text: str


def live_passages(user: Any, document_id: int, scope: Sequence[int] | None) -> list[Passage]:
    chunks = Chunk.objects.visible_to(user).filter(document_id=document_id)
    if scope:
        chunks = chunks.filter(collection_id__in=[int(i) for i in scope])
    rows = chunks.order_by("ordinal").values_list("pk", "ordinal", "page", "text")
    return [Passage(*row) for row in rows]


def fit(text: str, count_tokens: CountTokens, budget: int) -> str:
    """``text``, cut at the end until it is at most ``budget`` tokens."""
    cost = count_tokens(text)
    while cost > budget and text:
        text = text[: max(0, int(len(text) * budget / cost * 0.95) - 1)]
        cost = count_tokens(text)
    return text


def group_parts(
    passages: list[Passage], count_tokens: CountTokens, budget: int
) -> list[list[Passage]]:
    """Consecutive passages, in order, grouped into parts of at most ``budget`` tokens. A
    passage longer than the budget on its own is cut to it and read alone."""
    parts: list[list[Passage]] = []
    current: list[Passage] = []
    used = 0
    for passage in passages:
        cost = count_tokens(passage.text) + 1  # the line break between passages
        if cost > budget:
            passage = Passage(
                passage.chunk_id,
                passage.ordinal,
                passage.page,
                fit(passage.text, count_tokens, budget - 1),
            )
            cost = budget
        if current and used + cost > budget:
            parts.append(current)
            current, used = [], 0
        current.append(passage)
        used += cost
    if current:
        parts.append(current)
    return parts


def where(pages: tuple[int | None, int | None], parts: tuple[int, int], of: int) -> str:
    """Where a stretch of a document lies: its pages, or its parts when it has none."""
    first, last = pages
    if first is not None and last is not None:
        return f"page {first}" if first == last else f"pages {first}-{last}"
    if of == 1:
        return "the whole text"
    start, end = parts
    return f"part {start} of {of}" if start == end else f"parts {start}-{end} of {of}"


@dataclass(frozen=True)
class Note:
    """Notes on a stretch of one document (one part, or several merged)."""

    document: Target
    first: Passage  # where the citation's link leads
    pages: tuple[int | None, int | None]
    parts: tuple[int, int]
    of: int
    text: str

    @property
    def labelled(self) -> str:
        return f"Notes on {where(self.pages, self.parts, self.of)}: {self.text}"


@dataclass
class Reading:
    sources: list[prompts.Source] = field(default_factory=list)  # the notes, numbered
    read: list[Hit] = field(default_factory=list)  # every passage read, for the record
    stopped: bool = False


def part_budget(model: Any, question: str) -> int:
    """Tokens of document text that one prompt may hold: the context budget, or less when
    the model's context cannot hold a part with its prompt and the notes on it."""
    context = min(settings.LLM_CONTEXT_TOKENS, getattr(model, "context", 0) or 10**9)
    frame = model.format.render(
        prompts.SYSTEM,
        prompts.READING_INSTRUCTIONS,
        prompts.reading_message(question, "", "", "", 0),
        [],
    )
    room = context - model.count_tokens(frame) - settings.LLM_MAX_ANSWER_TOKENS - LABEL_TOKENS
    return max(MIN_PART_TOKENS, min(settings.CONTEXT_BUDGET_TOKENS, room))


def _writing_tokens(note_tokens: int) -> int:
    # gpt-oss reasons before it writes, within the same allowance: give it the answer's.
    if settings.LLM_CHAT_FORMAT == "harmony":
        return settings.LLM_MAX_ANSWER_TOKENS
    return min(settings.LLM_MAX_ANSWER_TOKENS, note_tokens)


def read(
    question: Question,
    model: Any,
    found: Focus,
    write: Write,
    progress: Progress,
    stop: threading.Event,
) -> Reading:
    budget = part_budget(model, question.text)
    note_tokens = max(MIN_NOTE_TOKENS, budget // NOTES_PER_PROMPT)
    words = max(20, note_tokens * 2 // 3)
    count = model.count_tokens
    reading = Reading()
    parts: list[tuple[Target, list[Passage], int, int]] = []
    for target in found.documents:
        grouped = group_parts(
            live_passages(question.user, target.id, question.scope), count, budget
        )
        parts.extend((target, part, n, len(grouped)) for n, part in enumerate(grouped, start=1))
    notes: list[Note] = []
    for done, (target, part, n, of) in enumerate(parts):
        if stop.is_set():
            reading.stopped = True
            return reading
        progress(done, len(parts), "reading", target.title)
        pages = _pages(part)
        text = "\n".join(p.text for p in part)
        prompt = model.format.render(
            prompts.SYSTEM,
            prompts.READING_INSTRUCTIONS,
            prompts.reading_message(
                question.text, target.title, where(pages, (n, n), of), text, words
            ),
            [],
        )
        written = fit(write(prompt, _writing_tokens(note_tokens)).strip(), count, note_tokens)
        notes.append(
            Note(target, part[0], pages, (n, n), of, written or fit(text, count, note_tokens))
        )
        reading.read.extend(_hit(target, p, "") for p in part)
    if stop.is_set():  # while the last part was read
        reading.stopped = True
        return reading
    if parts:
        progress(len(parts), len(parts), "reading", parts[-1][0].title)
    merged = combine(question.text, model, notes, write, progress, stop, budget, note_tokens)
    if merged is None:
        reading.stopped = True
        return reading
    reading.sources = [
        prompts.Source(n, _hit(note.document, note.first, note.labelled), note.labelled)
        for n, note in enumerate(merged, start=1)
    ]
    return reading


def combine(
    question: str,
    model: Any,
    notes: list[Note],
    write: Write,
    progress: Progress,
    stop: threading.Event,
    budget: int,
    note_tokens: int,
) -> list[Note] | None:
    """Merge consecutive notes of each document until all of them fit one prompt (None
    when stopped). Each round merges batches that fit one prompt each, so it ends."""
    count = model.count_tokens
    words = max(20, note_tokens * 2 // 3)
    while sum(count(n.labelled) + 8 for n in notes) > budget:
        batches = _batches(notes, count, budget)
        if all(len(batch) == 1 for batch in batches):
            break  # one note per document left: nothing more to merge
        merged: list[Note] = []
        to_merge = sum(1 for batch in batches if len(batch) > 1)
        done = 0
        for batch in batches:
            if len(batch) == 1:
                merged.append(batch[0])
                continue
            if stop.is_set():
                return None
            title = batch[0].document.title
            progress(done, to_merge, "combining", title)
            prompt = model.format.render(
                prompts.SYSTEM,
                prompts.COMBINING_INSTRUCTIONS,
                prompts.combining_message(question, title, [n.labelled for n in batch], words),
                [],
            )
            written = fit(write(prompt, _writing_tokens(note_tokens)).strip(), count, note_tokens)
            fallback = fit(" ".join(n.text for n in batch), count, note_tokens)
            merged.append(_spanning(batch, written or fallback))
            done += 1
        progress(to_merge, to_merge, "combining", merged[-1].document.title)
        notes = merged
    return notes


def _batches(notes: list[Note], count: CountTokens, budget: int) -> list[list[Note]]:
    """Consecutive notes of one document, as many as fit one prompt together."""
    batches: list[list[Note]] = []
    used = 0
    for note in notes:
        cost = count(note.labelled) + 8
        last = batches[-1] if batches else None
        if last and last[0].document == note.document and used + cost <= budget:
            last.append(note)
            used += cost
        else:
            batches.append([note])
            used = cost
    return batches


def _pages(passages: Sequence[Any]) -> tuple[int | None, int | None]:
    known = [p.page for p in passages if p.page is not None]
    return (min(known), max(known)) if known else (None, None)


def _spanning(batch: list[Note], text: str) -> Note:
    pages = [p for n in batch for p in n.pages if p is not None]
    first, last = batch[0], batch[-1]
    return Note(
        first.document,
        first.first,
        (min(pages), max(pages)) if pages else (None, None),
        (first.parts[0], last.parts[1]),
        first.of,
        text,
    )


def _hit(target: Target, passage: Passage, text: str) -> Hit:
    return Hit(
        chunk_id=passage.chunk_id,
        document_id=target.id,
        ordinal=passage.ordinal,
        title=target.title,
        page=passage.page,
        section="",
        text=text,
        score=1.0,
    )
