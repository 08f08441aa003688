from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def appliance(request: HttpRequest) -> dict[str, Any]:
    """What every page needs: which model answers, and what the person may do."""
    user = request.user
    roles: set[str] = set()
    if user.is_authenticated:
        roles = set(user.memberships.values_list("role", flat=True))
    return {
        "llm_spec": settings.LLM_SPEC,
        "llm_is_demo": settings.LLM_SPEC.demo,
        "roles": roles,
    }
