"""/metrics: Prometheus' text format for the configured addresses, and for everyone else
exactly the page a missing URL gets. (Its numbers moving during a real answer, counted by
the worker processes: tests/e2e/test_observability.py.)"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from appliance import metrics
from appliance.operations.exporter import allowed
from ingest import actions as ingest_actions

pytestmark = pytest.mark.django_db

OUTSIDER = "192.0.2.44"


def samples(body: bytes) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_loopback_reads_every_family_in_prometheus_text_format(people: Any) -> None:
    collection = ingest_actions.create_collection(people.carol, "HR policies", people.hr)
    upload = ingest_actions.IncomingFile("leave.txt", io.BytesIO(b"Annual leave: 25 days."))
    ingest_actions.upload_documents(people.carol, collection, [upload])

    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    found = samples(response.content)
    assert found[("appliance_database_up", ())] == 1
    assert found[("appliance_redis_up", ())] == 1
    assert ("appliance_queue_depth", (("queue", "answer"),)) in found
    assert ("appliance_queue_oldest_seconds", (("queue", "ingest"),)) in found
    assert ("appliance_workers", (("role", "answer"),)) in found
    assert found[("appliance_documents", (("format", "txt"), ("status", "queued")))] == 1
    assert found[("appliance_queue_oldest_seconds", (("queue", "ingest"),))] >= 0
    # The counted families are there from the start (at zero), so a dashboard has a line.
    names = {name for name, _ in found}
    for family in (
        "appliance_questions_total",
        "appliance_answers_total",
        "appliance_refusals_total",
        "appliance_answer_first_token_seconds_count",
        "appliance_answer_seconds_count",
        "appliance_answer_tokens_per_second_count",
        "appliance_queue_wait_seconds_count",
    ):
        assert family in names, family


def test_the_grafana_dashboard_plots_only_metrics_the_appliance_exports() -> None:
    dashboard = json.loads(
        (settings.BASE_DIR / "deploy" / "grafana" / "appliance.json").read_text()
    )
    wanted = {
        re.sub(r"_(bucket|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"appliance_[a-z_]+", target["expr"])
    }
    # What the processes count (present once counted) and what each scrape reads.
    counted = {
        metric._name + ("_total" if metric._type == "counter" else "")
        for metric in vars(metrics._metrics()).values()
    }
    body = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    read = set(re.findall(r"^# HELP (appliance_[a-z_]+) ", body, re.MULTILINE))
    assert len(wanted) >= 15
    assert wanted - counted - read == set()


def test_ipv6_loopback_and_configured_networks_are_let_in() -> None:
    assert allowed("::1") and allowed("127.0.0.1") and allowed("::ffff:127.0.0.1")
    assert not allowed(OUTSIDER) and not allowed("") and not allowed("not-an-address")
    with override_settings(METRICS_ALLOWED=["10.0.5.0/24"]):
        assert allowed("10.0.5.17")
        assert not allowed("10.0.6.1") and not allowed("127.0.0.1")


@pytest.mark.parametrize("method", ["get", "post", "head"])
def test_metrics_from_elsewhere_is_exactly_the_missing_page(method: str) -> None:
    outsider = Client(REMOTE_ADDR=OUTSIDER)
    refused = getattr(outsider, method)("/metrics")
    missing = getattr(outsider, method)("/metrics-that-does-not-exist")
    assert refused.status_code == missing.status_code == 404
    assert refused.content == missing.content
    assert refused["Content-Type"] == missing["Content-Type"]


def test_a_forwarded_for_header_does_not_let_an_outsider_in() -> None:
    response = Client(REMOTE_ADDR=OUTSIDER, HTTP_X_FORWARDED_FOR="127.0.0.1").get("/metrics")
    assert response.status_code == 404


def test_behind_a_trusted_proxy_the_forwarded_client_decides() -> None:
    with override_settings(AXES_IPWARE_PROXY_COUNT=1):
        inside = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1")
        outside = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=OUTSIDER)
        assert inside.get("/metrics").status_code == 200
        assert outside.get("/metrics").status_code == 404


def test_a_bad_allowed_address_stops_the_appliance_at_start_up() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "appliance.settings",
            "APPLIANCE_METRICS_ALLOWED": "127.0.0.1,intranet",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "APPLIANCE_METRICS_ALLOWED: 'intranet' is not an address" in result.stderr
