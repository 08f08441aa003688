"""The whole path on real parts: API, ingest worker, pgvector, answer worker, SSE, stored
answer with citations. Uses real documents from the shared corpus."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from inference.prompts import NOT_FOUND
from ingest import actions as ingest_actions
from ingest.models import Chunk, Collection, Document
from tests.conftest import DOCUMENTS
from tests.support.stack import wait_for

pytestmark = [pytest.mark.services]

FINAL = {"ready", "failed", "cancelled"}


def upload(api: httpx.Client, collection: Collection, *paths: str) -> list[dict[str, Any]]:
    files = [("files", (p.split("/")[-1], (DOCUMENTS / p).read_bytes())) for p in paths]
    response = api.post(f"/api/v1/collections/{collection.pk}/documents", files=files)
    assert response.status_code == 202, response.text
    return response.json()["documents"]


def wait_final(api: httpx.Client, document_id: int) -> dict[str, Any]:
    def final() -> Any:
        body = api.get(f"/api/v1/documents/{document_id}").json()
        return body if body["status"] in FINAL else None

    return wait_for(final, timeout=180, message=f"document {document_id} to finish")


def read_events(api: httpx.Client, question_id: int, headers: dict | None = None) -> list[tuple]:
    """The SSE stream, parsed: (id, event, data) until done or error."""
    out: list[tuple] = []
    with api.stream("GET", f"/api/v1/questions/{question_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event_id, event, data = None, None, None
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line == "" and event:
                out.append((event_id, event, data))
                if event in ("done", "error"):
                    break
                event_id, event, data = None, None, None
    return out


@pytest.fixture
def hr_collection(people: Any) -> Collection:
    return ingest_actions.create_collection(people.carol, "HR policies", people.hr)


def test_a_batch_with_a_broken_file_ingests_the_rest(
    people: Any, api_for: Any, hr_collection: Collection
) -> None:
    api = api_for(people.carol)
    documents = upload(
        api,
        hr_collection,
        "pdf/fake-memo.pdf",
        "pdf/password.pdf",
        "handbook-1p.docx",
        "CantinaBand3.wav",
    )
    by_name = {d["title"]: d for d in documents}
    assert by_name["CantinaBand3.wav"]["status"] == "rejected"
    assert "not supported" in by_name["CantinaBand3.wav"]["error"]

    memo = wait_final(api, by_name["fake-memo"]["id"])
    handbook = wait_final(api, by_name["handbook-1p"]["id"])
    locked = wait_final(api, by_name["password"]["id"])
    assert memo["status"] == "ready" and memo["chunks"] >= 1 and memo["pages"] == 1
    assert handbook["status"] == "ready" and handbook["chunks"] >= 1
    assert locked["status"] == "failed"
    assert "password" in locked["error"].lower()
    assert Chunk.objects.filter(document_id=memo["id"]).exists()
    assert not Chunk.objects.filter(document_id=locked["id"]).exists()


def test_employee_gets_a_streamed_answer_with_a_citation(
    people: Any, api_for: Any, hr_collection: Collection
) -> None:
    (memo,) = upload(api_for(people.carol), hr_collection, "pdf/fake-memo.pdf")
    wait_final(api_for(people.carol), memo["id"])
    api = api_for(people.alice)

    asked = api.post(
        "/api/v1/questions", json={"question": "How many bottles of water were delivered?"}
    )
    assert asked.status_code == 202, asked.text
    question_id = asked.json()["id"]
    events = read_events(api, question_id)
    kinds = [e[1] for e in events]
    assert kinds[0] == "queued"
    assert "sources" in kinds
    assert kinds.count("token") >= 2, kinds
    assert kinds[-1] == "done"
    sources = next(e[2] for e in events if e[1] == "sources")["sources"]
    assert sources and sources[0]["document_id"] == memo["id"]

    stored = api.get(f"/api/v1/questions/{question_id}").json()
    assert stored["status"] == "done"
    assert stored["grounded"] is True
    assert stored["answer"].strip()
    assert stored["citations"], stored
    citation = stored["citations"][0]
    assert citation["document_id"] == memo["id"]
    assert citation["title"] == "fake-memo"
    assert citation["page"] == 1
    assert "bottles" in citation["snippet"]

    # Reconnecting with Last-Event-ID resumes after that event instead of replaying all.
    middle = events[len(events) // 2][0]
    resumed = read_events(api, question_id, headers={"Last-Event-ID": middle})
    assert [e[0] for e in resumed] == [e[0] for e in events[len(events) // 2 + 1 :]]


def test_question_the_documents_do_not_answer_says_so(
    people: Any, api_for: Any, hr_collection: Collection
) -> None:
    (memo,) = upload(api_for(people.carol), hr_collection, "pdf/fake-memo.pdf")
    wait_final(api_for(people.carol), memo["id"])
    api = api_for(people.alice)
    question_id = api.post(
        "/api/v1/questions", json={"question": "What is the airspeed of an unladen swallow?"}
    ).json()["id"]
    events = read_events(api, question_id)
    assert events[-1][1] == "done"
    stored = api.get(f"/api/v1/questions/{question_id}").json()
    assert stored["answer"] == NOT_FOUND
    assert stored["grounded"] is False
    assert stored["citations"] == []


def test_employee_of_another_department_never_gets_the_chunks(
    people: Any, api_for: Any, hr_collection: Collection
) -> None:
    (memo,) = upload(api_for(people.carol), hr_collection, "pdf/fake-memo.pdf")
    wait_final(api_for(people.carol), memo["id"])
    api = api_for(people.bob)

    # By question, even with the HR collection's id forged into the request.
    forged = api.post(
        "/api/v1/questions",
        json={
            "question": "How many bottles of water were delivered?",
            "collection_ids": [hr_collection.pk],
        },
    )
    assert forged.status_code == 400
    question_id = api.post(
        "/api/v1/questions", json={"question": "How many bottles of water were delivered?"}
    ).json()["id"]
    events = read_events(api, question_id)
    assert all(not data["sources"] for _, kind, data in events if kind == "sources")
    assert "bottles" not in json.dumps([data for _, _, data in events]).lower()
    stored = api.get(f"/api/v1/questions/{question_id}").json()
    assert stored["grounded"] is False and stored["citations"] == []
    from inference.models import Question

    assert Question.objects.get(pk=question_id).retrieved_chunk_ids == []

    # By id: the same 404 as an id that does not exist.
    missing = api.get("/api/v1/documents/99999999")
    forbidden = api.get(f"/api/v1/documents/{memo['id']}")
    assert forbidden.status_code == missing.status_code == 404
    assert forbidden.json() == missing.json()
    assert api.get(f"/api/v1/collections/{hr_collection.pk}/documents").status_code == 404
    assert Document.objects.filter(pk=memo["id"]).exists()


def test_health_is_green_with_both_workers_and_the_model(stack: Any) -> None:
    body = httpx.get(f"{stack.url}/healthz").json()
    assert body["status"] == "ok", body
    assert body["workers"]["ingest"] >= 1 and body["workers"]["answer"] >= 1
