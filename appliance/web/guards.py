"""Pages for one role only: anyone else gets the 404 of a page that does not exist, and
the attempt is audited."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse

from appliance.audit import actions as audit
from appliance.audit.models import Action

View = Callable[..., HttpResponse]


def only_for(allowed: Callable[[Any], bool], attempt: str) -> Callable[[View], View]:
    """A view decorator: signed-in people for whom ``allowed(user)`` holds; ``attempt``
    names the page in the audit row of a refused visit."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not allowed(request.user):
                audit.record_alone(
                    Action.ACCESS_DENIED, actor=request.user, details={"attempt": attempt}
                )
                raise Http404
            return view(request, *args, **kwargs)

        return login_required(wrapper)

    return decorate
