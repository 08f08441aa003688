"""Which documents a question is about as a whole.

"What is this document about?", "Summarise the travel policy", "List the deadlines in this
contract", "Compare version 2 and version 3": no single passage is like such a question,
so search finds nothing above the relevance floor and the plain refusal would follow. The
answer worker reads such documents whole instead (``inference.reading``); this module
decides which, in this order:

1. the document the asker picked on the Ask page or through the API (``Question.documents``
   set when asking): always read whole, and refused like a missing one when the asker may
   no longer read it;
2. documents the question names: its words against the titles and file names of the
   documents the asker may read within the question's scope;
3. "this document" (paper, contract...) when the scope holds exactly one document;
4. the documents of the conversation's last answer, for a follow-up that leans on it.

Every document comes through ``Document.objects.visible_to``: one the asker may not read is
never matched and never named, so a question about it gets the same refusal as a question
about a document that does not exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from inference import conversation
from inference.conversation import History
from inference.models import Question, QuestionStatus
from ingest.models import Document

# A comparison reads at most this many documents; anything else reads the best one.
MAX_DOCUMENTS = 3
# Documents whose names are compared with the question, after a first cut in SQL.
MAX_CANDIDATES = 2000
MAX_CANDIDATE_WORDS = 16


@dataclass(frozen=True)
class Target:
    id: int
    title: str


@dataclass(frozen=True)
class Focus:
    """The documents a question is about. ``whole``: read them without searching first (the
    asker picked them, asked about them as a whole, or the conversation is about them);
    otherwise they are read only when search finds no passage above the relevance floor.
    ``unavailable``: the asker picked documents of which none is readable now."""

    documents: tuple[Target, ...] = ()
    whole: bool = False
    unavailable: bool = False


def focus(question: Question, history: History) -> Focus:
    readable = readable_documents(question.user, question.scope)
    if question.documents:
        picked = _targets(readable.filter(pk__in=[int(i) for i in question.documents]))
        return Focus(picked, whole=True, unavailable=not picked)
    text = question.text
    named = named_documents(text, _candidates(readable, text))
    if named:
        return Focus(named, whole=asks_about_whole(text))
    if _THIS_DOCUMENT.search(text):
        only = _targets(readable[:2])
        if len(only) == 1:
            return Focus(only, whole=True)
    if history.turns and conversation.leans_on_history(text):
        earlier = _documents_of_last_answer(question)
        carried = _targets(readable.filter(pk__in=earlier)) if earlier else ()
        if carried:
            return Focus(carried, whole=True)
    return Focus()


def readable_documents(user: Any, scope: list[int] | None) -> QuerySet:
    """Documents ``user`` may read that answer (a live version), within ``scope``."""
    documents = Document.objects.visible_to(user).filter(live_version__gt=0)
    if scope:
        documents = documents.filter(collection_id__in=[int(i) for i in scope])
    return documents.order_by("-created_at", "-id")


def _targets(documents: QuerySet) -> tuple[Target, ...]:
    return tuple(Target(pk, title) for pk, title in documents.values_list("pk", "title"))


def _documents_of_last_answer(question: Question) -> list[int]:
    if question.conversation_id is None:
        return []
    earlier = (
        Question.objects.filter(
            conversation_id=question.conversation_id,
            user_id=question.user_id,
            status=QuestionStatus.DONE,
            created_at__lt=question.created_at,
        )
        .exclude(pk=question.pk)
        .order_by("-created_at")
        .values_list("documents", flat=True)
        .first()
    )
    return [int(i) for i in earlier or []]


# --- what the question asks ----------------------------------------------------------------

_WHOLE = re.compile(
    r"\b(summar(y|ies|i[sz]\w*)|overview|outline|gist|tl;?dr|abstract"
    r"|main (topic|point|idea|message|finding|theme|argument)s?"
    r"|key (point|takeaway|finding|fact|term|date)s?"
    r"|what (is|are|was) (this|that|the|these) .{0,80}\babout"
    r"|what does .{0,80}\b(say|cover|contain|describe)"
    r"|list (all|every|each|the)\b"
    r"|compar\w*|differences?|differ|versus|vs\b|what changed"
    r"|zusammenfass\w*|fass\w* .{0,80}\bzusammen|überblick|oppsummer\w*|sammendrag"
    r"|résum\w*|resum\w*)",
    re.IGNORECASE,
)
_COMPARES = re.compile(
    r"\b(compar\w*|differences?|differ|versus|vs\b|between|changed|vergleich\w*|sammenlign\w*)",
    re.IGNORECASE,
)
_THIS_DOCUMENT = re.compile(
    r"\b(this|that|the attached|my)\s+(document|paper|file|report|text|article|memo|contract"
    r"|policy|presentation|slides|spreadsheet|book|manual|handbook|guide|letter|e-?mail|pdf)\b",
    re.IGNORECASE,
)


def asks_about_whole(text: str) -> bool:
    """Whether the question asks about a document as a whole (a summary, its main points,
    a list of all its deadlines, a comparison) rather than for one fact in it."""
    return bool(_WHOLE.search(text))


def compares(text: str) -> bool:
    return bool(_COMPARES.search(text))


# --- names ----------------------------------------------------------------------------------

# Words that name no document: function words of the languages the appliance serves most,
# and the verbs of asking about one.
STOPWORDS = frozenset(
    """
    a an the of and or in on at to for from by with about into over under as is are was were
    be been it its this that these those what which who whom how when where why do does did
    me my our your their i we you they please can could would should will give tell show
    list summarise summarize summary summarising summarizing compare comparison between
    main key all any every each some topic point say says said write explain describe
    der die das den dem des ein eine einen und oder ist sind von zu mit im für auf
    og i på av en et er det som til med den de om fra
    le la les un une des et ou est du au aux pour sur dans avec
    """.split()  # noqa: SIM905 - a list of words reads best as text
)
_ALIASES = {"v": "version", "ver": "version", "vers": "version", "rev": "revision"}
_WORD = re.compile(r"[^\W_]+")
_DIGITS_OR_NOT = re.compile(r"\d+|\D+")


def words(text: str) -> list[str]:
    """The text's words, lower case, letters and digits apart ("v2" is "version 2"), plurals
    folded, so "Travel-Policies_v2.pdf" and "travel policy version 2" share their words."""
    found: list[str] = []
    for word in _WORD.findall(text.lower()):
        for piece in _DIGITS_OR_NOT.findall(word):
            found.append(_normal(piece))
    return found


def _normal(word: str) -> str:
    if word.isdigit():
        return word.lstrip("0") or "0"
    word = _ALIASES.get(word, word)
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def significant(found: list[str]) -> list[str]:
    return [w for w in found if w not in STOPWORDS]


def name_forms(title: str, file_name: str) -> list[list[str]]:
    """The significant words of a document's title and of its file name (without folders
    and extension), each once."""
    base = file_name.rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    forms: list[list[str]] = []
    for form in (title, stem):
        named = significant(words(form))
        if named and named not in forms:
            forms.append(named)
    return forms


def name_score(question_words: list[str], title: str, file_name: str) -> float:
    """How clearly the question (its significant words) names the document; 0 when it does
    not. A name counts when the question holds it whole, or holds a run of at least two of
    its words in order and half of its words or more ("travel policy" names "Travel policy
    2024 (final)"). A name of one word counts when it is a word, not a number. The score is
    the share of the name's words the question holds, then the length of the run: "travel
    policy appendix" beats "travel policy" for a question naming the appendix."""
    best = 0.0
    asked = set(question_words)
    for form in name_forms(title, file_name):
        run = _longest_common_run(form, question_words)
        if len(form) == 1 and (run < 1 or form[0].isdigit() or len(form[0]) < 3):
            continue
        share = sum(1 for w in form if w in asked) / len(form)
        if run == len(form) or (run >= 2 and share >= 0.5):
            best = max(best, share + run / 100)
    return best


def _longest_common_run(a: list[str], b: list[str]) -> int:
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


@dataclass(frozen=True)
class Candidate:
    id: int
    title: str
    file_name: str


def named_documents(text: str, candidates: list[Candidate]) -> tuple[Target, ...]:
    """The documents among ``candidates`` (newest first) that the question names: the best
    named one; for a comparison, those whose every word the question holds (up to
    MAX_DOCUMENTS), or else the best two."""
    question_words = significant(words(text))
    scored = [
        (score, index, candidate)
        for index, candidate in enumerate(candidates)
        if (score := name_score(question_words, candidate.title, candidate.file_name)) > 0
    ]
    # The best score first; among equals the newest (the candidates come newest first).
    scored.sort(key=lambda item: (-item[0], item[1]))
    chosen = scored[:1]
    if compares(text):
        # "Compare version 2 and version 3" names both in full, and version 1 only in part.
        chosen = [item for item in scored if item[0] >= 1][:MAX_DOCUMENTS]
        if len(chosen) < 2:
            chosen = scored[:2]
    return tuple(Target(c.id, c.title) for _, _, c in chosen)


def _candidates(readable: QuerySet, text: str) -> list[Candidate]:
    """Readable documents whose title or file name shares a word (its first five letters,
    so plurals match) with the question: a first cut in SQL, scored in ``named_documents``."""
    cut = []
    for word in dict.fromkeys(significant(words(text))):
        if len(word) >= 3 and not word.isdigit():
            cut.append(word[:5])
    if not cut:
        return []
    shares_a_word = Q()
    for piece in cut[:MAX_CANDIDATE_WORDS]:
        shares_a_word |= Q(title__icontains=piece) | Q(original_name__icontains=piece)
    rows = readable.filter(shares_a_word).values_list("pk", "title", "original_name")
    return [Candidate(*row) for row in rows[:MAX_CANDIDATES]]
