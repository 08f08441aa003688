"""The canary: a document in HR that nobody outside HR may ever see a byte of.

As an employee of Finance (bob), an outsider (oscar), an auditor (dave) and an operator
(erin), every route of the appliance is called (the URLconf is walked, so a new route is
covered the day it is added) with the canary's ids and with ids that do not exist, by GET,
POST and DELETE: the canary's text and title never appear, and the answer for its ids is
byte for byte the answer for a missing id. Then each of them asks questions aimed at it,
answered by the real retrieval and model, including with forged ``collection_ids``.
alice, an HR employee, is the control: the same question finds the canary for her.
The doors other programs use (the OpenAI-compatible API, every streamed chunk included, and
the MCP server's search and fetch) get the same checks against the real processes in
``tests/e2e/test_canary_doors.py``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client, TestCase
from django.urls import URLPattern, URLResolver, get_resolver

from appliance import redis_client
from appliance.accounts import actions as accounts
from appliance.accounts.models import Role
from inference import actions as inference_actions
from inference import answering, events
from inference.models import Citation, Conversation, Feedback, Question
from ingest import actions as ingest_actions
from ingest import pipeline
from ingest.actions import create_collection
from ingest.models import Chunk, Collection, Document
from tests.conftest import ClientFor

pytestmark = pytest.mark.django_db

PHRASE = "purple elephant 7431"
TITLE = "Quokka restructuring memo"
QUESTION = "What is the secret canary phrase in the quokka restructuring memo?"
MISSING = 987654321

# Route parameters that name something the canary lives in or is reached through: for
# these, the canary's id and a missing id must get identical answers.
CANARY_PARAMS = {
    "collection_id",
    "document_id",
    "question_id",
    "conversation_id",
    "chunk_id",
    "citation_id",
    "feedback_id",
}
# Parameters that name something else (people, memberships): only "no canary byte" holds.
OTHER_PARAMS = {"user_id", "membership_id", "golden_set_id", "run_id", "mapping_id"}
# Routes that end the caller's own session (and take no id): calling them would only sign
# the attacker out for the rest of the walk.
SIGNS_OUT = {"logout/"}
# Values for string parameters, per name.
STRING_SAMPLES = {
    "action": ["delete", "retry", "cancel", "file"],
    "active": ["deactivate"],
    "fmt": ["html", "csv", "json"],
    "model_id": ["appliance-rag", "gpt-4o"],
}

_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern


def routes(ids: dict[str, int]) -> Iterator[tuple[str, str]]:
    """(route, URL) for every route of the appliance, parameters filled from ``ids``.
    Fails on a parameter no test knows about, so new routes get classified."""
    for route, _pattern in _walk(get_resolver().url_patterns):
        if route.startswith("^") or "(?P" in route:
            raise AssertionError(f"a regex route the canary test cannot fill: {route}")
        urls = [route]
        for converter, name in _PARAM.findall(route):
            if converter == "int":
                if name not in CANARY_PARAMS | OTHER_PARAMS:
                    raise AssertionError(f"classify the parameter {name!r} of {route}")
                value = ids.get(name, MISSING)
                urls = [u.replace(f"<int:{name}>", str(value)) for u in urls]
            else:
                if name not in STRING_SAMPLES:
                    raise AssertionError(f"give samples for the parameter {name!r} of {route}")
                urls = [
                    u.replace(f"<{converter}:{name}>" if converter else f"<{name}>", sample)
                    for u in urls
                    for sample in STRING_SAMPLES[name]
                ]
        for url in urls:
            yield route, "/" + url


@dataclass
class Canary:
    collection: Collection
    document: Document
    chunk: Chunk
    question: Question  # alice's, answered from the canary
    citation: Citation
    finance: Collection
    budget: Document
    feedback: Feedback  # alice's on her question, shared with HR's curators

    def ids(self, canary: bool) -> dict[str, int]:
        other = {"user_id": 0, "membership_id": MISSING}
        if not canary:
            return {name: MISSING for name in CANARY_PARAMS} | other
        return {
            "collection_id": self.collection.pk,
            "document_id": self.document.pk,
            "question_id": self.question.pk,
            "conversation_id": self.question.conversation_id or 0,
            "chunk_id": self.chunk.pk,
            "citation_id": self.citation.pk,
            "feedback_id": self.feedback.pk,
        } | other


def _body(response: Any) -> bytes:
    if not getattr(response, "streaming", False):
        return response.content
    if getattr(response, "is_async", False):  # the event stream: read it to its end

        async def collect() -> list[Any]:
            return [part async for part in response.streaming_content]

        parts = async_to_sync(collect)()
    else:
        parts = list(response.streaming_content)
    return b"".join(p if isinstance(p, bytes) else p.encode() for p in parts)


def ingest_text(curator: Any, collection: Collection, name: str, text: str) -> Document:
    """Upload a text file and read it in this process, as an ingest worker would. Nothing
    is queued: an ingest worker of the session's ``stack`` would otherwise race this process
    for the document (and ``process`` would find it claimed)."""
    (result,) = ingest_actions.upload_documents(
        curator,
        collection,
        [ingest_actions.IncomingFile(name, io.BytesIO(text.encode()))],
        enqueue=False,
    )
    assert result.document is not None, result.error
    assert pipeline.process(result.document.pk) == "ready"
    result.document.refresh_from_db()
    return result.document


def ingest_canary(curator: Any, collection: Collection) -> Document:
    """The canary document: a phrase no one outside ``collection``'s department may meet."""
    return ingest_text(
        curator,
        collection,
        f"{TITLE}.txt",
        f"The secret canary phrase is {PHRASE}. The quokka restructuring memo is "
        "confidential to HR.\n\nRestructuring timeline: the quokka team moves to the second "
        "floor in March.",
    )


