"""Follow-up questions: the conversation so far, and a question that stands on its own.

A follow-up such as "and what about Finance?" searches badly on its own. When a question
in a conversation looks like it leans on what came before, the model rewrites it into a
standalone search query. The rewrite prompt continues the conversation's own prompt (same
prefix), so the KV cache built by the previous answer is reused for both the rewrite and
the answer.

History is rebuilt from what is stored, and only from what the person may still read: a
source whose document was deleted or whose access was revoked drops out of the rebuilt
turn (the cache is then not reused, which is the price of never replaying it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from appliance.access import visible_citations
from inference import language as languages
from inference import prompts
from inference.models import Question, QuestionStatus
from inference.retrieval import Hit

MAX_TURNS = 3
REWRITE_MAX_TOKENS = 48
_LEANING = re.compile(
    r"^(and|but|so|also|what about|how about|then|or)\b|\b(it|its|they|them|their|this|that|"
    r"these|those|he|she|his|her|there|same|above|previous|former|latter)\b",
    re.IGNORECASE,
)

REWRITE_REQUEST = (
    "Rewrite my next question so that it can be understood without this conversation: "
    "one standalone search query in the question's language, nothing else, no citations.\n"
    "Next question: {question}"
)


@dataclass(frozen=True)
class Turn:
    question: str
    user_message: str
    answer: str


def passage_key(source: prompts.Source) -> tuple[int, str]:
    """A passage is the same passage when it is the same text of the same document."""
    return (source.hit.document_id, source.text)


@dataclass
class History:
    """The conversation so far, and the passages it has shown the model, by number."""

    turns: list[Turn] = field(default_factory=list)
    known: dict[tuple[int, str], prompts.Source] = field(default_factory=dict)

    @property
    def next_n(self) -> int:
        return max((s.n for s in self.known.values()), default=0) + 1

    def number(
        self, packed: list[prompts.Source]
    ) -> tuple[list[prompts.Source], list[prompts.Source], list[int]]:
        """Give this turn's passages their numbers: one already shown keeps its number and
        is not shown again; a new one takes the next number. Returns (all of this turn's
        sources, those to show, the numbers of those named again)."""
        sources: list[prompts.Source] = []
        listed: list[prompts.Source] = []
        again: list[int] = []
        n = self.next_n
        for source in packed:
            seen = self.known.get(passage_key(source))
            if seen is not None:
                sources.append(seen)
                again.append(seen.n)
            else:
                fresh = prompts.Source(n, source.hit, source.text)
                n += 1
                sources.append(fresh)
                listed.append(fresh)
        return sources, listed, again


def history(question: Question) -> History:
    """The question's conversation so far: its last answered turns, oldest first, rebuilt
    exactly as the model read them, from what the person may still read."""
    if question.history:
        return given_history(question.history)
    so_far = History()
    if question.conversation_id is None:
        return so_far
    earlier = list(
        Question.objects.filter(
            conversation_id=question.conversation_id,
            status=QuestionStatus.DONE,
            created_at__lt=question.created_at,
        )
        .exclude(pk=question.pk)
        .order_by("-created_at")[:MAX_TURNS]
    )
    for turn in reversed(earlier):
        packed = [
            prompts.Source(c.n, hit_from_citation(c), c.snippet)
            for c in visible_citations(turn, question.user)
            if c.in_prompt
        ]
        listed = [s for s in packed if passage_key(s) not in so_far.known]
        again = [s.n for s in packed if passage_key(s) in so_far.known]
        for source in listed:
            so_far.known[passage_key(source)] = source
        language = languages.for_person(turn.text, question.user)
        message = prompts.user_message(turn.text, listed, again, language) if packed else turn.text
        so_far.turns.append(Turn(turn.text, message, turn.answer))
    return so_far


_MARKER = re.compile(r" ?\[\d{1,3}\]")


def given_history(turns: list[dict[str, Any]]) -> History:
    """The conversation so far as the asker's client sent it (``Question.history``): its
    last turns, oldest first, as plain text. The passages those answers cited are not
    shown again, so their markers are taken out: this turn's passages are numbered from
    [1] again, and an old "[1]" must not pass for one of them."""
    so_far = History()
    for turn in turns[-MAX_TURNS:]:
        text = str(turn.get("question") or "")
        answer = _MARKER.sub("", str(turn.get("answer") or "")).strip()
        so_far.turns.append(Turn(text, text, answer))
    return so_far


def hit_from_citation(citation: Any) -> Hit:
    return Hit(
        chunk_id=citation.chunk_id or 0,
        document_id=citation.document_id,
        ordinal=0,
        title=citation.title,
        page=citation.page,
        section="",
        text=citation.snippet,
        score=1.0,
    )


def leans_on_history(text: str) -> bool:
    return len(text.split()) <= 6 or bool(_LEANING.search(text))


def search_queries(model: Any, turns: list[Turn], text: str) -> list[str]:
    """Queries to search with, best first: the question itself; or, for a follow-up, its
    standalone rewrite and then the previous question joined with it."""
    if not turns or not leans_on_history(text):
        return [text]
    joined = f"{turns[-1].question} {text}"
    rewritten = standalone_query(model, turns, text)
    return [rewritten, joined] if rewritten != joined else [joined]


def standalone_query(model: Any, turns: list[Turn], text: str) -> str:
    """A rewrite of a follow-up that stands on its own."""
    prompt = model.format.render(
        prompts.SYSTEM,
        prompts.INSTRUCTIONS,
        REWRITE_REQUEST.format(question=text),
        [(turn.user_message, turn.answer) for turn in turns],
    )
    reader = model.format.reader()
    parts: list[str] = []
    for piece in model.stream(
        prompt,
        max_tokens=REWRITE_MAX_TOKENS,
        temperature=0.0 if not _is_harmony() else 1.0,
        top_p=1.0,
    ):
        parts.extend(p.text for p in reader.feed(piece) if p.kind == "answer")
    parts.extend(p.text for p in reader.close() if p.kind == "answer")
    rewritten = " ".join("".join(parts).split()).strip().strip('"')
    rewritten = re.sub(r"\[\d+\]", "", rewritten)[:500]
    # A model that cannot rewrite still gives retrieval the thread of the conversation.
    if len(rewritten) < 3:
        return f"{turns[-1].question} {text}"
    return rewritten


def _is_harmony() -> bool:
    return settings.LLM_CHAT_FORMAT == "harmony"
