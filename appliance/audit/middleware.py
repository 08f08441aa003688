from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from appliance.audit.context import RequestContext, client_ip, current


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = current.set(
            RequestContext(
                ip=client_ip(request.META),
                user_agent=request.META.get("HTTP_USER_AGENT", "")[:400],
            )
        )
        try:
            return self.get_response(request)
        finally:
            current.reset(token)
