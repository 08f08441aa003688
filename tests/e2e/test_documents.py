"""Questions about a whole document through the real appliance: uvicorn, the answer worker
with the small real model, the ingest worker, a real PDF.

"What is this document about? Summarise its main topic." about a freshly uploaded paper
used to get "I could not find this…", since no single passage is like the question. Now the
paper is read part by part, with progress events, and the answer cites its pages. The
small model's summaries are poor, so these tests check what happened (parts read, progress,
citations to the paper's pages, no refusal), not the wording.

Each reading costs minutes on a small shared host, so the paper is read whole once here;
which document a question names, or "this document" means, is tested on the database in
tests/test_document_questions.py.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from inference import prompts
from inference.models import Citation, Question
from ingest import actions as ingest_actions
from ingest.models import Chunk, Document
from tests.conftest import DOCUMENTS
from tests.e2e.test_pipeline import read_events
from tests.support.stack import wait_for

pytestmark = [pytest.mark.services]

QUESTION = "What is this document about? Summarise its main topic."


@pytest.fixture
def paper(people: Any, live_db: Any, stack: Any) -> Document:
    collection = ingest_actions.create_collection(people.carol, "Research", people.hr)
    name = "layout-parser-paper-fast.pdf"
    with open(DOCUMENTS / "pdf" / name, "rb") as handle:
        ingest_actions.upload_documents(
            people.carol, collection, [ingest_actions.IncomingFile(name, handle)]
        )
    wait_for(
        lambda: Document.objects.filter(status="ready").exists(),
        timeout=120,
        message="the paper to be read",
    )
    return Document.objects.get(original_name=name)


def ask(api: httpx.Client, text: str, **extra: Any) -> tuple[list[tuple], int]:
    response = api.post("/api/v1/questions", json={"question": text, **extra})
    assert response.status_code == 202, response.text
    return read_events(api, response.json()["id"]), response.json()["id"]


def assert_read_whole(events: list[tuple], question_id: int, paper: Document) -> None:
    kinds = [kind for _, kind, _ in events]
    assert kinds[-1] == "done", events[-3:]
    progress = [
        data for _, kind, data in events if kind == "progress" and data["stage"] == "reading"
    ]
    total = progress[0]["total"]
    assert [p["done"] for p in progress] == list(range(total + 1))
    (sources,) = [data["sources"] for _, kind, data in events if kind == "sources"]
    assert sources and {s["document_id"] for s in sources} == {paper.pk}
    assert {s["page"] for s in sources} <= {1, 2} and sources[0]["page"] == 1
    stored = Question.objects.get(pk=question_id)
    assert stored.grounded is True and stored.answer != prompts.NOT_FOUND, stored.answer
    assert stored.documents == [paper.pk]
    chunks = set(Chunk.objects.filter(document=paper).values_list("pk", flat=True))
    assert set(stored.retrieved_chunk_ids) == chunks  # every passage was read
    citations = Citation.objects.filter(question=stored)
    assert citations.exists() and not citations.exclude(document=paper).exists()
    assert set(citations.values_list("page", flat=True)) <= {1, 2}


def test_a_picked_paper_is_read_part_by_part_and_cited_by_page(
    people: Any, api_for: Any, paper: Document
) -> None:
    api = api_for(people.alice)
    events, question_id = ask(api, QUESTION, document_id=paper.pk)
    assert_read_whole(events, question_id, paper)
    # The paper (two dense pages) is more than one part of the default context budget.
    total = next(data["total"] for _, kind, data in events if kind == "progress")
    assert total >= 2


def test_bob_naming_the_paper_is_refused_without_reading_it(
    people: Any, api_for: Any, paper: Document
) -> None:
    api = api_for(people.bob)
    events, question_id = ask(api, "Summarise the layout parser paper")
    assert [kind for _, kind, _ in events] in (
        ["sources", "token", "done"],
        ["queued", "sources", "token", "done"],
    )
    assert Question.objects.get(pk=question_id).answer == prompts.NOT_FOUND
    assert "layout" not in str(events).lower()


def test_stop_ends_the_reading_between_parts(people: Any, api_for: Any, paper: Document) -> None:
    api = api_for(people.alice)
    response = api.post("/api/v1/questions", json={"question": QUESTION, "document_id": paper.pk})
    question_id = response.json()["id"]
    seen: list[str] = []
    with api.stream("GET", f"/api/v1/questions/{question_id}/events") as stream:
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
                seen.append(event)
                if event == "progress" and seen.count("progress") == 1:
                    assert api.post(f"/api/v1/questions/{question_id}/cancel").status_code == 202
                if event in ("done", "error"):
                    break
    stored = Question.objects.get(pk=question_id)
    assert seen[-1] == "done"
    assert stored.answer.endswith("(Stopped.)")
    assert "sources" not in seen  # stopped while reading, before any answer was written
