"""GET /metrics: the appliance in Prometheus' text format, for the addresses in
``APPLIANCE_METRICS_ALLOWED`` only (anyone else gets the page every missing URL gets).

Two kinds of numbers meet here:

- what the processes counted and timed (questions, answers, time to first token, queue
  waits, documents, parse failures), added up from every process's files by
  prometheus-client's ``MultiProcessCollector`` (``appliance.metrics`` says why);
- what is true right now, read when asked: queue depths and the age of the oldest waiting
  item per queue, documents by status and format, answer and ingest workers alive (their
  Redis heartbeats), and whether PostgreSQL and Redis answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from appliance import metrics, redis_client
from appliance.audit.context import client_ip
from appliance.workers import WORKER_KEY
from inference.models import Question, QuestionStatus
from ingest.models import Document, Status

QUEUES = ("answer", "ingest")


def allowed(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED)


@csrf_exempt  # so that any method from elsewhere meets the same 404, never a CSRF 403
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not allowed(client_ip(request.META)):
        raise Http404
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    metrics.ready()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(settings.METRICS_DIR))
    registry.register(CurrentState())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class CurrentState:
    """Read from PostgreSQL and Redis at each scrape; a service that is away is reported
    as down (0), and the numbers that need it are left out rather than guessed."""

    def gauge(self, name: str, text: str, labels: list[str] | None = None) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, text, labels=labels)

    def collect(self) -> Iterator[Any]:
        database_ok = self._database()
        database_up = self.gauge("appliance_database_up", "1 when PostgreSQL answers.")
        database_up.add_metric([], 1 if database_ok else 0)
        yield database_up
        redis_up = self.gauge("appliance_redis_up", "1 when Redis answers.")
        redis_ok = self._redis()
        redis_up.add_metric([], 1 if redis_ok else 0)
        yield redis_up
        if redis_ok:
            yield from self._redis_state()
        if database_ok:
            yield from self._database_state()

    def _database(self) -> bool:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except Exception:
            return False

    def _redis(self) -> bool:
        try:
            return bool(redis_client.client().ping())
        except Exception:
            return False

    def _redis_state(self) -> Iterator[Any]:
        depth = self.gauge(
            "appliance_queue_depth", "Messages waiting in each Celery queue.", ["queue"]
        )
        for queue in QUEUES:
            length = redis_client.queue_length(queue)
            if length >= 0:
                depth.add_metric([queue], length)
        yield depth
        workers = self.gauge(
            "appliance_workers",
            "Worker processes alive (their heartbeat in Redis is fresh), per role.",
            ["role"],
        )
        try:
            for role in QUEUES:
                keys = redis_client.client().scan_iter(WORKER_KEY.format(role=role, host="*"))
                workers.add_metric([role], sum(1 for _ in keys))
        except Exception:
            return
        yield workers

    def _database_state(self) -> Iterator[Any]:
        now = timezone.now()
        oldest = self.gauge(
            "appliance_queue_oldest_seconds",
            "Age of the oldest item still waiting for a worker, per queue (0: none).",
            ["queue"],
        )
        waiting_since = {
            "answer": Question.objects.filter(status=QuestionStatus.QUEUED).aggregate(
                at=Min("created_at")
            )["at"],
            "ingest": Document.objects.filter(status=Status.QUEUED).aggregate(at=Min("updated_at"))[
                "at"
            ],
        }
        for queue, since in waiting_since.items():
            oldest.add_metric([queue], (now - since).total_seconds() if since else 0)
        yield oldest
        documents = self.gauge(
            "appliance_documents",
            "Documents by status and format, as the database holds them now.",
            ["status", "format"],
        )
        counts = Document.objects.values("status", "kind").annotate(n=Count("id")).order_by()
        for row in counts:
            documents.add_metric([row["status"], row["kind"] or "unknown"], row["n"])
        yield documents
