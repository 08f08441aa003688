from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse

# Everything the pages use is served by the appliance itself; no inline script or style,
# no external origin. Images only from here (an answer cannot make the browser fetch an
# attacker's URL and leak the conversation through it).
POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def _policy() -> str:
    """POLICY, plus the OIDC provider's origin as a form target when sign-in through it is
    configured: the sign-in button and the sign-out form are answered with a redirect to
    the provider, which browsers hold to form-action as well (docs/sign-in.md)."""
    issuer = getattr(settings, "OIDC", {}).get("issuer", "")
    if not issuer:
        return POLICY
    parts = urlsplit(issuer)
    return POLICY.replace(
        "form-action 'self'", f"form-action 'self' {parts.scheme}://{parts.netloc}"
    )


class ContentSecurityPolicyMiddleware:
    """The policy on every response: pages, error pages, downloads, API answers."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", _policy())
        # Also here, near the top of the stack: a request refused by an inner middleware
        # (a bad Host header) never passes XFrameOptionsMiddleware on its way out.
        response.setdefault("X-Frame-Options", "DENY")
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        return response
