"""The one door: every person sees only what the policy lets them, and forbidden looks
exactly like missing. Retrieval filters inside its SQL, so top-k is never filled with
another department's chunks."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from appliance.audit.models import Action, AuditEvent
from inference.models import Question
from inference.retrieval import dense_search
from ingest import embedding
from ingest.actions import create_collection, share_collection, unshare_collection
from ingest.chunking import ChunkDraft
from ingest.models import Collection, Document, Status
from ingest.stages import insert as _insert
from tests.conftest import ClientFor

pytestmark = pytest.mark.django_db


def add_document(collection: Collection, title: str, texts: list[str]) -> Document:
    document = Document.objects.create(
        collection=collection,
        title=title,
        original_name=f"{title}.txt",
        stored_path="x",
        sha256=title,
        kind="txt",
        status=Status.READY,
        version=1,
        live_version=1,
    )
    drafts = [(i, ChunkDraft(t, 1, "", 10)) for i, t in enumerate(texts)]
    _insert(document, drafts, embedding.embed(texts))
    return document


@pytest.fixture
def library(people: Any) -> dict[str, Any]:
    hr = create_collection(None, "HR policies", people.hr)
    finance = create_collection(None, "Budgets", people.finance)
    canary = add_document(hr, "canary", ["The secret canary phrase is purple elephant 7431."])
    budget = add_document(finance, "budget", ["The travel budget for 2026 is 40,000 euros."])
    return {"hr": hr, "finance": finance, "canary": canary, "budget": budget}


def test_collections_list_only_what_each_person_may_read(people: Any, library: Any) -> None:
    def names(user: Any) -> set[str]:
        return set(Collection.objects.visible_to(user).values_list("name", flat=True))

    assert names(people.alice) == {"HR policies"}
    assert names(people.carol) == {"HR policies"}
    assert names(people.bob) == {"Budgets"}
    assert names(people.oscar) == set()
    assert names(people.dave) == set()  # auditors read no documents by virtue of the role
    assert names(people.erin) == set()  # nor do operators


def test_search_never_returns_another_departments_chunk(people: Any, library: Any) -> None:
    (vector,) = embedding.embed(["What is the secret canary phrase?"])
    assert [h.document_id for h in dense_search(people.alice, vector, k=5)] == [
        library["canary"].pk
    ]
    for outsider in (people.bob, people.oscar, people.dave, people.erin):
        hits = dense_search(outsider, vector, k=5)
        assert library["canary"].pk not in {h.document_id for h in hits}
    # A forged scope narrows, never widens.
    assert dense_search(people.bob, vector, k=5, narrow_to=[library["hr"].pk]) == []


def test_sharing_opens_and_unsharing_closes_on_the_very_next_search(
    people: Any, library: Any
) -> None:
    (vector,) = embedding.embed(["What is the secret canary phrase?"])
    share_collection(people.carol, library["hr"], people.finance)
    assert library["canary"].pk in {h.document_id for h in dense_search(people.bob, vector, k=5)}
    unshare_collection(people.carol, library["hr"], people.finance)
    assert library["canary"].pk not in {
        h.document_id for h in dense_search(people.bob, vector, k=5)
    }


def test_removed_membership_takes_effect_at_once(
    people: Any, library: Any, signed_in: ClientFor
) -> None:
    from appliance.accounts.actions import remove_membership

    (vector,) = embedding.embed(["What is the secret canary phrase?"])
    assert dense_search(people.alice, vector, k=5)
    remove_membership(None, people.alice, people.hr, "employee")
    assert dense_search(people.alice, vector, k=5) == []
    assert (
        signed_in(people.alice).get(f"/api/v1/documents/{library['canary'].pk}").status_code == 404
    )


@pytest.mark.parametrize("who", ["bob", "oscar", "dave", "erin"])
def test_forbidden_document_looks_exactly_like_a_missing_one(
    people: Any, library: Any, signed_in: ClientFor, who: str
) -> None:
    client = signed_in(getattr(people, who))
    canary = library["canary"].pk
    for forbidden, missing in [
        (f"/api/v1/documents/{canary}", "/api/v1/documents/987654"),
        (
            f"/api/v1/collections/{library['hr'].pk}/documents",
            "/api/v1/collections/987654/documents",
        ),
        (f"/documents/{canary}/passage", "/documents/987654/passage"),
        (f"/documents/{canary}/file", "/documents/987654/file"),
        (f"/collections/{library['hr'].pk}/", "/collections/987654/"),
    ]:
        a, b = client.get(forbidden), client.get(missing)
        assert a.status_code == b.status_code == 404, forbidden
        assert a.content == b.content
        assert b"purple elephant" not in a.content


def test_only_curators_of_the_department_may_delete(
    people: Any, library: Any, signed_in: ClientFor
) -> None:
    canary = library["canary"].pk
    assert signed_in(people.alice).delete(f"/api/v1/documents/{canary}").status_code == 403
    assert signed_in(people.bob).delete(f"/api/v1/documents/{canary}").status_code == 404
    assert signed_in(people.carol).delete(f"/api/v1/documents/{canary}").status_code == 204
    assert not Document.objects.filter(pk=canary).exists()


def test_questions_are_private_to_the_person_who_asked(
    people: Any, library: Any, signed_in: ClientFor
) -> None:
    question = Question.objects.create(user=people.alice, text="What is the canary?")
    assert signed_in(people.alice).get(f"/api/v1/questions/{question.pk}").status_code == 200
    for other in (people.bob, people.carol, people.dave, people.erin, people.oscar):
        client = signed_in(other)
        assert client.get(f"/api/v1/questions/{question.pk}").status_code == 404
        assert client.get(f"/api/v1/questions/{question.pk}/events").status_code == 404
        assert client.get(f"/questions/{question.pk}/").status_code == 404


def test_audit_log_is_for_auditors_only(people: Any, signed_in: ClientFor) -> None:
    assert signed_in(people.dave).get("/api/v1/audit/events").status_code == 200
    assert signed_in(people.dave).get("/audit/").status_code == 200
    for other in (people.alice, people.carol, people.bob, people.erin, people.oscar):
        assert signed_in(other).get("/api/v1/audit/events").status_code == 404
        assert signed_in(other).get("/audit/").status_code == 404
    assert Client().get("/api/v1/audit/events").status_code == 401


def test_people_who_read_no_documents_land_on_their_own_page(
    people: Any, signed_in: ClientFor
) -> None:
    assert signed_in(people.erin).get("/").url == "/operator/"
    assert signed_in(people.dave).get("/").url == "/audit/"
    assert signed_in(people.alice).get("/").status_code == 200
    assert signed_in(people.oscar).get("/").status_code == 200  # told to ask a curator


@pytest.mark.parametrize(
    ("attempt", "web", "api"),
    [
        (
            "upload",
            ("post", "/collections/{hr}/upload"),
            ("post", "/api/v1/collections/{hr}/documents"),
        ),
        (
            "delete",
            ("post", "/documents/{canary}/delete"),
            ("delete", "/api/v1/documents/{canary}"),
        ),
    ],
)
def test_a_refusal_is_the_same_and_audited_the_same_through_page_and_api(
    people: Any, library: Any, signed_in: ClientFor, attempt: str, web: Any, api: Any
) -> None:
    """alice reads HR's collection but does not curate it: both doors say 403 with the same
    sentence and write one access_denied row each; bob, who cannot read it, gets the 404
    of a missing id from both, as before."""
    ids = {"hr": library["hr"].pk, "canary": library["canary"].pk}
    denied = AuditEvent.objects.filter(action=Action.ACCESS_DENIED, actor_id=people.alice.pk)
    sentences = []
    for method, url in (web, api):
        before = denied.count()
        response = getattr(signed_in(people.alice), method)(url.format(**ids))
        assert response.status_code == 403
        assert denied.count() == before + 1
        assert denied.order_by("-id").first().details == {"attempt": attempt}
        body = response.content.decode()
        sentences.append("Only curators of this" in body)
        method_bob, url_bob = method, url.format(**ids)
        assert getattr(signed_in(people.bob), method_bob)(url_bob).status_code == 404
    assert sentences == [True, True]
    assert Document.objects.filter(pk=library["canary"].pk).exists()
