"""A pilot run's row is the truth of its progress: a cancelled run stops before its next
question, and a run whose step message was lost is picked up again by the reconciler."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from appliance.audit.models import Action, AuditEvent
from inference.models import Question
from inference.pilot import actions, runner, tasks
from inference.pilot.goldens import GoldenRow
from inference.pilot.models import Run, RunStatus
from ingest import actions as ingest_actions
from tests.test_canary import ingest_text

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(people: Any, django_capture_on_commit_callbacks: Any) -> Run:
    version = actions.create_golden_set(
        people.carol, "HR pilot", people.hr, [GoldenRow("What is the leave policy?")]
    )
    config = actions.save_configuration(people.carol, "small", model="smollm2-135m")
    with django_capture_on_commit_callbacks(execute=False):  # no worker here
        return actions.start_run(people.carol, version, config, people.alice)


def test_a_cancelled_run_stops_before_its_next_question(people: Any, run: Run) -> None:
    assert actions.cancel_run(people.carol, run)
    assert not actions.cancel_run(people.carol, run)  # once
    assert runner.step(run.pk) == runner.STOPPED
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.done == 0
    assert AuditEvent.objects.filter(action=Action.PILOT_RUN_CANCEL).count() == 1


def test_a_run_whose_step_was_lost_is_queued_again(run: Run) -> None:
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("answer")
    assert tasks.reconcile() == 0  # a fresh run is not stale
    Run.objects.filter(pk=run.pk).update(
        created_at=timezone.now() - timedelta(seconds=runner.STALE_SECONDS * 2)
    )
    assert runner.runs_to_resume() == [run.pk]
    assert tasks.reconcile() == 1
    (raw,) = broker.lrange("answer", 0, -1)
    message = json.loads(raw)
    assert message["headers"]["task"] == "inference.pilot_step"
    assert tasks.reconcile() == 0  # the queue is not empty now
    broker.delete("answer")


def test_an_inline_run_measures_its_overhead_against_questions_asked_one_by_one(
    people: Any, settings: Any, tmp_path: Any
) -> None:
    """GIVEN a golden set over a real document WHEN ``pilot run --inline --measure-overhead``
    THEN the same questions are asked one by one before and after the run (real retrieval,
    the real small model), the ratio is reported, and those questions leave no trace in
    anyone's history."""
    settings.LLM_MAX_ANSWER_TOKENS = 8
    collection = ingest_actions.create_collection(people.carol, "Handbook", people.hr)
    ingest_text(
        people.carol,
        collection,
        "leave.txt",
        "Annual leave. Every employee gets 27 working days of annual leave per calendar year.",
    )
    golden = tmp_path / "golden.csv"
    golden.write_text(
        "question,expected_answer,expected_sources\n"
        "How many days of annual leave do employees get?,27 working days,leave.txt\n"
        "How much annual leave is there per year?,27 working days,leave.txt\n"
    )
    actions.save_configuration(people.carol, "tiny", model="smollm2-135m", max_answer_tokens=8)
    questions_before = Question.objects.count()
    out = io.StringIO()

    call_command(
        "pilot", "run", "--golden-set", str(golden), "--config", "tiny", "--as", "alice",
        "--inline", "--measure-overhead", "--json", stdout=out, stderr=io.StringIO(),
    )  # fmt: skip

    result = json.loads(out.getvalue())
    assert result["questions"] == 2 and result["recall_at_10"] == 1.0
    before, after = result["one_by_one_seconds_before_and_after"]
    assert before > 0 and after > 0
    assert result["one_by_one_seconds"] == pytest.approx((before + after) / 2, abs=0.01)
    assert result["overhead_ratio"] == pytest.approx(
        result["run_seconds"] / result["one_by_one_seconds"], rel=0.01
    )
    assert Question.objects.count() == questions_before
