"""Questions about whole documents, on the real database, Redis, retrieval and small model,
answered in this process as the answer worker would (see tests/e2e/test_documents.py for
the same through the real worker).

The HR memo is readable by alice (HR) and not by bob (Finance): asked about by its exact
title, picked by id, or after its access is lost, bob gets exactly the refusal a missing
document gets, and no event of his answer carries a byte of it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from appliance import redis_client
from appliance.accounts import actions as accounts
from appliance.accounts.models import Role
from inference import actions as inference_actions
from inference import conversation, documents, events, prompts, reading
from inference.conversation import History
from inference.models import Question
from ingest.actions import create_collection
from ingest.models import Chunk, Collection, Document
from tests.conftest import ClientFor
from tests.test_canary import answer_now, ingest_text

pytestmark = pytest.mark.django_db

TITLE = "Quokka restructuring memo"
SECRET = "purple elephant 7431"
MISSING = 987654321
PARAGRAPHS = [
    f"The secret phrase of this memo is {SECRET}. The quokka restructuring memo is "
    "confidential to HR.",
    "Restructuring timeline: the quokka team moves to the second floor in March. "
    "Desks are packed by the last Friday of February.",
    "Deadlines: the new reporting lines apply from 1 April; objections reach HR by 15 March.",
    "Budget: the move costs 12,000 euros, paid from the facilities budget of 2026.",
]


@dataclass
class Library:
    hr: Collection
    memo: Document
    finance: Collection
    budget: Document


@pytest.fixture(autouse=True)
def short_answers(settings: Any) -> None:
    # The mechanics are what is tested; a few tokens of the model's text suffice.
    settings.LLM_MAX_ANSWER_TOKENS = 24


@pytest.fixture
def library(people: Any) -> Library:
    redis_client.client().flushdb()  # ids start again in each test database
    hr = create_collection(None, "HR restructuring", people.hr)
    finance = create_collection(None, "Budgets", people.finance)
    fiona = accounts.create_or_update_user(None, "fiona")[0]
    accounts.add_membership(None, fiona, people.finance, Role.CURATOR)
    memo = ingest_text(people.carol, hr, f"{TITLE}.txt", "\n\n".join(PARAGRAPHS))
    budget = ingest_text(
        fiona, finance, "budget.txt", "The travel budget for 2026 is 40,000 euros."
    )
    return Library(hr, memo, finance, budget)


def stream_of(question: Question) -> list[tuple[str, dict[str, Any]]]:
    """The answer's events (its places in the queue left out: they depend on the order of
    asking)."""
    return [(kind, data) for _, kind, data in events.read(question) if kind != "queued"]


def assert_nothing_of_the_memo(question: Question, memo: Document) -> None:
    raw = json.dumps(stream_of(question), ensure_ascii=False)
    assert SECRET not in raw and TITLE not in raw and "quokka" not in raw.lower(), raw
    memo_chunks = set(Chunk.objects.filter(document=memo).values_list("pk", flat=True))
    assert not memo_chunks & set(question.retrieved_chunk_ids)
    assert not question.citations.exists()
    assert question.documents == []


# --- refusals -------------------------------------------------------------------------------


def test_bob_summarising_an_hr_document_by_its_title_gets_the_missing_documents_refusal(
    people: Any, library: Library
) -> None:
    aimed = inference_actions.ask(people.bob, f"Summarise the {TITLE}")
    missing = inference_actions.ask(people.bob, "Summarise the Wombat merger memo")
    for question in (aimed, missing):
        answer_now(question)
        assert question.answer == prompts.NOT_FOUND
        assert question.grounded is False
        assert_nothing_of_the_memo(question, library.memo)
    # Event for event the same answer: nothing tells the memo exists.
    assert stream_of(aimed) == stream_of(missing)
    assert [kind for kind, _ in stream_of(aimed)] == ["sources", "token", "done"]


def test_bob_picking_the_hr_document_is_refused_like_a_missing_id(
    people: Any, library: Library, api_signed_in: ClientFor, signed_in: ClientFor
) -> None:
    api = api_signed_in(people.bob)

    def ask(document_id: int) -> Any:
        body = {"question": "What is this document about?", "document_id": document_id}
        return api.post("/api/v1/questions", json.dumps(body), content_type="application/json")

    forged, missing = ask(library.memo.pk), ask(MISSING)
    assert forged.status_code == missing.status_code == 400
    assert forged.content == missing.content
    page = signed_in(people.bob)
    page_forged = page.post("/", {"question": "Summary?", "document_id": library.memo.pk})
    page_missing = page.post("/", {"question": "Summary?", "document_id": MISSING})
    assert page_forged.get("Location") == page_missing.get("Location")
    assert not Question.objects.filter(user=people.bob).exists()


def test_a_picked_document_that_is_no_longer_readable_is_refused_like_a_missing_one(
    people: Any, library: Library
) -> None:
    """Access can go between asking and answering: the worker checks it again."""
    text = "What is this document about?"
    lost = Question.objects.create(user=people.bob, text=text, documents=[library.memo.pk])
    missing = Question.objects.create(user=people.bob, text=text, documents=[MISSING])
    for question in (lost, missing):
        answer_now(question)
        assert question.answer == prompts.NOT_FOUND
        assert_nothing_of_the_memo(question, library.memo)
    assert stream_of(lost) == stream_of(missing)


def test_asking_about_a_document_checks_the_chosen_collections_and_readiness(
    people: Any, library: Library
) -> None:
    other = create_collection(None, "HR other", people.hr)
    with pytest.raises(inference_actions.InvalidQuestion, match="not in the collections you"):
        inference_actions.ask(people.alice, "Summary?", [other.pk], None, library.memo.pk)
    Document.objects.filter(pk=library.memo.pk).update(live_version=0)
    with pytest.raises(inference_actions.InvalidQuestion, match="still being read"):
        inference_actions.ask(people.alice, "Summary?", None, None, library.memo.pk)


def test_the_api_refuses_a_document_id_that_is_not_a_number(
    people: Any, library: Library, api_signed_in: ClientFor
) -> None:
    response = api_signed_in(people.alice).post(
        "/api/v1/questions",
        json.dumps({"question": "Summary?", "document_id": True}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "document_id" in response.json()["error"]


# --- which documents ------------------------------------------------------------------------


def test_a_title_names_a_document_only_for_people_who_may_read_it(
    people: Any, library: Library
) -> None:
    text = f"Summarise the {TITLE.lower()}"
    for_alice = inference_actions.ask(people.alice, text)
    for_bob = inference_actions.ask(people.bob, text)
    assert documents.focus(for_alice, History()) == documents.Focus(
        (documents.Target(library.memo.pk, TITLE),), whole=True
    )
    assert documents.focus(for_bob, History()) == documents.Focus()


def test_the_scope_of_the_question_still_applies_to_names(people: Any, library: Library) -> None:
    other = create_collection(None, "HR other", people.hr)
    ingest_text(people.carol, other, "canteen.txt", "The canteen opens at eight.")
    narrowed = inference_actions.ask(people.alice, f"Summarise the {TITLE}", [other.pk])
    assert documents.focus(narrowed, History()).documents == ()


def test_a_question_naming_a_document_for_one_fact_searches_first(
    people: Any, library: Library
) -> None:
    asked = inference_actions.ask(people.alice, f"When does the team in the {TITLE} move?")
    found = documents.focus(asked, History())
    assert found.documents and not found.whole


def test_this_document_means_the_only_one_in_the_scope(people: Any, library: Library) -> None:
    asked = inference_actions.ask(people.bob, "What is this document about?")
    assert documents.focus(asked, History()).documents == (
        documents.Target(library.budget.pk, "budget"),
    )
    two = inference_actions.ask(people.alice, "What is this document about?")
    other = create_collection(None, "HR other", people.hr)
    ingest_text(people.carol, other, "canteen.txt", "The canteen opens at eight.")
    assert documents.focus(two, History()).documents == ()


# --- reading whole documents ----------------------------------------------------------------


def test_alice_gets_a_summary_of_the_memo_read_whole_with_its_citations(
    people: Any, library: Library
) -> None:
    asked = inference_actions.ask(people.alice, f"Summarise the {TITLE}")
    answer_now(asked)
    kinds = [kind for kind, _ in stream_of(asked)]
    assert kinds[0] == "progress" and kinds[-1] == "done"
    assert "sources" in kinds and kinds.index("sources") > kinds.index("progress")
    progress = [data for kind, data in stream_of(asked) if kind == "progress"]
    assert progress[-1]["done"] == progress[-1]["total"] >= 1
    assert progress[0]["title"] == TITLE
    (sources,) = [data["sources"] for kind, data in stream_of(asked) if kind == "sources"]
    assert sources and all(s["document_id"] == library.memo.pk for s in sources)
    assert asked.grounded is True and asked.answer != prompts.NOT_FOUND
    assert asked.documents == [library.memo.pk]
    memo_chunks = set(Chunk.objects.filter(document=library.memo).values_list("pk", flat=True))
    assert set(asked.retrieved_chunk_ids) == memo_chunks  # every passage was read
    citations = list(asked.citations.all())
    assert citations and all(c.document_id == library.memo.pk for c in citations)
    assert all(c.chunk_id in memo_chunks for c in citations)


def test_a_follow_up_stays_with_the_document_of_the_conversation(
    people: Any, library: Library
) -> None:
    first = inference_actions.ask(
        people.alice, "What is this document about?", None, None, library.memo.pk
    )
    answer_now(first)
    assert first.documents == [library.memo.pk] and first.grounded
    follow = inference_actions.ask(people.alice, "and its deadlines?", None, first.conversation_id)
    found = documents.focus(follow, conversation.history(follow))
    assert found.documents == (documents.Target(library.memo.pk, TITLE),) and found.whole


@dataclass
class Words:
    """A stand-in model that counts words as tokens, for reading without generation."""

    context: int = 8192

    class format:
        @staticmethod
        def render(system: str, instructions: str, user: str, history: list[Any]) -> str:
            return "\n".join([system, instructions, user])

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def test_a_long_document_is_read_part_by_part_with_progress_and_stops_between_parts(
    people: Any, library: Library, settings: Any
) -> None:
    settings.CONTEXT_BUDGET_TOKENS = 100  # the smallest budget: the memo needs several parts
    long_memo = ingest_text(people.carol, library.hr, "long.txt", "\n\n".join(PARAGRAPHS * 12))
    asked = inference_actions.ask(people.alice, "Summarise it", None, None, long_memo.pk)
    about = documents.focus(asked, History())
    seen: list[tuple[int, int, str]] = []
    written: list[str] = []

    def write(prompt: str, max_tokens: int) -> str:
        written.append(prompt)
        return "the quokka team moves"

    whole = reading.read(
        asked, Words(), about, write, lambda d, t, s, _: seen.append((d, t, s)), threading.Event()
    )
    reading_steps = [(d, t) for d, t, s in seen if s == "reading"]
    total = reading_steps[0][1]
    assert total >= 3
    assert reading_steps == [(n, total) for n in range(total + 1)]
    assert whole.sources and not whole.stopped
    assert sum(len(s.text.split()) + 8 for s in whole.sources) <= 100
    # A stop between parts: the part being read is the last one.
    stop = threading.Event()
    seen.clear()
    calls: list[str] = []

    def write_then_stop(prompt: str, max_tokens: int) -> str:
        calls.append(prompt)
        if len(calls) == 2:
            stop.set()
        return "notes"

    stopped = reading.read(
        asked, Words(), about, write_then_stop, lambda d, t, s, _: seen.append((d, t, s)), stop
    )
    assert stopped.stopped and len(calls) == 2
    assert [d for d, _, _ in seen] == [0, 1]


def test_the_ask_page_offers_only_readable_documents(
    people: Any, library: Library, signed_in: ClientFor
) -> None:
    alice = signed_in(people.alice).get("/")
    assert TITLE.encode() in alice.content and b'name="document_id"' in alice.content
    bob = signed_in(people.bob).get("/")
    assert TITLE.encode() not in bob.content and b"budget" in bob.content
    asked = signed_in(people.alice).post(
        "/", {"question": "What is this about?", "document_id": library.memo.pk}
    )
    assert asked.status_code == 302
    assert Question.objects.get(user=people.alice).documents == [library.memo.pk]
