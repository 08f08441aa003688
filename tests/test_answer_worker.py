"""The answer worker's own machinery, on the real Redis and the real embedding model: the
stop listener and the question embedded while the database works out the scope."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from django.utils import timezone

from inference import answering, events, liveness
from ingest.embedding import embed

pytestmark = pytest.mark.services


def _question(pk: int) -> Any:
    # What the event keys are made of: the id and the moment it was asked.
    return SimpleNamespace(pk=pk, created_at=timezone.now())


def test_a_stop_reaches_the_answering_worker_at_once() -> None:
    question = _question(9_000_001)
    with liveness.StopListener(question) as stop:
        assert not stop.wait(0.3), "nobody asked to stop"
        asked = time.monotonic()
        events.request_cancel(question)
        assert stop.wait(2), "the stop never arrived"
        # Woken by Redis, not found by a poll that comes round once a second.
        assert time.monotonic() - asked < 0.5
    assert events.cancel_requested(question)


def test_a_stop_asked_before_the_worker_listens_is_not_missed() -> None:
    question = _question(9_000_002)
    events.request_cancel(question)
    with liveness.StopListener(question) as stop:
        assert stop.wait(2)


def test_stops_are_per_question() -> None:
    mine, theirs = _question(9_000_003), _question(9_000_004)
    with liveness.StopListener(mine) as stop:
        events.request_cancel(theirs)
        assert not stop.wait(0.5)


def test_the_question_vector_computed_ahead_is_the_models_own(settings: Any) -> None:
    text = "How many trucks were used for the delivery?"
    vectors = answering.QueryVectors(text)
    ahead = vectors(settings.EMBEDDING_MODEL)
    assert vectors.pending.done()
    np.testing.assert_allclose(ahead, embed([text])[0], rtol=1e-5, atol=1e-6)
    assert ahead.shape == (384,)
