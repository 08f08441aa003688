from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def appliance(request: HttpRequest) -> dict[str, Any]:
    """What every page needs: which model answers, and what the person may do."""
    # Error pages render before authentication when a request is refused early (a bad
    # Host header gives a 400 from CommonMiddleware): there is no user then.
    user = getattr(request, "user", None)
    roles: set[str] = set()
    if user is not None and user.is_authenticated:
        roles = set(user.memberships.values_list("role", flat=True))
    return {
        "llm_spec": settings.LLM_SPEC,
        "llm_is_demo": settings.LLM_SPEC.demo,
        "roles": roles,
    }
