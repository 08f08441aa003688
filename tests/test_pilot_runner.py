"""A pilot run's row is the truth of its progress: a cancelled run stops before its next
question, and a run whose step message was lost is picked up again by the reconciler."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from appliance.audit.models import Action, AuditEvent
from inference.pilot import actions, runner, tasks
from inference.pilot.goldens import GoldenRow
from inference.pilot.models import Run, RunStatus

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
