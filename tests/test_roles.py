"""Roles and scope: operators manage people on their own pages, curators share their own
department's collections, and every change counts from the very next request: the next
question, the next link, the next list."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from appliance.accounts import actions as accounts
from appliance.accounts.models import Membership, Role, User
from appliance.audit.models import Action, AuditEvent
from inference import actions as inference_actions
from inference.models import Question
from ingest.actions import create_collection
from ingest.models import Chunk, Collection, Document
from tests.conftest import PASSWORD, ClientFor
from tests.test_canary import answer_now, ingest_text

pytestmark = pytest.mark.django_db

SECRET = "The HR offsite is in Tromsø on the 14th of May."
ASK = "Where is the HR offsite?"


@pytest.fixture
def hr_docs(people: Any, settings: Any) -> dict[str, Any]:
    settings.LLM_MAX_ANSWER_TOKENS = 16
    collection = create_collection(people.carol, "HR events", people.hr)
    document = ingest_text(people.carol, collection, "offsite.txt", SECRET)
    return {"collection": collection, "document": document}


def _found_by(user: Any, document: Document) -> Question:
    """Ask now, as ``user``, and answer with the real retrieval and model."""
    question = inference_actions.ask(user, ASK)
    answer_now(question)
    return question


def _retrieved(question: Question, document: Document) -> bool:
    return Chunk.objects.filter(document=document, pk__in=question.retrieved_chunk_ids).exists()


# --- operator pages -----------------------------------------------------------------------


def test_only_operators_reach_the_people_pages(people: Any, signed_in: ClientFor) -> None:
    assert signed_in(people.erin).get("/operator/").status_code == 200
    for other in (people.alice, people.carol, people.bob, people.oscar, people.dave):
        client = signed_in(other)
        assert client.get("/operator/").status_code == 404
        assert client.get(f"/operator/users/{people.alice.pk}/").status_code == 404
        response = client.post("/operator/departments/create", {"name": "Sneaky"})
        assert response.status_code == 404
    denied = AuditEvent.objects.filter(action=Action.ACCESS_DENIED)
    assert denied.count() == 15
    assert not AuditEvent.objects.filter(action=Action.DEPARTMENT_CREATE, actor="bob").exists()


def test_operator_adds_a_person_who_can_then_sign_in_and_ask(
    people: Any, signed_in: ClientFor
) -> None:
    operator = signed_in(people.erin)
    response = operator.post(
        "/operator/users/create",
        {
            "username": "nina",
            "password": "a long and unusual passphrase",
            "department": people.finance.pk,
            "role": Role.EMPLOYEE,
        },
    )
    nina = User.objects.get(username="nina")
    assert response.status_code == 302 and response.url == f"/operator/users/{nina.pk}/"
    assert list(nina.memberships.values_list("role", flat=True)) == [Role.EMPLOYEE]
    nina_signs_in = Client().post(
        "/login/", {"username": "nina", "password": "a long and unusual passphrase"}
    )
    assert nina_signs_in.status_code == 302
    page = operator.get(f"/operator/users/{nina.pk}/").content.decode()
    assert "Finance" in page and "Deactivate nina" in page


def test_a_weak_first_password_is_refused_plainly(people: Any, signed_in: ClientFor) -> None:
    response = signed_in(people.erin).post(
        "/operator/users/create",
        {
            "username": "nina",
            "password": "password",
            "department": people.hr.pk,
            "role": "employee",
        },
        follow=True,
    )
    assert "too common" in response.content.decode()
    assert not User.objects.filter(username="nina").exists()


def test_the_last_operator_cannot_be_removed_demoted_or_deactivated(
    people: Any, signed_in: ClientFor
) -> None:
    membership = Membership.objects.get(user=people.erin, role=Role.OPERATOR)
    operator = signed_in(people.erin)
    base = f"/operator/users/{people.erin.pk}"
    operator.post(f"{base}/memberships/{membership.pk}/remove")
    operator.post(f"{base}/memberships/{membership.pk}/role", {"role": Role.EMPLOYEE})
    with pytest.raises(accounts.RefusedChange, match="last active operator"):
        accounts.deactivate_user(people.dave, people.erin)
    assert Membership.objects.filter(pk=membership.pk, role=Role.OPERATOR).exists()
    assert User.objects.get(pk=people.erin.pk).is_active
    # With a second operator, the first may step down.
    accounts.add_membership(people.erin, people.dave, people.hr, Role.OPERATOR)
    operator.post(f"{base}/memberships/{membership.pk}/role", {"role": Role.EMPLOYEE})
    assert Membership.objects.get(pk=membership.pk).role == Role.EMPLOYEE


def test_a_removed_membership_closes_the_next_question_and_link(
    people: Any, hr_docs: dict[str, Any], signed_in: ClientFor
) -> None:
    document = hr_docs["document"]
    alice = signed_in(people.alice)
    before = _found_by(people.alice, document)
    assert _retrieved(before, document)
    membership = Membership.objects.get(user=people.alice, department=people.hr)
    signed_in(people.erin).post(
        f"/operator/users/{people.alice.pk}/memberships/{membership.pk}/remove"
    )
    after = _found_by(people.alice, document)
    assert not _retrieved(after, document) and SECRET not in after.answer
    assert alice.get(f"/documents/{document.pk}/passage").status_code == 404
    assert alice.get(f"/documents/{document.pk}/file").status_code == 404
    assert alice.get("/api/v1/collections").json() == {"collections": []}
    # Her earlier answer stays in her history (she read it when she could), but its
    # sources no longer show or link the document.
    earlier = alice.get(f"/api/v1/questions/{before.pk}").json()
    assert earlier["citations"] == []
    page = alice.get(f"/questions/{before.pk}/").content.decode()
    assert f"/documents/{document.pk}/" not in page
    assert "offsite.txt" not in page


def test_a_role_change_applies_at_once(
    people: Any, hr_docs: dict[str, Any], signed_in: ClientFor
) -> None:
    membership = Membership.objects.get(user=people.alice, department=people.hr)
    upload = f"/collections/{hr_docs['collection'].pk}/upload"
    assert signed_in(people.alice).post(upload).status_code == 403  # reads it, may not change it
    accounts.change_role(people.erin, membership, Role.CURATOR)
    response = signed_in(people.alice).post(upload)  # no files: refused for that reason only
    assert response.status_code == 302
    accounts.change_role(people.erin, membership, Role.AUDITOR)
    assert (
        signed_in(people.alice).get(f"/collections/{hr_docs['collection'].pk}/").status_code == 404
    )


# --- sharing ------------------------------------------------------------------------------


def _share(client: Client, collection: Collection, action: str, department: Any) -> Any:
    return client.post(
        f"/collections/{collection.pk}/sharing",
        {"action": action, "department": department},
    )


def test_only_curators_of_the_owning_department_change_sharing(
    people: Any, hr_docs: dict[str, Any], signed_in: ClientFor
) -> None:
    collection = hr_docs["collection"]
    finance_curator, _ = accounts.create_or_update_user(None, "fiona", PASSWORD)
    accounts.add_membership(None, finance_curator, people.finance, Role.CURATOR)
    for other in (
        people.alice,
        people.bob,
        people.oscar,
        people.dave,
        people.erin,
        finance_curator,
    ):
        # alice reads the collection, so she is told she may not; to anyone else it is missing.
        refused = 403 if other == people.alice else 404
        response = _share(signed_in(other), collection, "share", people.finance.pk)
        assert response.status_code == refused
        assert _share(signed_in(other), collection, "share", "all").status_code == refused
    collection.refresh_from_db()
    assert not collection.shares.exists() and not collection.shared_with_all
    page = signed_in(people.carol).get(f"/collections/{collection.pk}/").content.decode()
    assert 'id="sharing"' in page and "Everyone in the organisation" in page
    assert (
        'id="sharing"'
        not in signed_in(people.alice).get(f"/collections/{collection.pk}/").content.decode()
    )


def test_sharing_with_a_department_opens_and_closes_from_the_next_question(
    people: Any, hr_docs: dict[str, Any], signed_in: ClientFor
) -> None:
    collection, document = hr_docs["collection"], hr_docs["document"]
    bob = signed_in(people.bob)
    assert not _retrieved(_found_by(people.bob, document), document)

    assert (
        _share(signed_in(people.carol), collection, "share", people.finance.pk).status_code == 302
    )
    shared = _found_by(people.bob, document)
    assert _retrieved(shared, document)
    assert bob.get(f"/documents/{document.pk}/passage").status_code == 200
    assert "HR events" in bob.get("/collections/").content.decode()
    # Read-only: bob reads the document but may not change it.
    assert bob.post(f"/documents/{document.pk}/delete").status_code == 403

    _share(signed_in(people.carol), collection, "unshare", people.finance.pk)
    after = _found_by(people.bob, document)
    assert not _retrieved(after, document)
    assert bob.get(f"/documents/{document.pk}/passage").status_code == 404
    assert bob.get(f"/api/v1/questions/{shared.pk}").json()["citations"] == []


def test_sharing_with_everyone_reaches_readers_of_every_department_only(
    people: Any, hr_docs: dict[str, Any], signed_in: ClientFor
) -> None:
    collection, document = hr_docs["collection"], hr_docs["document"]
    _share(signed_in(people.carol), collection, "share", "all")
    url = f"/documents/{document.pk}/passage"
    assert signed_in(people.bob).get(url).status_code == 200
    # Belonging nowhere, or only auditing or operating, still reads nothing.
    for other in (people.oscar, people.dave, people.erin):
        assert signed_in(other).get(url).status_code == 404
    _share(signed_in(people.carol), collection, "unshare", "all")
    assert signed_in(people.bob).get(url).status_code == 404
    assert not _retrieved(_found_by(people.bob, document), document)


def test_the_people_page_costs_the_same_queries_for_many_people(
    people: Any, signed_in: ClientFor
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries() -> int:
        client = signed_in(people.erin)
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/operator/").status_code == 200
        return len(captured)

    few = queries()
    for n in range(12):
        user, _ = accounts.create_or_update_user(None, f"extra{n}", PASSWORD)
        accounts.add_membership(None, user, people.finance, Role.EMPLOYEE)
    assert queries() == few
