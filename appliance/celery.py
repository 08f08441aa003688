"""The Celery application: queue "ingest" for ingestion workers, "answer" for answer workers."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")

app = Celery("appliance")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["ingest", "inference"])


from appliance import workers  # noqa: E402,F401  (worker heartbeat signals)
