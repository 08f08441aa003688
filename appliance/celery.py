"""The Celery application: queue "ingest" for ingestion workers, "answer" for answer workers."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")

app = Celery("appliance")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery's Django support closes every database connection before and after each task
# unless this is set: a new PostgreSQL connection on the way to each answer's first token
# (6 ms idle, 15 ms on a busy host). appliance.workers recycles them the Django way instead
# (CONN_MAX_AGE and health checks); Celery itself would close them every 2,000,000 tasks.
app.conf["CELERY_DB_REUSE_MAX"] = 1_000_000
app.autodiscover_tasks(["ingest", "inference", "inference.pilot"])


from appliance import tracing, workers  # noqa: E402,F401  (task headers, worker heartbeats)