def answer_now(question: Question) -> None:
    """Answer in this process as the answer worker would, with the events it publishes
    after its commit (the final ``done``) really published."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert answering.answer(question.pk) == "done"
    question.refresh_from_db()


@pytest.fixture(autouse=True)
def short_answers(settings: Any) -> None:
    # Leaks are decided by retrieval and sources; a few tokens of model text suffice.
    settings.LLM_MAX_ANSWER_TOKENS = 24


@pytest.fixture
def canary(people: Any) -> Canary:
    # Each test database starts its ids at 1 again; answer streams of an earlier run, kept
    # in the test Redis database, must not pose as this run's (see the xfail test below).
    redis_client.client().flushdb()
    hr = create_collection(None, "HR restructuring", people.hr)
    finance = create_collection(None, "Budgets", people.finance)
    curator_of_finance = accounts.create_or_update_user(None, "fiona")[0]
    accounts.add_membership(None, curator_of_finance, people.finance, Role.CURATOR)
    document = ingest_canary(people.carol, hr)
    budget = ingest_text(
        curator_of_finance, finance, "budget.txt", "The travel budget for 2026 is 40,000 euros."
    )
    question = inference_actions.ask(people.alice, QUESTION)
    answer_now(question)
    question.refresh_from_db()
    if question.conversation_id is None:
        question.conversation = Conversation.objects.create(user=people.alice, title=QUESTION)
        question.save(update_fields=["conversation"])
    chunk = Chunk.objects.filter(document=document).order_by("ordinal").first()
    citation = question.citations.filter(document=document).first()
    assert chunk is not None
    # The control: for alice the canary is found, so the checks below can fail.
    assert chunk.pk in question.retrieved_chunk_ids
    assert citation is not None and PHRASE in citation.snippet
    feedback = inference_actions.give_feedback(
        people.alice, question, False, f"{PHRASE} is wrong", share_question=True
    )
    return Canary(hr, document, chunk, question, citation, finance, budget, feedback)


ATTACKERS = ["bob", "oscar", "dave", "erin"]
AGENT = "canary-test"


def _call(client: Client, method: str, url: str) -> Any:
    if method == "GET":
        return client.get(url)
    if method == "POST":
        return client.post(url, {"x": "1"})
    return client.delete(url)


def _assert_no_canary(body: bytes, where: str, *, title_allowed: bool = False) -> None:
    assert PHRASE.encode() not in body, f"the canary's text leaked: {where}"
    assert title_allowed or TITLE.encode() not in body, f"the canary's title leaked: {where}"


def _is_audit_route(url: str) -> bool:
    return url.startswith(("/audit/", "/api/v1/audit/"))


def test_no_route_reveals_the_canary_and_its_404_is_a_missing_ids_404(
    people: Any, canary: Canary, signed_in: ClientFor
) -> None:
    for who in ATTACKERS:
        _walk_every_route(signed_in, people, canary, who)
    # A scoped lookup on one's own document, naming the canary's passage: nothing of it.
    response = signed_in(people.bob, HTTP_USER_AGENT=AGENT).get(
        f"/documents/{canary.budget.pk}/passage?chunk={canary.chunk.pk}"
    )
    assert response.status_code == 200 and b"travel budget" in response.content
    _assert_no_canary(response.content, "bob's passage view with the canary's chunk id")


def _walk_every_route(signed_in: ClientFor, people: Any, canary: Canary, who: str) -> None:
    user = getattr(people, who)
    client = signed_in(user, HTTP_USER_AGENT=AGENT)
    canary_ids, missing_ids = canary.ids(canary=True), canary.ids(canary=False)
    canary_ids["user_id"] = missing_ids["user_id"] = people.erin.pk
    pairs = list(zip(routes(canary_ids), routes(missing_ids), strict=True))
    assert len(pairs) >= 20
    compared = 0
    for (route, url), (_, missing_url) in pairs:
        if route in SIGNS_OUT:
            continue
        for method in ("GET", "POST", "DELETE"):
            response = _call(client, method, url)
            body = _body(response)
            where = f"{who} {method} {url} -> {response.status_code}"
            # Auditors read the log, which names documents (never their text).
            _assert_no_canary(body, where, title_allowed=who == "dave" and _is_audit_route(url))
            if url == missing_url:
                continue
            other = _call(client, method, missing_url)
            assert (response.status_code, body) == (other.status_code, _body(other)), where
            assert response.get("Location") == other.get("Location"), where
            compared += 1
    assert compared >= 30


def test_forged_collection_ids_are_refused_like_missing_ones(
    people: Any, canary: Canary, signed_in: ClientFor
) -> None:
    for who in ATTACKERS:
        _ask_with_forged_scope(signed_in, people, canary, who)


def _ask_with_forged_scope(signed_in: ClientFor, people: Any, canary: Canary, who: str) -> None:
    client = signed_in(getattr(people, who), HTTP_USER_AGENT=AGENT)

    def ask(ids: list[int]) -> Any:
        return client.post(
            "/api/v1/questions",
            json.dumps({"question": QUESTION, "collection_ids": ids}),
            content_type="application/json",
        )

    forged, missing = ask([canary.collection.pk]), ask([MISSING])
    assert forged.status_code == missing.status_code == 400
    assert forged.content == missing.content
    page_forged = client.post("/", {"question": QUESTION, "collection_ids": [canary.collection.pk]})
    page_missing = client.post("/", {"question": QUESTION, "collection_ids": [MISSING]})
    assert (page_forged.status_code, page_forged.get("Location")) == (
        page_missing.status_code,
        page_missing.get("Location"),
    )
    assert not Question.objects.filter(user=getattr(people, who)).exists()


def test_questions_aimed_at_the_canary_never_answer_from_it(
    people: Any, canary: Canary, signed_in: ClientFor
) -> None:
    for who in ATTACKERS:
        _ask_for_the_canary(signed_in, people, canary, who)


def _ask_for_the_canary(signed_in: ClientFor, people: Any, canary: Canary, who: str) -> None:
    user = getattr(people, who)
    client = signed_in(user, HTTP_USER_AGENT=AGENT)
    forged = [canary.finance.pk, canary.collection.pk] if who == "bob" else None
    asked = [inference_actions.ask(user, QUESTION)]
    if forged:
        # A scope naming the canary's collection next to one of bob's own: narrowed.
        asked.append(inference_actions.ask(user, QUESTION, forged))
        assert asked[-1].scope == [canary.finance.pk]
    canary_chunks = set(Chunk.objects.filter(document=canary.document).values_list("pk", flat=True))
    for question in asked:
        answer_now(question)
        question.refresh_from_db()
        assert not canary_chunks & set(question.retrieved_chunk_ids)
        assert not question.citations.filter(document=canary.document).exists()
        _assert_no_canary(question.answer.encode(), f"{who}'s answer")
        for url in (
            f"/api/v1/questions/{question.pk}",
            f"/api/v1/questions/{question.pk}/events",
            f"/questions/{question.pk}/",
        ):
            response = client.get(url)
            assert response.status_code == 200, url
            _assert_no_canary(_body(response), f"{who} {url}")


def test_a_reused_question_id_does_not_replay_someone_elses_answer_stream(
    people: Any, canary: Canary, signed_in: ClientFor
) -> None:
    reused = canary.question.pk
    assert events.read(canary.question), "alice's answer stream is still in Redis"
    # A database restore: alice's question is gone and the id sequence hands it out again.
    Question.objects.filter(pk=reused).delete()
    bobs = Question.objects.create(
        pk=reused,
        user=people.bob,
        text="my own question",
        status="done",
        answer="my own answer",
        grounded=False,
    )
    assert events.read(bobs) == []
    bob = signed_in(people.bob, HTTP_USER_AGENT=AGENT)
    body = _body(bob.get(f"/api/v1/questions/{bobs.pk}/events"))
    assert b"my own answer" in body
    _assert_no_canary(body, "bob's stream for a reused question id")
