"""Who is acting, from where: set per request by RequestContextMiddleware and read when an
audit row is written, so actions need not pass the request around."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RequestContext:
    ip: str = ""
    user_agent: str = ""


_EMPTY = RequestContext()
current: ContextVar[RequestContext] = ContextVar(
    "audit_request_context",
    default=_EMPTY,  # a frozen dataclass, never mutated
)


def client_ip(meta: dict) -> str:
    from django.conf import settings

    # Behind N trusted proxies the client is the N-th address from the right of
    # X-Forwarded-For; with none, only REMOTE_ADDR can be believed.
    proxies = getattr(settings, "AXES_IPWARE_PROXY_COUNT", 0)
    if proxies:
        forwarded = [
            p.strip() for p in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if p.strip()
        ]
        if len(forwarded) >= proxies:
            return forwarded[-proxies][:64]
    return str(meta.get("REMOTE_ADDR", ""))[:64]


def request_client_ip(request: Any) -> str:
    """django-axes asks this for the address it counts failed sign-ins against."""
    return client_ip(request.META)
