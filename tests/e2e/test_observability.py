"""Metrics and logs of the real processes: while the answer worker answers a question,
/metrics (added up from the web and worker processes' files) shows the counters and
histograms moving; the worker's log lines are JSON, carry the id of the web request that
asked, and never the question's text."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ingest import actions as ingest_actions
from tests.e2e.test_pipeline import read_events, upload, wait_final
from tests.support.stack import Stack, wait_for

pytestmark = [pytest.mark.services]

QUESTION = "How many bottles of water were delivered?"
REQUEST_ID = "observability-test-0001"


def scrape(stack: Stack) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"{stack.url}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


LOGS = ("web", "ingest", "answer")
# Celery writes this one line itself, straight to stdout, when it is told to stop.
CELERY_SHUTDOWN = re.compile(r"worker: (Warm|Cold) shutdown \(MainProcess\)")


def log_sizes(stack: Stack) -> dict[str, int]:
    """Where each process's log ends now: the test reads only what comes after."""
    return {name: (stack.log_dir / f"{name}.log").stat().st_size for name in LOGS}


def json_lines(stack: Stack, name: str, since: dict[str, int]) -> list[dict[str, Any]]:
    with open(stack.log_dir / f"{name}.log", "rb") as handle:
        handle.seek(since[name])
        text = handle.read().decode(errors="replace")
    lines = [raw for raw in text.splitlines() if raw.strip() and not CELERY_SHUTDOWN.fullmatch(raw)]
    parsed = []
    for raw in lines:
        try:
            parsed.append(json.loads(raw))
        except ValueError:
            raise AssertionError(f"{name}.log has a line that is not JSON: {raw[:300]}") from None
    return parsed


def test_metrics_move_during_an_answer_and_logs_follow_the_request(
    people: Any, api_for: Any, stack: Stack
) -> None:
    # The stack serves the whole session: earlier tests' lines (a worker they killed) are
    # theirs to judge.
    since = log_sizes(stack)
    curator = api_for(people.carol)
    collection = ingest_actions.create_collection(people.carol, "HR policies", people.hr)
    memo, locked = upload(curator, collection, "pdf/fake-memo.pdf", "pdf/password.pdf")
    assert wait_final(curator, memo["id"])["status"] == "ready"
    assert wait_final(curator, locked["id"])["status"] == "failed"

    before = scrape(stack)
    api = api_for(people.alice)
    api.timeout = httpx.Timeout(600)  # a loaded test host may take minutes per answer
    asked = api.post(
        "/api/v1/questions", json={"question": QUESTION}, headers={"X-Request-ID": REQUEST_ID}
    )
    assert asked.status_code == 202, asked.text
    assert asked.headers["X-Request-ID"] == REQUEST_ID
    question_id = asked.json()["id"]

    # Scrape while the answer streams: the endpoint answers beside a busy worker.
    during: list[dict] = []
    events = []
    reader = threading.Thread(target=lambda: events.extend(read_events(api, question_id)))
    reader.start()
    during.append(scrape(stack))
    reader.join(600)
    assert events and events[-1][1] == "done", events

    # The worker counts the answer just after the "done" event has left for the browser,
    # so a scrape at once may come a moment too early: wait for the count to arrive.
    def scrape_once_answered() -> dict | None:
        scraped = scrape(stack)
        counted = value(scraped, "appliance_answers_total", outcome="answered")
        return (
            scraped
            if counted > value(before, "appliance_answers_total", outcome="answered")
            else None
        )

    after = wait_for(scrape_once_answered, timeout=60, message="the answer to be counted")

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("appliance_questions_total") == 1
    assert moved("appliance_answers_total", outcome="answered") == 1
    assert moved("appliance_answer_first_token_seconds_count") == 1
    assert moved("appliance_answer_first_token_seconds_sum") > 0
    assert moved("appliance_answer_seconds_count") == 1
    assert moved("appliance_answer_tokens_per_second_count") >= 1
    assert moved("appliance_model_tokens_total", kind="completion") > 0
    assert moved("appliance_queue_wait_seconds_count", queue="answer") == 1
    assert value(after, "appliance_queue_wait_seconds_count", queue="ingest") >= 2
    assert value(after, "appliance_documents_ingested_total", status="ready", format="pdf") >= 1
    assert value(after, "appliance_parse_failures_total", reason="encrypted", format="pdf") >= 1
    assert value(after, "appliance_documents", status="ready", format="pdf") >= 1
    assert value(after, "appliance_workers", role="answer") >= 1
    assert value(after, "appliance_workers", role="ingest") >= 1
    assert value(after, "appliance_database_up") == 1 and value(after, "appliance_redis_up") == 1
    assert value(after, "appliance_queue_depth", queue="answer") == 0
    assert during and value(during[0], "appliance_redis_up") == 1

    # Logs: every line of the worker is JSON; its line for this answer names the web
    # request that asked, and no line anywhere holds the question.
    worker = json_lines(stack, "answer", since)
    finished = [
        e
        for e in worker
        if e.get("event") == "answer.finished" and e.get("question_id") == question_id
    ]
    assert len(finished) == 1, finished
    assert finished[0]["request_id"] == REQUEST_ID
    assert finished[0]["outcome"] == "answered" and finished[0]["process"] == "answer"
    assert finished[0]["ttft_ms"] > 0 and finished[0]["completion_tokens"] > 0
    web = json_lines(stack, "web", since)
    assert any(
        e.get("event") == "request"
        and e.get("request_id") == REQUEST_ID
        and e.get("path") == "/api/v1/questions"
        and e.get("status") == 202
        for e in web
    )
    queued = [e for e in web if e.get("event") == "question.queued"]
    assert any(e["request_id"] == REQUEST_ID and e["question_id"] == question_id for e in queued)
    for name in ("answer", "web", "ingest"):
        text = (stack.log_dir / f"{name}.log").read_text(errors="replace")
        assert "bottles of water" not in text, name
        assert "bottles" not in text.lower(), name  # nor the document's text
    documents = [
        e for e in json_lines(stack, "ingest", since) if e.get("event") == "document.finished"
    ]
    assert {e["document_id"] for e in documents} >= {memo["id"], locked["id"]}
