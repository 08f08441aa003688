"""Sign-in events go to the audit log in the transaction that records them."""

from __future__ import annotations

import time
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from appliance.audit import actions as audit
from appliance.audit.models import Action


@receiver(user_logged_in)
def on_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        request.session["started"] = time.time()
    # Where the person was vouched for: "local" (a password kept here), or the LDAP
    # server's URI or OIDC issuer (set by appliance/accounts/directory.py).
    source = getattr(user, "sign_in_source", "local")
    audit.record_alone(Action.LOGIN, actor=user, details={"source": source})


@receiver(user_logged_out)
def on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        audit.record_alone(Action.LOGOUT, actor=user)


@receiver(user_login_failed)
def on_login_failed(sender: Any, credentials: dict, request: Any = None, **kwargs: Any) -> None:
    username = str(credentials.get("username", ""))[:150]
    known = get_user_model().objects.filter(username=username).first()
    details: dict[str, Any] = {"known_user": known is not None}
    problem = getattr(request, "directory_problem", "")
    if problem:
        details["directory_problem"] = problem
    audit.record_alone(Action.LOGIN_FAILED, actor=known, actor_name=username, details=details)
