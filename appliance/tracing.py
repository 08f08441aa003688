"""What travels with a queued task besides its ids: the web request that queued it and the
moment it was queued, in the Celery message's headers.

- ``before_task_publish`` (in whichever process queues: the web, or a worker's reconciler)
  stamps both into the message.
- ``task_prerun`` (in the worker) binds the request id to the task's log lines
  (``appliance.logs``) and records how long the message waited in its queue
  (``appliance_queue_wait_seconds``); ``task_postrun`` counts the task and unbinds.

Headers rather than task arguments, so no task signature changes and a message queued by
an older version still runs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from contextvars import Token
from datetime import datetime
from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun

from appliance import logs, metrics

log = logging.getLogger(__name__)

ENQUEUED_AT = "appliance_enqueued_at"
REQUEST_ID = "appliance_request_id"

_bound: dict[str, Token] = {}


@before_task_publish.connect
def _stamp(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is None:
        return
    headers[ENQUEUED_AT] = time.time()
    request_id = logs.current().get("request_id")
    if request_id:
        headers[REQUEST_ID] = request_id


def _queue(task: Any) -> str:
    return str((task.request.delivery_info or {}).get("routing_key") or "unknown")


def _ready_at(request: Any) -> float | None:
    """When the task could first have run: its queueing, or its ETA (a retry's backoff)."""
    enqueued = getattr(request, ENQUEUED_AT, None)
    if enqueued is None:
        return None
    ready = float(enqueued)
    eta = getattr(request, "eta", None)
    if eta:
        with contextlib.suppress(TypeError, ValueError):
            ready = max(ready, datetime.fromisoformat(str(eta)).timestamp())
    return ready


@task_prerun.connect
def _begin(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task is None or task_id is None:
        return
    request = task.request
    _bound[task_id] = logs.bind(
        request_id=getattr(request, REQUEST_ID, None), task=task.name, task_id=task_id
    )
    ready = _ready_at(request)
    if ready is not None:
        metrics.queue_waited(_queue(task), time.time() - ready)


@task_postrun.connect
def _end(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    if task is not None:
        metrics.task_finished(_queue(task), state or "UNKNOWN")
    token = _bound.pop(task_id or "", None)
    if token is not None:
        with contextlib.suppress(ValueError):  # bound in another context: nothing to undo
            logs.unbind(token)
