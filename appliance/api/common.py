"""Small helpers shared by the JSON API views."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse

from appliance.access import Refused


def error(status: int, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def not_found() -> JsonResponse:
    # The same body for missing and forbidden, so ids cannot be probed.
    return error(404, "Not found.")


def api(*methods: str) -> Callable:
    """Authenticated JSON endpoint (session or bearer token) for the given methods. The
    access policy's refusals become JSON: ``Http404`` the one "Not found." body for missing
    and forbidden alike, ``Refused`` a 403 with its sentence."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                response = error(405, f"Use {' or '.join(methods)}.")
                response["Allow"] = ", ".join(methods)
                return response
            if not request.user.is_authenticated:
                response = error(
                    401, "Sign in or send an API token: Authorization: Bearer <token>."
                )
                response["WWW-Authenticate"] = 'Bearer realm="appliance"'
                return response
            try:
                return view(request, *args, **kwargs)
            except Http404:
                return not_found()
            except Refused as exc:
                return error(403, str(exc))

        return wrapper

    return decorate


def json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ValueError("The request body must be a JSON object.")
    return body
