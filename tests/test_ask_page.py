"""What the Ask page tells a person: the collections their questions search, questions their
curators suggest, and after a refusal which collections were searched — never one they
cannot read. A follow-up keeps the scope its conversation was narrowed to."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.audit.models import Action, AuditEvent
from inference import actions as inference_actions
from inference.models import Question, QuestionStatus
from ingest import actions as ingest_actions
from tests.conftest import ClientFor

pytestmark = pytest.mark.django_db


@pytest.fixture
def shelves(people: Any) -> dict[str, Any]:
    hr = ingest_actions.create_collection(None, "Staff handbook", people.hr)
    travel = ingest_actions.create_collection(None, "Travel policy", people.hr)
    budgets = ingest_actions.create_collection(None, "Secret budgets", people.finance)
    ingest_actions.describe_collection(
        None, hr, suggested_questions=["How many days of annual leave do employees get?"]
    )
    ingest_actions.describe_collection(
        None, budgets, suggested_questions=["What is the secret reserve?"]
    )
    return {"hr": hr, "travel": travel, "budgets": budgets}


def test_the_ask_page_names_what_is_searched_and_suggests_only_readable_questions(
    people: Any, shelves: dict[str, Any], signed_in: ClientFor
) -> None:
    alice = signed_in(people.alice).get("/").content.decode()
    assert "Staff handbook" in alice and "Travel policy" in alice
    assert "How many days of annual leave do employees get?" in alice
    assert "Secret budgets" not in alice and "secret reserve" not in alice
    bob = signed_in(people.bob).get("/").content.decode()
    assert "What is the secret reserve?" in bob
    assert "Staff handbook" not in bob
    assert "How many days of annual leave do employees get?" not in bob


def test_a_refusal_hint_names_only_collections_the_asker_may_read(
    people: Any, shelves: dict[str, Any], signed_in: ClientFor
) -> None:
    for user in (people.alice, people.bob):
        question = Question.objects.create(
            user=user,
            text="How many days of annual leave do employees get?",
            status=QuestionStatus.DONE,
            answer="I could not find this in the documents you have access to.",
            grounded=False,
        )
        page = signed_in(user).get(f"/questions/{question.pk}/").content.decode()
        assert "No passage in" in page
        if user == people.bob:
            assert "Secret budgets" in page and "Staff handbook" not in page
        else:
            assert "Staff handbook, Travel policy" in page and "Secret budgets" not in page


def test_a_follow_up_keeps_the_narrowed_scope_of_its_conversation(
    people: Any, shelves: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        first = inference_actions.ask(
            people.alice, "What is the leave policy?", [shelves["travel"].pk]
        )
        follow = inference_actions.ask(
            people.alice, "and in summer?", conversation_id=first.conversation_id
        )
        widened = inference_actions.ask(
            people.alice,
            "and the handbook?",
            [shelves["hr"].pk, shelves["travel"].pk],
            conversation_id=first.conversation_id,
        )
    assert first.scope == follow.scope == [shelves["travel"].pk]
    assert widened.scope == sorted([shelves["hr"].pk, shelves["travel"].pk])


def test_curators_set_suggestions_and_readers_may_not(
    people: Any, shelves: dict[str, Any], signed_in: ClientFor
) -> None:
    url = f"/collections/{shelves['travel'].pk}/suggestions"
    body = {"suggested_questions": "What is the mileage rate?\n\n  What is the per diem? \n"}
    assert signed_in(people.carol).post(url, body).status_code == 302
    shelves["travel"].refresh_from_db()
    assert shelves["travel"].suggested_questions == [
        "What is the mileage rate?",
        "What is the per diem?",
    ]
    assert AuditEvent.objects.filter(action=Action.COLLECTION_UPDATE).exists()
    assert signed_in(people.alice).post(url, body).status_code == 403  # reads, may not change
    assert signed_in(people.bob).post(url, body).status_code == 404  # cannot read it
