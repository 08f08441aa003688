from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.utils import timezone, translation

from appliance.accounts import recheck
from appliance.accounts.models import ApiToken, hash_token


class BearerTokenMiddleware:
    """``Authorization: Bearer <token>`` authenticates API requests without a session.

    A request that carries a bearer token is exempt from CSRF checks (no cookie is
    involved, so no cross-site request can carry it); a wrong token is simply anonymous.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header[:7].lower() == "bearer ":
            request.user = _user_for_token(header[7:].strip())  # type: ignore[assignment]
            request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]
            request.auth_method = "token"  # type: ignore[attr-defined]
        return self.get_response(request)


def _user_for_token(raw: str):  # type: ignore[no-untyped-def]
    from django.contrib.auth.models import AnonymousUser

    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=hash_token(raw), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return AnonymousUser()
    # A directory account's token works only while the directory says the account is
    # enabled (asked again every DIRECTORY_RECHECK_MINUTES).
    if not recheck.token_user_allowed(token.user):
        return AnonymousUser()
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


class SessionTimeoutMiddleware:
    """Ends a signed-in session at its absolute age, however active it has been.

    The idle timeout is the session's own expiry (SESSION_COOKIE_AGE, renewed on every
    request). A signed-in session without a start time (older than this check) counts as
    expired rather than as endless. Bearer-token requests carry no session to end."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        if (
            session is not None
            and getattr(request, "auth_method", None) != "token"
            and request.user.is_authenticated
        ):
            started = session.get("started")
            if (
                not isinstance(started, int | float)
                or time.time() - started > settings.SESSION_ABSOLUTE_SECONDS
            ):
                logout(request)
        return self.get_response(request)


class PersonLanguageMiddleware:
    """A signed-in person's saved page language outranks the browser's Accept-Language
    (which LocaleMiddleware applied): the choice follows them to every browser."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        chosen = getattr(user, "language", "") if user is not None else ""
        if chosen and user.is_authenticated and chosen in dict(settings.LANGUAGES):
            translation.activate(chosen)
            request.LANGUAGE_CODE = chosen  # type: ignore[attr-defined]
        return self.get_response(request)
