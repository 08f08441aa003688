"""Conversations, stopping, queue places and a worker that dies mid-answer, on the real
answer worker with the small real model."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any

import httpx
import pytest

from inference.models import Question
from ingest import actions as ingest_actions
from ingest.models import Document
from tests.conftest import DOCUMENTS
from tests.e2e.test_pipeline import read_events
from tests.support.stack import wait_for

pytestmark = [pytest.mark.services]


@pytest.fixture
def memo(people: Any, live_db: Any, stack: Any) -> Document:
    collection = ingest_actions.create_collection(people.carol, "HR policies", people.hr)
    for name in ("pdf/fake-memo.pdf", "handbook-1p.docx"):
        with open(DOCUMENTS / name, "rb") as handle:
            ingest_actions.upload_documents(
                people.carol, collection, [ingest_actions.IncomingFile(name.split("/")[-1], handle)]
            )
    wait_for(
        lambda: not Document.objects.exclude(status="ready").exists(),
        timeout=120,
        message="documents to be ready",
    )
    return Document.objects.get(title="fake-memo")


def ask(api: httpx.Client, text: str, **extra: Any) -> dict[str, Any]:
    response = api.post("/api/v1/questions", json={"question": text, **extra})
    assert response.status_code == 202, response.text
    return response.json()


def test_a_follow_up_continues_the_conversation_and_searches_standalone(
    people: Any, api_for: Any, memo: Document
) -> None:
    api = api_for(people.alice)
    first = ask(api, "How many laptops were delivered?")
    read_events(api, first["id"])
    follow = ask(api, "and when?", conversation_id=first["conversation_id"])
    assert follow["conversation_id"] == first["conversation_id"]
    events = read_events(api, follow["id"])
    assert events[-1][1] == "done"
    stored = Question.objects.get(pk=follow["id"])
    assert stored.search_query and stored.search_query != "and when?", stored.search_query
    # The follow-up was read on top of the cached conversation: far more of its prompt was
    # reused than the shared system prefix alone.
    assert stored.grounded, (stored.search_query, stored.answer)
    assert stored.prompt_tokens > Question.objects.get(pk=first["id"]).prompt_tokens


def test_someone_elses_conversation_cannot_be_continued(
    people: Any, api_for: Any, memo: Document
) -> None:
    alice = api_for(people.alice)
    first = ask(alice, "How many laptops were delivered?")
    response = api_for(people.carol).post(
        "/api/v1/questions",
        json={"question": "and when?", "conversation_id": first["conversation_id"]},
    )
    assert response.status_code == 400
    assert "not yours" in response.json()["error"]


def test_stop_ends_the_answer_within_a_token_or_two(
    people: Any, api_for: Any, memo: Document, settings: Any
) -> None:
    api = api_for(people.alice)
    asked = ask(
        api, "What was delivered on January 23, and how many trucks were used? Explain in detail."
    )
    streamed: list[str] = []
    text_at_stop: list[str] = []

    def stopper() -> None:
        wait_for(lambda: len(streamed) >= 2, timeout=60, interval=0.005, message="tokens")
        text_at_stop.append("".join(streamed))
        assert api.post(f"/api/v1/questions/{asked['id']}/cancel").status_code == 202

    thread = threading.Thread(target=stopper)
    thread.start()
    with api.stream("GET", f"/api/v1/questions/{asked['id']}/events") as response:
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "token":
                streamed.append(json.loads(line[6:])["text"])
            elif event == "done":
                break
    thread.join()
    stored = Question.objects.get(pk=asked["id"])
    assert stored.answer.endswith("(Stopped.)")
    assert stored.completion_tokens < settings.LLM_MAX_ANSWER_TOKENS
    # Only what was already on its way (one event's worth, ~40 ms) and a token more follow.
    after_stop = stored.answer.removesuffix("(Stopped.)").strip()[len(text_at_stop[0].strip()) :]
    assert len(after_stop) <= 80, after_stop


def test_a_worker_that_dies_mid_answer_ends_the_stream_with_an_error(
    people: Any, api_for: Any, memo: Document, stack: Any
) -> None:
    api = api_for(people.alice)
    asked = ask(
        api, "What was delivered on January 23, and how many trucks were used? Explain in detail."
    )
    kinds: list[str] = []
    messages: list[str] = []

    def killer() -> None:
        wait_for(lambda: "token" in kinds, timeout=60, interval=0.01, message="first token")
        stack.stop("answer", sig=signal.SIGKILL)

    thread = threading.Thread(target=killer)
    thread.start()
    started = time.monotonic()
    try:
        with api.stream("GET", f"/api/v1/questions/{asked['id']}/events", timeout=120) as response:
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    kinds.append(event)
                elif line.startswith("data: ") and event == "error":
                    messages.append(line)
                    break
                elif event == "done":
                    break
    finally:
        thread.join()
        stack.start_worker("answer")
        stack.wait_healthy()
    assert kinds[-1] == "error", kinds
    assert "stopped while answering" in messages[0]
    assert time.monotonic() - started < 90
    assert Question.objects.get(pk=asked["id"]).status == "error"


def test_waiting_questions_learn_their_place_in_the_queue(
    people: Any, api_for: Any, memo: Document
) -> None:
    api = api_for(people.alice)
    asked = [ask(api, f"How many bottles of water were delivered? ({i})") for i in range(3)]
    last = read_events(api, asked[-1]["id"])
    places = [data["ahead"] for _, kind, data in last if kind == "queued"]
    assert places[0] >= 1, places  # it waited behind the others...
    assert places == sorted(places, reverse=True)  # ...and moved up as they were answered
    assert last[-1][1] == "done"


def _sessions_so_far() -> int:
    """PostgreSQL sessions ever opened on the test database."""
    from django.db import connection

    time.sleep(1.2)  # backends report their statistics about once a second
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_the_web_process_borrows_database_connections_instead_of_opening_them(
    people: Any, api_for: Any, stack: Any
) -> None:
    """Each request's database work runs on a thread of its own under ASGI: with Django's
    per-thread connections every request opened a PostgreSQL session (and, with
    CONN_MAX_AGE, left it open behind it). The web process borrows from a pool instead."""
    api = api_for(people.alice)
    assert api.get("/api/v1/collections").status_code == 200
    before = _sessions_so_far()
    for _ in range(40):
        assert api.get("/api/v1/collections").status_code == 200
    assert _sessions_so_far() - before <= 5


def test_the_answer_worker_keeps_its_database_connection_between_questions(
    live_db: Any, stack: Any
) -> None:
    """Celery closes Django's connections around every task unless told otherwise; a new
    session on the way to every first token is what this guards against."""
    import redis
    from django.conf import settings as django_settings

    from inference.tasks import answer_question

    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    answer_question.delay(0)  # the worker has touched the database at least once
    wait_for(lambda: broker.llen("answer") == 0, timeout=30, message="the queue to empty")
    before = _sessions_so_far()
    for _ in range(12):
        answer_question.delay(0)  # no such question: claimed by nobody, skipped at once
    wait_for(lambda: broker.llen("answer") == 0, timeout=30, message="the queue to empty")
    time.sleep(1)
    assert _sessions_so_far() - before <= 3
