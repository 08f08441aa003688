from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from appliance import logs
from appliance.audit.context import RequestContext, client_ip, current

log = logging.getLogger("appliance.request")

# A request id handed in by the proxy in front (nginx's $request_id), so its access log and
# ours name a request alike; anything else gets an id of our own.
_GIVEN_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
# Polled every few seconds by monitoring: their lines would drown everything else.
_QUIET_PATHS = ("/healthz", "/metrics")


def request_id(meta: dict) -> str:
    given = str(meta.get("HTTP_X_REQUEST_ID", ""))
    return given if _GIVEN_ID.fullmatch(given) else uuid.uuid4().hex


class RequestContextMiddleware:
    """Who is acting and from where (for audit rows), and the request id every log line of
    this request carries, and with it every task the request queues (appliance.tracing).
    Writes one log line per request: method, path, status, time, never the body."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.monotonic()
        token = current.set(
            RequestContext(
                ip=client_ip(request.META),
                user_agent=request.META.get("HTTP_USER_AGENT", "")[:400],
            )
        )
        rid = request_id(request.META)
        bound = logs.bind(request_id=rid)
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = rid
            log.log(
                logging.DEBUG if request.path in _QUIET_PATHS else logging.INFO,
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "event": "request",
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "ms": int((time.monotonic() - started) * 1000),
                    "user_id": getattr(getattr(request, "user", None), "pk", None),
                },
            )
            return response
        finally:
            logs.unbind(bound)
            current.reset(token)
