"""Sign-in through a real OpenID Connect provider (Authlib's server, tests/support/
oidc_provider.py) on 127.0.0.1: the code flow with PKCE and nonce, groups mapped to
departments, revocation at the next sign-in, refused ID tokens (expired, forged, for
another audience, with a replayed nonce), replayed callbacks, a disabled account and its
API tokens (re-checked with the refresh token), a provider that is down, and signing out
at the provider."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from django.test import Client
from django.utils import timezone

from appliance.accounts import actions as accounts
from appliance.accounts import directory
from appliance.accounts.models import DirectoryAccount, Membership, Role, User
from appliance.audit.models import Action, AuditEvent
from appliance.env import Env
from appliance.sso_settings import oidc_settings
from tests.conftest import PASSWORD
from tests.support.oidc_provider import Provider

CALLBACK = "http://testserver/login/oidc/callback"


@pytest.fixture
def provider() -> Iterator[Provider]:
    running = Provider()
    running.add_client("appliance", "client secret", [CALLBACK], ["http://testserver/login/"])
    running.add_person("nina", "nina password", ["hr-readers", "everyone"], given_name="Nina")
    running.start()
    yield running
    running.stop()


def oidc_env(provider: Provider, **overrides: str) -> dict[str, str]:
    return {
        "APPLIANCE_OIDC_ISSUER": provider.issuer,
        "APPLIANCE_OIDC_CLIENT_ID": "appliance",
        "APPLIANCE_OIDC_CLIENT_SECRET": "client secret",
        "APPLIANCE_OIDC_PROVIDER_NAME": "Test SSO",
        "APPLIANCE_OIDC_TIMEOUT_SECONDS": "3",
        **overrides,
    }


@pytest.fixture
def oidc_on(settings: Any, provider: Provider) -> Provider:
    settings.OIDC = oidc_settings(Env(oidc_env(provider)))["OIDC"]
    return provider


@pytest.fixture
def mapped(people: Any) -> Any:
    directory.add_mapping(None, "hr-readers", people.hr, Role.EMPLOYEE)
    directory.add_mapping(None, "finance-team", people.finance, Role.CURATOR)
    return people


def at_provider(client: Client, username: str, password: str) -> requests.Response:
    """Clicks "Sign in with Test SSO" and fills in the provider's form; returns the
    provider's answer (a redirect to the callback when it accepted the person)."""
    start = client.get("/login/oidc/")
    assert start.status_code == 302, start.content.decode()[:1000]
    authorize = start["Location"]
    query = parse_qs(urlparse(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["nonce"][0] and query["state"][0]
    return requests.post(
        authorize,
        data={"username": username, "password": password},
        allow_redirects=False,
        timeout=10,
    )


def oidc_sign_in(client: Client, username: str, password: str) -> Any:
    answer = at_provider(client, username, password)
    assert answer.status_code == 302, answer.text[:500]
    callback = urlparse(answer.headers["Location"])
    return client.get(f"{callback.path}?{callback.query}")


def held(user: User) -> set[tuple[str, str, bool]]:
    return {
        (m.department.name, m.role, m.from_directory)
        for m in Membership.objects.select_related("department").filter(user=user)
    }


def signed_in_as(client: Client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).username if user_id else None


def test_oidc_login_page_offers_the_provider(oidc_on: Provider) -> None:
    page = Client().get("/login/")
    assert b"Sign in with Test SSO" in page.content
    # The button's form (and the sign-out form) are answered with a redirect to the
    # provider, which the browser allows only when the policy names it as a form target.
    assert f"form-action 'self' {oidc_on.issuer};" in page["Content-Security-Policy"]


def test_oidc_first_sign_in_creates_the_person_with_mapped_memberships(
    oidc_on: Provider, mapped: Any
) -> None:
    client = Client()
    response = oidc_sign_in(client, "nina", "nina password")
    assert response.status_code == 302 and response["Location"] == "/"
    assert signed_in_as(client) == "nina"
    nina = User.objects.get(username="nina")
    assert nina.first_name == "Nina" and not nina.has_usable_password()
    assert held(nina) == {("HR", "employee", True)}
    account = DirectoryAccount.objects.get(user=nina)
    assert account.server == oidc_on.issuer
    assert account.external_id == oidc_on.people["nina"].sub
    assert account.refresh_token and account.groups == ["everyone", "hr-readers"]
    rows = AuditEvent.objects.filter(subject="nina").order_by("id")
    assert [r.action for r in rows] == [Action.USER_CREATE, Action.MEMBERSHIP_ADD]
    assert all(r.details["source"] == oidc_on.issuer for r in rows)
    assert AuditEvent.objects.get(action=Action.LOGIN, actor="nina").details == {
        "source": oidc_on.issuer
    }
    # The one-time values of the flow are gone from the session.
    assert not [k for k, _ in client.session.items() if k.startswith("_state_")]


def test_oidc_group_removal_revokes_at_the_next_sign_in(oidc_on: Provider, mapped: Any) -> None:
    assert oidc_sign_in(Client(), "nina", "nina password").status_code == 302
    nina = User.objects.get(username="nina")
    oidc_on.people["nina"].groups = ["everyone", "finance-team"]
    assert oidc_sign_in(Client(), "nina", "nina password").status_code == 302
    assert held(nina) == {("Finance", "curator", True)}
    removed = AuditEvent.objects.get(action=Action.MEMBERSHIP_REMOVE, subject="nina")
    assert removed.details["department"] == "HR"
    assert removed.details["source"] == oidc_on.issuer


def test_oidc_wrong_password_and_unknown_user_never_reach_the_appliance(
    oidc_on: Provider, mapped: Any
) -> None:
    for username, password in (("nina", "wrong"), ("nobody", "nina password")):
        client = Client()
        answer = at_provider(client, username, password)
        assert answer.status_code == 200 and "Invalid username or password" in answer.text
        assert signed_in_as(client) is None
    assert not User.objects.filter(username__in=["nina", "nobody"]).exists()


@pytest.mark.parametrize("mode", ["expired", "forged", "wrong_audience", "stale_nonce"])
def test_oidc_refuses_a_bad_id_token(oidc_on: Provider, mapped: Any, mode: str) -> None:
    # One good sign-in first, so there is an earlier nonce to replay.
    assert oidc_sign_in(Client(), "nina", "nina password").status_code == 302
    oidc_on.misbehave(mode)
    client = Client()
    response = oidc_sign_in(client, "nina", "nina password")
    assert response.status_code == 400
    assert b"Signing in with Test SSO did not work" in response.content
    assert signed_in_as(client) is None
    assert client.get("/").status_code == 302  # still sent to the login page
    failed = AuditEvent.objects.get(action=Action.LOGIN_FAILED)
    assert failed.details["source"] == oidc_on.issuer
    assert AuditEvent.objects.filter(action=Action.LOGIN).count() == 1


def test_oidc_replayed_callback_is_refused(oidc_on: Provider, mapped: Any) -> None:
    client = Client()
    answer = at_provider(client, "nina", "nina password")
    callback = urlparse(answer.headers["Location"])
    url = f"{callback.path}?{callback.query}"
    assert client.get(url).status_code == 302
    # The same code and state again: in the same browser (the state was used up) and in
    # another one (it never had that state). Neither signs anyone in.
    assert client.get(url).status_code == 400
    other = Client()
    assert other.get(url).status_code == 400
    assert signed_in_as(other) is None
    assert AuditEvent.objects.filter(action=Action.LOGIN).count() == 1
    assert AuditEvent.objects.filter(action=Action.LOGIN_FAILED).count() == 2


def test_oidc_disabled_account_cannot_sign_in_or_use_its_api_tokens(
    oidc_on: Provider, mapped: Any, settings: Any
) -> None:
    assert oidc_sign_in(Client(), "nina", "nina password").status_code == 302
    nina = User.objects.get(username="nina")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {accounts.create_api_token(None, nina, 't')}")
    assert api.get("/api/v1/collections").status_code == 200

    # A due re-check that succeeds (refresh token + userinfo) keeps the token working and
    # brings group changes with it.
    oidc_on.people["nina"].groups = ["hr-readers", "finance-team"]
    overdue = timezone.now() - timedelta(minutes=settings.DIRECTORY_RECHECK_MINUTES + 1)
    DirectoryAccount.objects.filter(user=nina).update(checked_at=overdue)
    assert api.get("/api/v1/collections").status_code == 200
    assert held(nina) == {("HR", "employee", True), ("Finance", "curator", True)}

    oidc_on.people["nina"].disabled = True
    assert api.get("/api/v1/collections").status_code == 200  # not due yet
    DirectoryAccount.objects.filter(user=nina).update(checked_at=overdue)
    assert api.get("/api/v1/collections").status_code in (401, 403)
    assert DirectoryAccount.objects.get(user=nina).disabled_at is not None
    assert held(nina) == set()
    check = AuditEvent.objects.get(action=Action.DIRECTORY_CHECK, subject="nina")
    assert check.details["source"] == oidc_on.issuer

    answer = at_provider(Client(), "nina", "nina password")
    assert answer.status_code == 200 and "Invalid username or password" in answer.text


def test_oidc_recheck_reads_groups_from_the_refreshed_id_token(
    oidc_on: Provider, mapped: Any, settings: Any
) -> None:
    """Entra ID puts groups in ID tokens only, not in userinfo: the re-check takes them from
    the ID token of the refresh (checked like the first), not "no groups at all"."""
    oidc_on.userinfo_groups = False
    assert oidc_sign_in(Client(), "nina", "nina password").status_code == 302
    nina = User.objects.get(username="nina")
    assert held(nina) == {("HR", "employee", True)}
    api = Client(HTTP_AUTHORIZATION=f"Bearer {accounts.create_api_token(None, nina, 't')}")
    oidc_on.people["nina"].groups = ["hr-readers", "finance-team"]
    DirectoryAccount.objects.filter(user=nina).update(
        checked_at=timezone.now() - timedelta(minutes=settings.DIRECTORY_RECHECK_MINUTES + 1)
    )
    assert api.get("/api/v1/collections").status_code == 200
    assert held(nina) == {("HR", "employee", True), ("Finance", "curator", True)}
    account = DirectoryAccount.objects.get(user=nina)
    assert account.checked_at > timezone.now() - timedelta(minutes=1)


def test_oidc_provider_down_says_so_and_the_local_operator_still_signs_in(
    oidc_on: Provider, mapped: Any
) -> None:
    oidc_on.stop()
    response = Client().get("/login/oidc/")
    assert response.status_code == 400
    assert b"Test SSO cannot be reached right now" in response.content
    client = Client()
    assert client.post("/login/", {"username": "erin", "password": PASSWORD}).status_code == 302
    assert signed_in_as(client) == "erin"


def test_oidc_sign_out_ends_the_session_at_the_provider(oidc_on: Provider, mapped: Any) -> None:
    client = Client()
    assert oidc_sign_in(client, "nina", "nina password").status_code == 302
    response = client.post("/logout/")
    assert response.status_code == 302
    end_session = urlparse(response["Location"])
    assert f"{end_session.scheme}://{end_session.netloc}" == oidc_on.issuer
    params = parse_qs(end_session.query)
    assert params["id_token_hint"][0] and params["client_id"] == ["appliance"]
    assert signed_in_as(client) is None
    answer = requests.get(response["Location"], allow_redirects=False, timeout=10)
    assert answer.status_code == 302 and answer.headers["Location"].startswith(
        "http://testserver/login/"
    )
    assert oidc_on.ended_sessions == 1
    assert AuditEvent.objects.filter(action=Action.LOGOUT, actor="nina").count() == 1


def test_oidc_never_takes_over_a_local_account(oidc_on: Provider, mapped: Any) -> None:
    oidc_on.add_person("erin", "erin at the provider", ["hr-readers"])
    client = Client()
    response = oidc_sign_in(client, "erin", "erin at the provider")
    assert response.status_code == 400
    assert b"already exists here" in response.content
    assert signed_in_as(client) is None
    assert not DirectoryAccount.objects.filter(user__username="erin").exists()
