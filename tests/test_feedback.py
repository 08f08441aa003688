"""Feedback on answers, deleting conversations, and chat retention (issue 19).

The answer is written by the real retrieval and SmolLM2 in this process (``answer_now``):
alice asks about a document of HR's collection (curated by carol); fiona curates Finance's.
Feedback is private to its giver except for rule 8 of ``appliance.access``: the curators of
the collections the answer drew on read it, the question only when alice shared it.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from appliance.accounts import actions as accounts
from appliance.accounts.models import Role
from appliance.audit.models import Action, AuditEvent
from inference import actions as inference_actions
from inference import retention
from inference.models import Citation, Conversation, Feedback, Question
from inference.pilot import actions as pilot_actions
from ingest.actions import create_collection
from tests.conftest import ClientFor
from tests.test_canary import answer_now, ingest_text

pytestmark = pytest.mark.django_db

QUESTION = "How many days of parental leave do HR employees get?"
MISSING = 987654321


@pytest.fixture(autouse=True)
def short_answers(settings: Any) -> None:
    settings.LLM_MAX_ANSWER_TOKENS = 24


@pytest.fixture
def answered(people: Any) -> Question:
    """alice's answered question, drawn from HR's collection; fiona curates Finance."""
    hr = create_collection(None, "HR handbook", people.hr)
    finance = create_collection(None, "Budgets", people.finance)
    fiona = accounts.create_or_update_user(None, "fiona")[0]
    accounts.add_membership(None, fiona, people.finance, Role.CURATOR)
    ingest_text(
        people.carol,
        hr,
        "parental-leave.txt",
        "Parental leave: HR employees get 49 days of parental leave at full pay.",
    )
    ingest_text(fiona, finance, "budget.txt", "The travel budget for 2026 is 40,000 euros.")
    question = inference_actions.ask(people.alice, QUESTION)
    answer_now(question)
    assert question.status == "done"
    assert question.citations.filter(document__collection=hr).exists()
    return question


def _fiona() -> Any:
    from appliance.accounts.models import User

    return User.objects.get(username="fiona")


def test_asker_rates_an_answer_once_and_can_change_it(
    people: Any, answered: Question, api_signed_in: ClientFor
) -> None:
    api = api_signed_in(people.alice)
    url = f"/api/v1/questions/{answered.pk}/feedback"
    assert api.get(url).json() == {"feedback": None}

    first = api.post(url, {"helpful": False, "comment": "Wrong number"}, "application/json")
    assert first.status_code == 200, first.content
    assert first.json()["helpful"] is False and first.json()["share_question"] is False
    again = api.post(
        url, {"helpful": True, "comment": "", "share_question": True}, "application/json"
    )
    assert again.json()["helpful"] is True
    assert Feedback.objects.filter(question=answered).count() == 1
    assert api.get(url).json()["feedback"]["share_question"] is True

    rows = AuditEvent.objects.filter(action=Action.FEEDBACK).order_by("id")
    assert [r.details["changed"] for r in rows] == [False, True]
    assert all("Wrong number" not in json.dumps(r.details) for r in rows)  # no words kept

    # Bad input is refused with a reason and changes nothing.
    bad = api.post(url, {"comment": "no rating"}, "application/json")
    assert bad.status_code == 400 and "helpful" in bad.json()["error"]
    too_long = api.post(url, {"helpful": False, "comment": "x" * 2001}, "application/json")
    assert too_long.status_code == 400
    assert Feedback.objects.get(question=answered).helpful is True
    paths = api.get("/api/v1/openapi.json").json()["paths"]
    assert "/questions/{id}/feedback" in paths and "/conversations/{id}" in paths


def test_only_the_asker_may_rate_and_others_get_the_missing_ids_404(
    people: Any, answered: Question, api_signed_in: ClientFor, signed_in: ClientFor
) -> None:
    for who in (people.bob, people.oscar, people.carol, people.dave):
        api = api_signed_in(who)
        theirs = api.post(
            f"/api/v1/questions/{answered.pk}/feedback", {"helpful": True}, "application/json"
        )
        missing = api.post(
            f"/api/v1/questions/{MISSING}/feedback", {"helpful": True}, "application/json"
        )
        assert (theirs.status_code, theirs.content) == (missing.status_code, missing.content)
        assert theirs.status_code == 404
        page = signed_in(who)
        form = page.post(f"/questions/{answered.pk}/feedback", {"helpful": "yes"})
        form_missing = page.post(f"/questions/{MISSING}/feedback", {"helpful": "yes"})
        assert form.status_code == form_missing.status_code == 404
    assert not Feedback.objects.exists()

    web = signed_in(people.alice)
    response = web.post(
        f"/questions/{answered.pk}/feedback", {"helpful": "no", "comment": "Too vague"}
    )
    assert response.status_code == 302
    assert response["Location"].endswith(f"/questions/{answered.pk}/#feedback-{answered.pk}")
    page = web.get(f"/questions/{answered.pk}/").content.decode()
    assert "Too vague" in page and 'aria-pressed="true"' in page


def test_curators_read_feedback_on_their_collections_answers_and_the_question_only_if_shared(
    people: Any, answered: Question, signed_in: ClientFor
) -> None:
    inference_actions.give_feedback(people.alice, answered, False, "It missed the 49 days")
    carol = signed_in(people.carol)
    page = carol.get("/feedback/").content.decode()
    assert "It missed the 49 days" in page
    assert "parental-leave" in page  # her collection's source
    assert QUESTION not in page and answered.answer[:20] not in page
    assert "did not share" in page

    # fiona curates Finance: the answer drew nothing from it.
    fiona_page = signed_in(_fiona()).get("/feedback/").content.decode()
    assert "It missed the 49 days" not in fiona_page
    # Not curators at all: the page does not exist for them.
    for who in (people.alice, people.bob, people.oscar, people.dave, people.erin):
        assert signed_in(who).get("/feedback/").status_code == 404

    inference_actions.give_feedback(
        people.alice, answered, False, "It missed the 49 days", share_question=True
    )
    shared = carol.get("/feedback/").content.decode()
    assert QUESTION in shared


def test_a_curator_turns_a_shared_question_into_a_golden_set_entry(
    people: Any, answered: Question, signed_in: ClientFor
) -> None:
    feedback = inference_actions.give_feedback(people.alice, answered, True, "")
    version = pilot_actions.create_golden_set(people.carol, "HR checks", people.hr, [])
    golden_set = version.golden_set
    carol = signed_in(people.carol)
    url = f"/feedback/{feedback.pk}/golden"

    # Not shared: refused, no new version.
    carol.post(url, {"golden_set": golden_set.pk, "expected_answer": "49 days"})
    assert golden_set.versions.count() == 1

    inference_actions.give_feedback(people.alice, answered, True, "", share_question=True)
    # fiona does not curate the collection the answer drew on: a missing feedback's 404.
    fiona = signed_in(_fiona())
    assert fiona.post(url, {"golden_set": golden_set.pk}).status_code == 404
    assert fiona.post(f"/feedback/{MISSING}/golden", {}).status_code == 404

    response = carol.post(
        url, {"golden_set": golden_set.pk, "expected_answer": "49 days", "answerable": "on"}
    )
    assert response.status_code == 302
    latest = golden_set.latest
    assert latest.number == 2
    (entry,) = latest.questions.all()
    assert entry.question == QUESTION and entry.expected_answer == "49 days"
    assert entry.tags == ["from-feedback"]
    assert AuditEvent.objects.filter(
        action=Action.GOLDEN_SET_VERSION, object_id=str(latest.pk)
    ).exists()
    # The same question twice is refused; the set keeps its versions.
    carol.post(url, {"golden_set": golden_set.pk, "expected_answer": "49 days"})
    assert golden_set.versions.count() == 2


def test_the_curator_feedback_page_costs_the_same_queries_for_one_row_or_many(
    people: Any, answered: Question, signed_in: ClientFor
) -> None:
    inference_actions.give_feedback(people.alice, answered, True, "ok", share_question=True)
    carol = signed_in(people.carol)
    carol.get("/feedback/")
    with CaptureQueriesContext(connection) as one:
        assert carol.get("/feedback/").status_code == 200
    for n in range(3):
        more = inference_actions.ask(people.alice, f"{QUESTION} ({n})")
        Question.objects.filter(pk=more.pk).update(status="done", answer="49 days [1]")
        first = answered.citations.first()
        Citation.objects.create(
            question=more,
            n=1,
            document_id=first.document_id,
            title=first.title,
            snippet=first.snippet,
            cited=True,
        )
        more.refresh_from_db()
        inference_actions.give_feedback(people.alice, more, False, f"no {n}")
    with CaptureQueriesContext(connection) as many:
        page = carol.get("/feedback/").content.decode()
    assert "no 2" in page
    assert len(many) == len(one)


def test_a_person_deletes_their_conversation_and_the_audit_keeps_no_words(
    people: Any, answered: Question, signed_in: ClientFor, api_signed_in: ClientFor
) -> None:
    inference_actions.give_feedback(people.alice, answered, False, "private words")
    conversation_id = answered.conversation_id
    # Someone else's conversation is a missing one, on the page and in the API.
    bob = signed_in(people.bob)
    assert bob.post(f"/conversations/{conversation_id}/delete").status_code == 404
    bob_api = api_signed_in(people.bob)
    theirs = bob_api.delete(f"/api/v1/conversations/{conversation_id}")
    missing = bob_api.delete(f"/api/v1/conversations/{MISSING}")
    assert (theirs.status_code, theirs.content) == (missing.status_code, missing.content)
    assert Conversation.objects.filter(pk=conversation_id).exists()

    alice = signed_in(people.alice)
    assert "Delete this conversation" in alice.get(f"/questions/{answered.pk}/").content.decode()
    response = alice.post(f"/conversations/{conversation_id}/delete")
    assert response.status_code == 302
    assert not Conversation.objects.filter(pk=conversation_id).exists()
    assert not Question.objects.filter(pk=answered.pk).exists()
    assert not Citation.objects.filter(question_id=answered.pk).exists()
    assert not Feedback.objects.exists()
    assert alice.get(f"/questions/{answered.pk}/").status_code == 404

    (row,) = AuditEvent.objects.filter(action=Action.CONVERSATION_DELETE)
    assert row.details == {"questions": 1, "question_ids": [answered.pk]}
    assert row.actor == "alice"
    # The question's own audit row stays (its retention is the audit log's).
    assert AuditEvent.objects.filter(action=Action.QUESTION, object_id=str(answered.pk)).exists()

    # The API deletes too.
    other = inference_actions.ask(people.alice, "Another question")
    api = api_signed_in(people.alice)
    assert api.delete(f"/api/v1/conversations/{other.conversation_id}").status_code == 204
    assert not Question.objects.filter(pk=other.pk).exists()


def _aged(user: Any, text: str, days: float) -> Question:
    question = inference_actions.ask(user, text)
    then = timezone.now() - timedelta(days=days)
    Question.objects.filter(pk=question.pk).update(created_at=then)
    return question


def test_chat_retention_deletes_old_conversations_and_the_shortest_rule_wins(
    people: Any, settings: Any
) -> None:
    alice_old = _aged(people.alice, "alice, forty days ago", 40)
    alice_mid = _aged(people.alice, "alice, ten days ago", 10)
    alice_new = _aged(people.alice, "alice, today", 0)
    bob_mid = _aged(people.bob, "bob, ten days ago", 10)
    oscar_old = _aged(people.oscar, "oscar, forty days ago", 40)
    # A conversation with an old turn and a new one keeps the new one.
    follow_up = inference_actions.ask(
        people.bob, "bob, a follow-up today", conversation_id=bob_mid.conversation_id
    )

    settings.CHAT_RETENTION_DAYS = 0
    out = StringIO()
    call_command("chat_prune", stdout=out)
    assert "retention is off" in out.getvalue()
    assert Question.objects.count() == 6

    settings.CHAT_RETENTION_DAYS = 30
    accounts.set_chat_retention(None, people.hr, 5)  # HR's members: five days
    out = StringIO()
    call_command("chat_prune", stdout=out)
    assert "Deleted 3 question(s) and 3 conversation(s)" in out.getvalue()

    left = set(Question.objects.values_list("pk", flat=True))
    assert left == {alice_new.pk, bob_mid.pk, follow_up.pk}
    assert oscar_old.pk not in left and alice_old.pk not in left and alice_mid.pk not in left
    assert not Conversation.objects.filter(pk=alice_mid.conversation_id).exists()
    assert Conversation.objects.filter(pk=bob_mid.conversation_id).exists()

    (row,) = AuditEvent.objects.filter(action=Action.CHAT_PRUNE)
    assert row.details["questions"] == 3 and row.details["conversations"] == 3
    assert "ago" not in json.dumps(row.details)  # counts and rules, never the words
    assert {r["rule"] for r in row.details["rules"]} == {"organisation", "department HR"}
    # The audit rows of the deleted questions stay.
    assert AuditEvent.objects.filter(action=Action.QUESTION).count() == 6

    # Nothing more to delete: nothing written.
    assert retention.prune().questions == 0
    assert AuditEvent.objects.filter(action=Action.CHAT_PRUNE).count() == 1


def test_the_answer_workers_pass_prunes_at_most_once_an_hour(
    people: Any, settings: Any, monkeypatch: Any
) -> None:
    settings.CHAT_RETENTION_DAYS = 1
    monkeypatch.setattr(retention, "_last_run", None)
    _aged(people.alice, "old", 3)
    assert retention.reconcile() == 1
    _aged(people.alice, "old too", 3)
    assert retention.reconcile() == 0  # within the hour: not again
    long_ago = time.monotonic() - 2 * retention.RUN_EVERY_SECONDS
    monkeypatch.setattr(retention, "_last_run", long_ago)
    assert retention.reconcile() == 1
