"""Worker processes announce themselves in Redis so /healthz can tell whether the ingest
and answer workers are alive (and, for answer workers, that their model has loaded)."""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading

from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
)
from django.conf import settings
from django.db import close_old_connections, connections

from appliance import logs, redis_client

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10
_stop = threading.Event()


@setup_logging.connect
def _logging(**_: object) -> None:
    """The workers log as every process does (one JSON line per event, appliance.logs):
    Celery leaves logging alone when this signal has a receiver."""
    logs.configure(settings.LOGGING)


def role() -> str:
    return os.environ.get("APPLIANCE_WORKER_ROLE", "")


# One key per worker process, with a short expiry the heartbeat renews; /healthz counts them.
WORKER_KEY = "appliance:worker:{role}:{host}"


def _key() -> str:
    return WORKER_KEY.format(role=role(), host=f"{socket.gethostname()}-{os.getpid()}")


def _beat() -> None:
    while not _stop.is_set():
        try:
            redis_client.client().set(_key(), "1", ex=HEARTBEAT_SECONDS * 3)
        except Exception as exc:  # Redis away for a moment: try again next beat
            log.warning("worker heartbeat failed: %s", exc)
        _stop.wait(HEARTBEAT_SECONDS)


@worker_process_init.connect
def _start(**_: object) -> None:
    if role() not in ("ingest", "answer"):
        return
    # Load the models before announcing, so "alive" also means "ready to work". The
    # packages are imported here: this module loads with the Celery app, before Django's
    # apps are ready, and a web process never loads them at all.
    from ingest.embedding import model as embedding_model

    embedding_model()
    if role() == "answer":
        from inference.llm.backend import get_model

        get_model()
    # The models leave about half a million long-lived Python objects behind (torch,
    # transformers); a full garbage collection walking them all paused a question for a
    # quarter of a second. Frozen, they are left out of every later collection.
    gc.collect()
    gc.freeze()
    threading.Thread(target=_beat, name="heartbeat", daemon=True).start()
    threading.Thread(target=_reconcile_loop, name="reconciler", daemon=True).start()


RECONCILE_SECONDS = 60


def _reconcile_loop() -> None:
    """Work whose worker died or whose queue message was lost is picked up again: once
    right after start (the usual moment after a crash) and then every minute. Ingest
    workers look after documents, answer workers after questions (and chat retention)."""
    # Imported here, not at the top: this module is loaded with the Celery app, before
    # Django's apps are ready to import models.
    if role() == "ingest":
        from ingest.tasks import reconcile as documents

        reconcilers = [documents]
    else:
        from inference.pilot.tasks import reconcile as pilot_runs
        from inference.retention import reconcile as chat_retention
        from inference.tasks import reconcile as questions

        reconcilers = [questions, pilot_runs, chat_retention]

    while True:
        for reconcile in reconcilers:
            try:
                reconcile()
            except Exception as exc:
                log.warning("reconciler pass failed: %s", exc)
            finally:
                connections.close_all()
        if _stop.wait(RECONCILE_SECONDS):
            return


@task_prerun.connect
@task_postrun.connect
def _recycle_database_connections(**_: object) -> None:
    """Around each task, as around each web request: a connection that broke or outlived
    CONN_MAX_AGE is closed, a sound one kept (see appliance/celery.py)."""
    close_old_connections()


@worker_process_shutdown.connect
def _stop_beat(**_: object) -> None:
    _stop.set()
    try:
        redis_client.client().delete(_key())
    except Exception:
        log.debug("could not remove the worker heartbeat key", exc_info=True)
