"""What the processes count and time, for ``/metrics`` (Prometheus' text format).

The web server runs several uvicorn processes and each Celery worker runs its tasks in a
child process, so no one process sees everything. prometheus-client's multiprocess mode
is the engine: every process writes its counters and histograms to small memory-mapped
files in ``METRICS_DIR`` (``var/run/metrics``), and the web process that answers
``/metrics`` adds them all up (``appliance.operations.exporter``). Nothing is sent between
processes, a worker that dies keeps its counts, and nothing home-made aggregates. The
folder is emptied when the whole appliance starts (``deploy/up``, the systemd units).

Each value is a count of events (``*_total``) or a histogram of durations; what can be
read from PostgreSQL or Redis at any moment (queue depths, documents by status, workers
alive, service health) is read when ``/metrics`` is asked, not counted here.

Recording never stops work: a metric that cannot be written is logged and skipped.
"""

from __future__ import annotations

import logging
import os
from functools import cache
from types import SimpleNamespace
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)

# Seconds: a first token in tens of milliseconds (a model server) to minutes (gpt-oss-20b
# reading a long prompt on a CPU).
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90, 120, 180, 300, 600)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
TOKEN_RATE_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 40, 60, 80, 120, 160, 250, 400)

ANSWER_OUTCOMES = ("answered", "refused", "stopped", "error")
REFUSAL_REASONS = ("no_passage", "unreadable_document")
QUEUES = ("answer", "ingest")


@cache
def _metrics() -> SimpleNamespace:
    """The metrics, made on first use: prometheus-client decides at import whether it
    writes to files, so the folder must be named before it loads. The settings name it
    (``PROMETHEUS_MULTIPROC_DIR``), and they load after this module, with the Celery app."""
    folder = settings.METRICS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    import prometheus_client as prom
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:
        raise RuntimeError(
            "prometheus_client was imported before the appliance named its metrics folder; "
            "the counts of this process would not reach /metrics"
        )
    made = SimpleNamespace(
        questions=prom.Counter("appliance_questions", "Questions asked (web)."),
        answers=prom.Counter(
            "appliance_answers",
            "Questions finished by the answer workers, by outcome: answered (from "
            "passages), refused (the documents hold nothing relevant), stopped, error.",
            ["outcome"],
        ),
        refusals=prom.Counter(
            "appliance_refusals",
            "Questions answered with the plain refusal, by why: no_passage (nothing above "
            "the relevance floor) or unreadable_document (the picked document is gone).",
            ["reason"],
        ),
        first_token=prom.Histogram(
            "appliance_answer_first_token_seconds",
            "From the moment a worker takes a question to the first answer token it sends.",
            buckets=LATENCY_BUCKETS,
        ),
        latency=prom.Histogram(
            "appliance_answer_seconds",
            "From the moment a worker takes a question to the stored answer (waiting in the "
            'queue is appliance_queue_wait_seconds{queue="answer"}).',
            buckets=LATENCY_BUCKETS,
        ),
        token_rate=prom.Histogram(
            "appliance_answer_tokens_per_second",
            "Tokens the model wrote per second after its first one, per answer.",
            buckets=TOKEN_RATE_BUCKETS,
        ),
        tokens=prom.Counter(
            "appliance_model_tokens",
            "Tokens the answer workers' model read (prompt) and wrote (completion).",
            ["kind"],
        ),
        queue_wait=prom.Histogram(
            "appliance_queue_wait_seconds",
            "From queueing a task to a worker starting it, per queue.",
            ["queue"],
            buckets=WAIT_BUCKETS,
        ),
        tasks=prom.Counter(
            "appliance_tasks",
            "Tasks the workers finished, per queue and Celery state.",
            ["queue", "state"],
        ),
        documents=prom.Counter(
            "appliance_documents_ingested",
            "Documents the ingest workers finished, by status (ready, failed) and format.",
            ["status", "format"],
        ),
        parse_failures=prom.Counter(
            "appliance_parse_failures",
            "Documents that failed, by reason (encrypted, damaged, unsupported, no_text, "
            "too_large, refused, time_limit, worker_lost, missing_file, unexpected, other) "
            "and format.",
            ["reason", "format"],
        ),
    )
    # Every label a dashboard plots exists from the start, at zero, rather than appearing
    # with its first event.
    for outcome in ANSWER_OUTCOMES:
        made.answers.labels(outcome)
    for reason in REFUSAL_REASONS:
        made.refusals.labels(reason)
    for kind in ("prompt", "completion"):
        made.tokens.labels(kind)
    for queue in QUEUES:
        made.queue_wait.labels(queue)
    return made


def _record(what: str, action: Any) -> None:
    try:
        action(_metrics())
    except Exception:
        log.warning("could not record the metric %s", what, exc_info=True)


def question_asked() -> None:
    _record("questions", lambda m: m.questions.inc())


def answer_finished(
    outcome: str,
    first_token_s: float | None = None,
    total_s: float | None = None,
) -> None:
    def record(m: SimpleNamespace) -> None:
        m.answers.labels(outcome).inc()
        if first_token_s is not None:
            m.first_token.observe(first_token_s)
        if total_s is not None:
            m.latency.observe(total_s)

    _record("answers", record)


def answer_refused(reason: str) -> None:
    _record("refusals", lambda m: m.refusals.labels(reason).inc())


def model_generated(
    prompt_tokens: int, completion_tokens: int, first_token_s: float | None, total_s: float
) -> None:
    """One call of the model: its tokens, and how fast it wrote after its first token."""

    def record(m: SimpleNamespace) -> None:
        m.tokens.labels("prompt").inc(prompt_tokens)
        m.tokens.labels("completion").inc(completion_tokens)
        writing = total_s - (first_token_s or 0.0)
        if completion_tokens > 1 and writing > 0:
            m.token_rate.observe((completion_tokens - 1) / writing)

    _record("model tokens", record)


def queue_waited(queue: str, seconds: float) -> None:
    _record("queue wait", lambda m: m.queue_wait.labels(queue).observe(max(seconds, 0.0)))


def task_finished(queue: str, state: str) -> None:
    _record("tasks", lambda m: m.tasks.labels(queue, state).inc())


def document_finished(status: str, kind: str, reason: str | None = None) -> None:
    def record(m: SimpleNamespace) -> None:
        m.documents.labels(status, kind or "unknown").inc()
        if reason is not None:
            m.parse_failures.labels(reason, kind or "unknown").inc()

    _record("documents", record)


def ready() -> None:
    """Make the metrics (and their folder) now; the exporter reads them afterwards."""
    _metrics()
