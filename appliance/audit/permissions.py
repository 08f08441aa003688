from __future__ import annotations

from typing import Any

from appliance.accounts.models import Role


def is_auditor(user: Any) -> bool:
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.memberships.filter(role=Role.AUDITOR).exists()
    )
