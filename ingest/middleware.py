"""Refuse request bodies larger than the configured limit with a plain 413 before any
view (or Django's multipart parser) reads them."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


def too_large_message() -> str:
    return (
        f"This upload is larger than the {settings.UPLOAD_MAX_REQUEST_MB:,} MB one request may "
        f"carry. Send fewer files at a time (each file may be up to "
        f"{settings.UPLOAD_MAX_FILE_MB:,} MB)."
    )


class RequestSizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"error": "The Content-Length header is not a number."}, status=400)
        if length > settings.UPLOAD_MAX_REQUEST_MB * 1024 * 1024:
            # Browsers and API clients alike read a JSON body; the upload page shows it.
            return JsonResponse({"error": too_large_message()}, status=413)
        return self.get_response(request)
