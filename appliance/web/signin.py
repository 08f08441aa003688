"""The sign-in pages: the password form (local accounts, and LDAP/Active Directory when
configured), "Sign in with <provider>" through OIDC, and signing out (at the provider too,
for a session that came from it). See docs/sign-in.md."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.forms.utils import ErrorDict
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET

from appliance.accounts import oidc
from appliance.audit import actions as audit
from appliance.audit.models import Action

SESSION_BACKEND = "django.contrib.auth.backends.ModelBackend"


class LoginView(auth_views.LoginView):
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        if oidc.configured():
            context["oidc_provider_name"] = oidc.config()["provider_name"]
        context["directory_problem"] = getattr(self.request, "directory_problem", "")
        return context

    def form_invalid(self, form: Any) -> HttpResponse:
        if getattr(self.request, "directory_problem", ""):
            # The directory's own message replaces "username and password do not match",
            # which would be untrue (or at least unknown) here.
            form._errors = ErrorDict()
        return super().form_invalid(form)


@require_GET
def oidc_start(request: HttpRequest) -> HttpResponse:
    """Sends the browser to the provider (state, nonce and PKCE verifier kept in the session)."""
    if not oidc.configured():
        return redirect("login")
    next_url = request.GET.get("next", "")
    if next_url and url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        request.session["oidc_next"] = next_url
    try:
        oidc.metadata()
        return oidc.client().authorize_redirect(
            request, request.build_absolute_uri(reverse("oidc-callback"))
        )
    except Exception as exc:  # any failure to reach the provider
        oidc.logger.warning("OIDC provider unreachable: %r", exc)
        return _failed(request, oidc.UNREACHABLE % {"name": oidc.config()["provider_name"]})


@require_GET
def oidc_callback(request: HttpRequest) -> HttpResponse:
    if not oidc.configured():
        return redirect("login")
    try:
        user = oidc.finish_sign_in(request)
    except oidc.SignInFailed as exc:
        audit.record_alone(
            Action.LOGIN_FAILED,
            actor_name="",
            details={"source": oidc.config()["issuer"], "problem": str(exc)},
        )
        return _failed(request, str(exc))
    id_token = request.session.get("oidc_id_token", "")
    next_url = request.session.pop("oidc_next", None) or reverse("ask")
    login(request, user, backend=SESSION_BACKEND)
    # login() starts a new session; the ID token is kept for signing out at the provider.
    request.session["oidc_id_token"] = id_token
    return HttpResponseRedirect(next_url)


def _failed(request: HttpRequest, message: str) -> HttpResponse:
    context = {
        "form": AuthenticationForm(request),
        "directory_problem": message,
        "oidc_provider_name": oidc.config()["provider_name"],
        "next": "",
    }
    return render(request, "registration/login.html", context, status=400)


class LogoutView(auth_views.LogoutView):
    """Signs out here and, for a session that came from the OIDC provider, there too
    (RP-initiated logout with the ID token as hint)."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        id_token = request.session.get("oidc_id_token", "")
        response = super().post(request, *args, **kwargs)
        if id_token:
            at_provider = oidc.logout_url(request, id_token, reverse("login"))
            if at_provider:
                return HttpResponseRedirect(at_provider)
        return response
