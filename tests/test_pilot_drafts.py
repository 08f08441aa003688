"""Drafting golden questions with the local model: the model's drafts from real passages,
one run of the Celery task called in this process, a curator's accept / edit / reject and
the set's next version, and the doors: only curators of the set's department, and only
passages they may read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from appliance import redis_client
from appliance.accounts import actions as accounts
from appliance.accounts.models import Role, User
from appliance.audit.models import Action, AuditEvent
from inference.llm.backend import LocalModel, local_model
from inference.pilot import actions, drafts, tasks
from inference.pilot.goldens import GoldenRow
from inference.pilot.models import (
    Draft,
    DraftBatch,
    DraftBatchStatus,
    DraftStatus,
    GoldenSet,
    GoldenSetVersion,
)
from ingest.actions import create_collection
from ingest.models import Chunk, Collection
from tests.conftest import PASSWORD, ClientFor, People
from tests.test_canary import ingest_text

pytestmark = pytest.mark.django_db

HR_DOCUMENTS = {
    "leave-policy.txt": (
        "Employees are entitled to 25 days of paid annual leave per calendar year. Leave must "
        "be requested at least two weeks in advance through the HR portal, and up to five "
        "unused days may be carried over to the next year."
    ),
    "oslo-office.txt": (
        "Our office in Oslo opened in 2015. It has 120 employees and is led by Kari Nordmann, "
        "the country manager. The office is on the fourth floor of the harbour building."
    ),
    "company-history.txt": (
        "The company was founded in 1998 by Ingrid Berg in Bergen. Its first product was a "
        "weather station for fishing boats, sold to 300 customers along the coast of Norway."
    ),
}
BUDGET = "The travel budget for 2026 is 40,000 euros. Train travel is preferred under 500 km."
EXISTING = "How many days of paid annual leave do employees get?"


@dataclass
class Scene:
    hr: Collection
    finance: Collection
    golden: GoldenSet
    fiona: User  # curator of Finance: another department's curator


@pytest.fixture
def scene(people: People) -> Scene:
    hr = create_collection(None, "HR handbook", people.hr)
    finance = create_collection(None, "Budgets", people.finance)
    fiona, _ = accounts.create_or_update_user(None, "fiona", PASSWORD)
    accounts.add_membership(None, fiona, people.finance, Role.CURATOR)
    for name, text in HR_DOCUMENTS.items():
        ingest_text(people.carol, hr, name, text)
    ingest_text(fiona, finance, "budget.txt", BUDGET)
    version = actions.create_golden_set(
        people.carol, "HR pilot", people.hr, [GoldenRow(EXISTING, "25 days")], note="hr.csv"
    )
    return Scene(hr=hr, finance=finance, golden=version.golden_set, fiona=fiona)


def _batch(scene: Scene, people: People) -> DraftBatch:
    batch = actions.request_drafts(people.carol, scene.golden, scene.hr, 3)
    assert batch is not None
    return batch


def _draft(batch: DraftBatch, question: str, answer: str, chunk: Chunk) -> Draft:
    """A draft as the worker would store it, in a batch of its own (a batch drafts each
    passage once) beside ``batch``."""
    batch = DraftBatch.objects.create(
        golden_set=batch.golden_set,
        collection=batch.collection,
        collection_name=batch.collection_name,
        requested_by=batch.requested_by,
        chunk_ids=[chunk.pk],
        total=1,
        done=1,
        drafted=1,
        status=DraftBatchStatus.DONE,
    )
    return Draft.objects.create(
        golden_set=batch.golden_set,
        batch=batch,
        chunk_id=chunk.pk,
        document_name=chunk.document.original_name,
        page=chunk.page,
        question=question,
        expected_answer=answer,
        language="en",
        requested_by=batch.requested_by,
    )


def _hr_chunks(scene: Scene) -> list[Chunk]:
    return list(Chunk.objects.filter(collection=scene.hr).select_related("document").order_by("pk"))


# --- the model ----------------------------------------------------------------------------


def test_the_small_model_drafts_usable_questions_or_none() -> None:
    """SmolLM2-135M, the test settings' model, asked as the answer worker would ask it:
    whatever it writes, a kept draft is a question whose answer the passage holds."""
    model = local_model()
    passages = [
        *HR_DOCUMENTS.values(),
        "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. It is "
        "named after the engineer Gustave Eiffel, whose company built it from 1887 to 1889.",
        "New employees receive a laptop and a security badge on their first day. The IT "
        "helpdesk can be reached at extension 4455.",
    ]
    kept = []
    for passage in passages:
        candidate = drafts.draft_one(model, passage)
        if candidate is None:
            continue  # a poor reply is skipped, and drafting goes on
        kept.append(candidate)
        assert candidate.question.endswith("?")
        assert drafts._unusable(candidate.question, candidate.answer, passage) == ""
        assert candidate.question != drafts.EXAMPLE_QUESTION
    # With its worked example the small model gets about half of these right; none at all
    # would mean the prompt or the reading broke.
    assert kept, "the small model drafted nothing usable from five clear passages"


# --- the task -----------------------------------------------------------------------------


def test_one_run_of_the_task_reads_every_sampled_passage(
    people: People, scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _batch(scene, people)
    assert batch.total == 3 and batch.status == DraftBatchStatus.QUEUED
    names = set(HR_DOCUMENTS)
    # The task queues its next step itself; here each is run in this process instead.
    queued: list[int] = []
    monkeypatch.setattr(tasks.pilot_draft_questions, "delay", queued.append)
    outcomes = [tasks.pilot_draft_questions(batch.pk)]
    while queued:
        outcomes.append(tasks.pilot_draft_questions(queued.pop()))
    assert outcomes == [drafts.MORE, drafts.MORE, drafts.FINISHED]

    batch.refresh_from_db()
    assert (batch.status, batch.done, batch.error) == (DraftBatchStatus.DONE, 3, "")
    stored = list(Draft.objects.filter(batch=batch))
    assert batch.drafted == len(stored)
    for draft in stored:
        assert draft.chunk_id in batch.chunk_ids
        assert draft.document_name in names
        assert draft.status == DraftStatus.PENDING
        assert draft.requested_by == people.carol
        assert draft.question.endswith("?") and draft.expected_answer
    changes = [
        event.details["change"]
        for event in AuditEvent.objects.filter(action=Action.GOLDEN_DRAFTS).order_by("id")
    ]
    assert changes == ["requested", "drafted"]
    # A step delivered again after the batch ended changes nothing.
    assert tasks.pilot_draft_questions(batch.pk) == drafts.STOPPED
    assert Draft.objects.filter(batch=batch).count() == len(stored)


def test_passages_are_read_as_the_curator_may_read_them_when_drafting(
    people: People, scene: Scene
) -> None:
    batch = _batch(scene, people)
    # The person behind the batch no longer reads HR (here: the batch is bob's).
    DraftBatch.objects.filter(pk=batch.pk).update(requested_by=people.bob)
    outcome = drafts.MORE
    while outcome == drafts.MORE:
        outcome = drafts.step(batch.pk)
    batch.refresh_from_db()
    assert (batch.status, batch.done, batch.drafted) == (DraftBatchStatus.DONE, 3, 0)
    assert not Draft.objects.exists()


def test_a_missing_model_fails_the_batch_with_its_reason(
    people: People, scene: Scene, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def missing() -> LocalModel:
        return LocalModel(
            tmp_path / "gone.gguf", chat_format="template", context=2048, threads=1, gpu_layers=0
        )

    monkeypatch.setattr(drafts, "get_model", missing)
    batch = _batch(scene, people)
    assert drafts.step(batch.pk) == drafts.FINISHED
    batch.refresh_from_db()
    assert batch.status == DraftBatchStatus.FAILED
    assert "gone.gguf is missing" in batch.error
    event = AuditEvent.objects.filter(action=Action.GOLDEN_DRAFTS).latest("id")
    assert event.details["change"] == "failed"


def test_the_reconciler_resumes_a_batch_whose_step_was_lost(
    people: People, scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _batch(scene, people)
    assert drafts.batches_to_resume() == []  # just asked: its step is on its way
    an_hour_ago = timezone.now() - timedelta(hours=1)
    DraftBatch.objects.filter(pk=batch.pk).update(updated_at=an_hour_ago)
    monkeypatch.setattr(redis_client, "queue_length", lambda queue: 0)
    queued: list[int] = []
    monkeypatch.setattr(tasks.pilot_draft_questions, "delay", queued.append)
    assert tasks.reconcile() == 1
    assert queued == [batch.pk]


def test_a_stopped_batch_drafts_no_more(people: People, scene: Scene) -> None:
    batch = _batch(scene, people)
    assert actions.stop_drafting(people.carol, batch)
    assert not actions.stop_drafting(people.carol, batch)  # once is enough
    assert drafts.step(batch.pk) == drafts.STOPPED
    batch.refresh_from_db()
    assert (batch.status, batch.done) == (DraftBatchStatus.STOPPED, 0)


def test_passages_drafted_before_are_not_drafted_again(people: People, scene: Scene) -> None:
    first = actions.request_drafts(people.carol, scene.golden, scene.hr, 50)
    assert first is not None and first.total == len(_hr_chunks(scene))
    for chunk in _hr_chunks(scene):
        _draft(first, f"What does {chunk.document.original_name} say?", "something", chunk)
    assert actions.request_drafts(people.carol, scene.golden, scene.hr, 5) is None


# --- access -------------------------------------------------------------------------------


def test_a_curator_drafts_only_from_collections_they_may_read(
    people: People, scene: Scene, signed_in: ClientFor
) -> None:
    assert drafts.sample_passages(people.carol, scene.finance, 5) == []
    assert actions.request_drafts(people.carol, scene.golden, scene.finance, 5) is None
    client = signed_in(people.carol)
    url = f"/pilot/golden-sets/{scene.golden.pk}/drafts"
    forbidden = client.post(url, {"collection": scene.finance.pk, "count": 5}, follow=True)
    missing = client.post(url, {"collection": 987654321, "count": 5}, follow=True)
    assert forbidden.status_code == missing.status_code == 200
    assert forbidden.redirect_chain == missing.redirect_chain
    said = [str(m) for m in forbidden.context["messages"]]
    assert said == [str(m) for m in missing.context["messages"]]
    assert "Choose a collection you can read" in said[0]
    assert not DraftBatch.objects.exists()
    # The page offers only collections she may read.
    page = client.get(f"/pilot/golden-sets/{scene.golden.pk}/").content.decode()
    assert "HR handbook" in page and "Budgets" not in page


def test_another_departments_curator_gets_404_for_every_drafting_door(
    people: People, scene: Scene, signed_in: ClientFor
) -> None:
    batch = _batch(scene, people)
    draft = _draft(batch, "Who leads the Oslo office?", "Kari Nordmann", _hr_chunks(scene)[1])
    batches = DraftBatch.objects.count()
    base = f"/pilot/golden-sets/{scene.golden.pk}"
    doors = [
        ("get", f"{base}/", {}),
        ("get", f"{base}/drafts/progress", {}),
        ("post", f"{base}/drafts", {"collection": scene.hr.pk, "count": 2}),
        ("post", f"{base}/drafts/stop", {"batch": batch.pk}),
        ("post", f"{base}/drafts/review", {"draft": draft.pk, f"decision-{draft.pk}": "reject"}),
    ]
    for person in (scene.fiona, people.alice, people.bob, people.dave, people.erin, people.oscar):
        client = signed_in(person)
        for method, url, data in doors:
            response = getattr(client, method)(url, data)
            assert response.status_code == 404, f"{person.username} {method} {url}"
    # A missing set's doors answer the same.
    missing = signed_in(scene.fiona).get("/pilot/golden-sets/987654321/drafts/progress")
    assert missing.status_code == 404
    # Through her own set, fiona cannot decide on carol's draft either.
    own = actions.create_golden_set(scene.fiona, "Finance pilot", people.finance, [])
    signed_in(scene.fiona).post(
        f"/pilot/golden-sets/{own.golden_set_id}/drafts/review",
        {"draft": draft.pk, f"decision-{draft.pk}": "accept"},
    )
    draft.refresh_from_db()
    batch.refresh_from_db()
    assert draft.status == DraftStatus.PENDING
    assert batch.status == DraftBatchStatus.QUEUED
    assert DraftBatch.objects.count() == batches
    assert GoldenSetVersion.objects.filter(golden_set=own.golden_set).count() == 1


# --- reviewing ----------------------------------------------------------------------------


def test_accepting_drafts_makes_the_next_version_and_leaves_the_earlier_one(
    people: People, scene: Scene
) -> None:
    batch = _batch(scene, people)
    leave, oslo, history = _hr_chunks(scene)
    accepted = _draft(batch, "Who leads the Oslo office", "Kari", oslo)
    rejected = _draft(batch, "What is the leave?", "leave", leave)
    edited = _draft(batch, "Who founded the company?", "Ingrid", history)
    repeated = _draft(batch, EXISTING.upper(), "25 days", leave)
    emptied = _draft(batch, "When was the company founded?", "1998", history)
    review = actions.review_drafts(
        people.carol,
        scene.golden,
        [
            drafts.Decision(
                accepted.pk, drafts.ACCEPT, " Who leads the Oslo office? ", "Kari Nordmann"
            ),
            drafts.Decision(rejected.pk, drafts.REJECT, rejected.question, ""),
            drafts.Decision(edited.pk, drafts.KEEP, edited.question, "Ingrid Berg"),
            drafts.Decision(repeated.pk, drafts.ACCEPT, repeated.question, "25 days"),
            drafts.Decision(emptied.pk, drafts.ACCEPT, "  ", "1998"),
        ],
    )
    assert review.accepted == [accepted.pk]
    assert sorted(review.edited) == sorted([accepted.pk, edited.pk])
    assert review.rejected == [rejected.pk]
    assert len(review.problems) == 2
    assert any("already holds this question" in p for p in review.problems)
    assert any("the question is empty" in p for p in review.problems)

    first, second = scene.golden.versions.order_by("number")
    assert review.version == second and second.number == 2
    assert [q.question for q in first.questions.all()] == [EXISTING]  # never edited
    rows = [q.as_row() for q in second.questions.order_by("position")]
    assert [row["question"] for row in rows] == [EXISTING, "Who leads the Oslo office?"]
    assert rows[1]["expected_answer"] == "Kari Nordmann"
    assert rows[1]["expected_sources"] == [{"document": "oslo-office.txt", "page": oslo.page}]
    assert rows[1]["tags"] == [drafts.TAG] and rows[1]["answerable"]

    states = dict(Draft.objects.values_list("pk", "status"))
    assert states == {
        accepted.pk: DraftStatus.ACCEPTED,
        rejected.pk: DraftStatus.REJECTED,
        edited.pk: DraftStatus.PENDING,
        repeated.pk: DraftStatus.PENDING,
        emptied.pk: DraftStatus.PENDING,
    }
    accepted.refresh_from_db()
    edited.refresh_from_db()
    assert accepted.accepted_in == second and accepted.reviewed_by == people.carol
    assert edited.expected_answer == "Ingrid Berg"
    assert emptied.question == "When was the company founded?"  # a bad edit is not saved

    (event,) = AuditEvent.objects.filter(action=Action.GOLDEN_DRAFTS, details__change="reviewed")
    assert event.details["accepted"] == [accepted.pk]
    assert event.details["rejected"] == [rejected.pk]
    assert event.details["version"] == 2
    # Drafts are made of documents, which auditors do not read: no text in the audit row.
    assert "Oslo" not in json.dumps(event.details) and "Kari" not in json.dumps(event.details)
    assert AuditEvent.objects.filter(action=Action.GOLDEN_SET_VERSION).count() == 2

    # Deciding again on a draft already accepted changes nothing.
    again = actions.review_drafts(
        people.carol,
        scene.golden,
        [drafts.Decision(accepted.pk, drafts.REJECT, accepted.question, "")],
    )
    assert not again.changed and again.version is None
    assert scene.golden.versions.count() == 2


def test_a_curator_reviews_drafts_on_the_golden_sets_page(
    people: People, scene: Scene, signed_in: ClientFor
) -> None:
    client = signed_in(people.carol)
    base = f"/pilot/golden-sets/{scene.golden.pk}"
    response = client.post(f"{base}/drafts", {"collection": scene.hr.pk, "count": 2})
    assert response.status_code == 302 and response["Location"].endswith(f"{base}/#drafts")
    batch = DraftBatch.objects.get()
    assert (batch.total, batch.requested_by) == (2, people.carol)
    progress = client.get(f"{base}/drafts/progress").json()
    (shown,) = progress["batches"]
    assert (shown["id"], shown["status"], shown["done"], shown["total"], shown["final"]) == (
        batch.pk,
        "queued",
        0,
        2,
        False,
    )

    oslo = _hr_chunks(scene)[1]
    draft = _draft(batch, "Who leads the Oslo office?", "Kari Nordmann", oslo)
    page = client.get(f"{base}/").content.decode()
    assert "Who leads the Oslo office?" in page
    assert "harbour building" in page  # the passage, to judge the draft by
    assert "0 of 2" in page

    response = client.post(
        f"{base}/drafts/review",
        {
            "draft": [draft.pk],
            f"decision-{draft.pk}": "accept",
            f"question-{draft.pk}": "Who leads the office in Oslo?",
            f"answer-{draft.pk}": "Kari Nordmann",
        },
        follow=True,
    )
    assert "1 question accepted into version 2" in response.content.decode()
    latest = scene.golden.latest
    assert latest is not None and latest.number == 2
    assert latest.questions.count() == 2
    assert latest.questions.get(position=2).question == "Who leads the office in Oslo?"

    response = client.post(f"{base}/drafts/stop", {"batch": batch.pk}, follow=True)
    assert "Drafting stopped" in response.content.decode()
    batch.refresh_from_db()
    assert batch.status == DraftBatchStatus.STOPPED


def test_the_golden_set_page_costs_the_same_queries_with_more_drafts(
    people: People, scene: Scene, signed_in: ClientFor
) -> None:
    batch = _batch(scene, people)
    chunks = _hr_chunks(scene)
    client = signed_in(people.carol)
    url = f"/pilot/golden-sets/{scene.golden.pk}/"

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    _draft(batch, "Question one?", "one", chunks[0])
    few = queries()
    for round_ in range(2):  # more batches, and more drafts with their passages
        for chunk in chunks:
            _draft(batch, f"Question {round_} about {chunk.pk}?", "answer", chunk)
    assert queries() == few


def test_a_curator_starts_an_empty_golden_set_to_draft_into(
    people: People, scene: Scene, signed_in: ClientFor
) -> None:
    client = signed_in(people.carol)
    response = client.post(
        "/pilot/golden-sets/new", {"name": "Drafted", "department": people.hr.pk}
    )
    created = GoldenSet.objects.get(name="Drafted")
    assert response["Location"].endswith(f"/pilot/golden-sets/{created.pk}/#drafts")
    assert created.latest is not None and created.latest.questions.count() == 0
    # Not in a department she does not curate.
    client.post("/pilot/golden-sets/new", {"name": "Theirs", "department": people.finance.pk})
    assert not GoldenSet.objects.filter(name="Theirs").exists()
