"""Baseline web security: password hashing, sign-in throttling behind proxies, sessions
that end when they should, CSRF on every form, headers and a strict CSP on every kind of
response, plain error pages, and production settings that pass Django's deploy checks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import include, path
from django.utils import timezone

from appliance.accounts import actions as accounts
from appliance.audit.models import Action, AuditEvent
from tests.conftest import PASSWORD, ClientFor

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent


def _boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("an unexpected failure")


def _forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied


# This module doubles as a URLconf: the appliance's own routes plus two that fail on purpose.
urlpatterns = [
    path("test-boom", _boom),
    path("test-forbidden", _forbidden),
    path("", include("appliance.urls")),
]


def _login(client: Client, username: str, password: str, **extra: Any) -> Any:
    return client.post("/login/", {"username": username, "password": password}, **extra)


# --- passwords ----------------------------------------------------------------------------


def test_the_real_settings_hash_passwords_with_argon2_first() -> None:
    # The tests use a fast hasher; the appliance's own settings module must not.
    code = "import appliance.settings as s; print(s.PASSWORD_HASHERS[0])"
    env = {**os.environ, "APPLIANCE_ENV_FILE": "/dev/null"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "django.contrib.auth.hashers.Argon2PasswordHasher"


# --- sign-in throttling -------------------------------------------------------------------


def _fail_until_locked(client: Client, username: str, **extra: Any) -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(client, username, "wrong password", **extra)


def _is_locked(response: Any) -> bool:
    return response.status_code == 429 and b"Too many failed sign-ins" in response.content


def test_lockout_is_per_user_and_client_behind_a_trusted_proxy(people: Any, settings: Any) -> None:
    settings.AXES_IPWARE_PROXY_COUNT = 1  # APPLIANCE_TRUSTED_PROXY_COUNT=1
    proxy = {"REMOTE_ADDR": "10.0.0.1"}  # every request arrives from the proxy
    attacker = {**proxy, "HTTP_X_FORWARDED_FOR": "203.0.113.5"}
    _fail_until_locked(Client(), "alice", **attacker)
    assert _is_locked(_login(Client(), "alice", PASSWORD, **attacker))
    # The real alice, at her own desk behind the same proxy, still signs in...
    colleague = {**proxy, "HTTP_X_FORWARDED_FOR": "198.51.100.7"}
    assert _login(Client(), "alice", PASSWORD, **colleague).status_code == 302
    # ...and so does everyone else from the attacker's address.
    assert _login(Client(), "bob", PASSWORD, **attacker).status_code == 302


def test_a_client_cannot_escape_the_lockout_by_forging_forwarded_for(
    people: Any, settings: Any
) -> None:
    settings.AXES_IPWARE_PROXY_COUNT = 1
    for n in range(settings.AXES_FAILURE_LIMIT):
        # The client writes its own X-Forwarded-For; the proxy appends the real address.
        forged = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": f"1.2.3.{n}, 203.0.113.5"}
        _login(Client(), "alice", "wrong", **forged)
    forged = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "9.9.9.9, 203.0.113.5"}
    assert _is_locked(_login(Client(), "alice", PASSWORD, **forged))


def test_without_a_trusted_proxy_forwarded_for_is_ignored(people: Any, settings: Any) -> None:
    settings.AXES_IPWARE_PROXY_COUNT = 0
    for n in range(settings.AXES_FAILURE_LIMIT):
        _login(
            Client(), "alice", "wrong", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR=f"1.1.1.{n}"
        )
    locked = _login(
        Client(), "alice", PASSWORD, REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="8.8.8.8"
    )
    assert _is_locked(locked)
    failed = AuditEvent.objects.filter(action=Action.LOGIN_FAILED).values_list("ip", flat=True)
    assert set(failed) == {"192.0.2.1"}  # the audit log records the address it believed


# --- sessions -----------------------------------------------------------------------------


def test_signing_in_gives_a_new_session_id(people: Any) -> None:
    client = Client()
    session = client.session
    session["planted"] = "by an attacker"
    session.save()
    planted = session.session_key
    assert _login(client, "alice", PASSWORD).status_code == 302
    assert client.cookies[settings.SESSION_COOKIE_NAME].value != planted
    assert not Session.objects.filter(session_key=planted).exists()


def test_an_idle_session_expires(people: Any, signed_in: ClientFor) -> None:
    client = signed_in(people.alice)
    assert client.get("/").status_code == 200
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    expiry = Session.objects.get(session_key=key).expire_date
    idle = expiry - timezone.now()
    assert abs(idle.total_seconds() - settings.SESSION_COOKIE_AGE) < 60  # renewed per request
    Session.objects.filter(session_key=key).update(expire_date=timezone.now())  # time passes
    assert client.get("/").url.startswith("/login/")


def test_a_busy_session_still_ends_at_its_absolute_age(people: Any, signed_in: ClientFor) -> None:
    client = signed_in(people.alice)
    session = client.session
    session["started"] = time.time() - settings.SESSION_ABSOLUTE_SECONDS - 1
    session.save()
    response = client.get("/")
    assert response.status_code == 302 and response.url.startswith("/login/")
    assert client.get("/").status_code == 302  # and it stays ended


def test_a_signed_in_session_without_a_start_time_is_ended(
    people: Any, signed_in: ClientFor
) -> None:
    client = signed_in(people.alice)
    session = client.session
    del session["started"]
    session.save()
    assert client.get("/").status_code == 302


def test_api_tokens_are_not_subject_to_session_timeouts(
    people: Any, api_signed_in: ClientFor
) -> None:
    client = api_signed_in(people.alice)
    assert client.get("/api/v1/collections").status_code == 200


def test_logout_really_ends_the_session(people: Any) -> None:
    client = Client()
    _login(client, "alice", PASSWORD)
    old_cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.post("/logout/").status_code == 302
    thief = Client()
    thief.cookies[settings.SESSION_COOKIE_NAME] = old_cookie
    assert thief.get("/").status_code == 302
    assert thief.get("/api/v1/collections").status_code == 401


def test_a_deactivated_person_is_signed_out_at_once(
    people: Any, signed_in: ClientFor, api_signed_in: ClientFor
) -> None:
    client = signed_in(people.alice)
    api = api_signed_in(people.alice)
    accounts.deactivate_user(people.erin, people.alice)
    assert client.get("/").status_code == 302
    assert api.get("/api/v1/collections").status_code == 401


# --- CSRF ---------------------------------------------------------------------------------

_FORM = re.compile(r"<form\b[^>]*>.*?</form>", re.S | re.I)


def _post_forms(html: str) -> list[str]:
    return [f for f in _FORM.findall(html) if re.search(r'method="post"', f, re.I)]


def test_every_post_form_on_every_page_carries_a_csrf_token(
    people: Any, signed_in: ClientFor
) -> None:
    from ingest.actions import create_collection

    collection = create_collection(None, "HR policies", people.hr)
    pages = {
        people.alice: ["/", "/collections/"],
        people.carol: [f"/collections/{collection.pk}/"],
        people.dave: ["/audit/"],
        people.erin: ["/operator/", f"/operator/users/{people.alice.pk}/"],
    }
    seen = 0
    for user, urls in pages.items():
        client = signed_in(user)
        for url in urls:
            html = client.get(url).content.decode()
            for form in _post_forms(html):
                assert 'name="csrfmiddlewaretoken"' in form, f"{url}: {form[:200]}"
                seen += 1
    login_forms = _post_forms(Client().get("/login/").content.decode())
    assert login_forms and all("csrfmiddlewaretoken" in f for f in login_forms)
    assert seen >= 10  # sign-out, upload, sharing, operator and audit forms were all there


# Routes that change nothing and are exempt from CSRF on purpose: /metrics answers every
# method from an address it does not serve with the same 404, and refuses a POST from one
# it serves with 405 (appliance/operations/exporter.py).
READ_ONLY_AND_CSRF_EXEMPT = {"metrics"}
# The OpenAI-compatible API takes API tokens only, never the browser's session cookie.
TOKEN_ONLY_PREFIX = "v1/"


def test_every_state_changing_route_refuses_a_post_without_a_csrf_token(
    people: Any, signed_in: ClientFor
) -> None:
    from tests.test_canary import routes

    client = signed_in(people.carol, enforce_csrf_checks=True)
    checked = 0
    for route, url in routes(ids=dict.fromkeys(("collection_id", "document_id"), 1)):
        response = client.post(url, {"x": "1"})
        if route in READ_ONLY_AND_CSRF_EXEMPT:
            assert response.status_code in (404, 405), f"{route}: {response.status_code}"
            continue
        if route.startswith(TOKEN_ONLY_PREFIX):
            # No cookie opens these doors, so no forged request can ride on one.
            assert response.status_code in (401, 405), f"{route}: {response.status_code}"
            continue
        assert response.status_code == 403, f"{route}: {response.status_code}"
        assert b"Please try again" in response.content or response["Content-Type"].startswith(
            "application/json"
        )
        checked += 1
    assert checked >= 15


# --- headers, CSP and error pages ---------------------------------------------------------


def _assert_hardened(response: Any, what: str) -> None:
    csp = response.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp and "unsafe" not in csp, what
    assert "img-src 'self' data:" in csp and "frame-ancestors 'none'" in csp, what
    assert response.get("X-Content-Type-Options") == "nosniff", what
    assert response.get("X-Frame-Options") == "DENY", what
    assert response.get("Referrer-Policy") == "same-origin", what


def _no_inline_code(html: str, what: str) -> None:
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html, re.I), f"inline script: {what}"
    assert "<style" not in html.lower() and " style=" not in html.lower(), f"inline style: {what}"
    assert not re.search(r"\son[a-z]+=", html, re.I), f"inline handler: {what}"


@pytest.mark.urls("tests.test_security_web")
def test_pages_error_pages_and_downloads_all_carry_the_headers(
    people: Any, tmp_path: Path, settings: Any, signed_in: ClientFor
) -> None:
    from ingest import actions as ingest_actions
    from ingest.actions import create_collection

    settings.DATA_DIR = tmp_path
    settings.UPLOAD_DIR = tmp_path / "uploads"
    collection = create_collection(None, "HR policies", people.hr)
    upload = tmp_path / "note.txt"
    upload.write_text("hello")
    with open(upload, "rb") as handle:
        (result,) = ingest_actions.upload_documents(
            people.carol, collection, [ingest_actions.IncomingFile("note.txt", handle)]
        )
    alice = signed_in(people.alice)
    crashing = signed_in(people.alice, raise_request_exception=False)
    csrf_client = Client(enforce_csrf_checks=True)
    responses = {
        "page": alice.get("/"),
        "login page": Client().get("/login/"),
        "404": alice.get("/collections/987654/"),
        "403": alice.get("/test-forbidden"),
        "403 csrf": csrf_client.post("/login/", {"username": "a", "password": "b"}),
        "400": Client(HTTP_HOST="evil.example", raise_request_exception=False).get("/login/"),
        "500": crashing.get("/test-boom"),
        "document download": alice.get(f"/documents/{result.document.pk}/file"),
        "audit download": signed_in(people.dave).get("/audit/export?format=csv"),
        "api": alice.get("/api/v1/collections"),
        "api 404": alice.get("/api/v1/documents/987654"),
        "413": alice.post(
            f"/collections/{collection.pk}/upload",
            b"",
            content_type="application/octet-stream",
            CONTENT_LENGTH=str(10**12),
        ),
    }
    expected = {
        "404": 404,
        "api 404": 404,
        "403": 403,
        "403 csrf": 403,
        "400": 400,
        "413": 413,
        "500": 500,
    }
    for what, response in responses.items():
        assert response.status_code == expected.get(what, 200), what
        _assert_hardened(response, what)
        if response["Content-Type"].startswith("text/html"):
            _no_inline_code(response.content.decode(), what)
    assert b"an unexpected failure" not in responses["500"].content
    assert b"Something went wrong" in responses["500"].content
    assert b"Not found" in responses["404"].content


# --- production mode ----------------------------------------------------------------------


def _production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "DJANGO_"))}
    return {
        **env,
        "APPLIANCE_ENV_FILE": str(empty),
        "APPLIANCE_ENV": "production",
        "APPLIANCE_ALLOWED_HOSTS": "answers.example.org",
        "DJANGO_SETTINGS_MODULE": "appliance.settings",
        **extra,
    }


def test_production_settings_pass_the_deploy_checks(tmp_path: Path) -> None:
    key_file = tmp_path / "secret"
    key_file.write_text("s" * 20 + "-production-secret-key-" + "t" * 20)
    env = _production_env(
        tmp_path,
        APPLIANCE_SECRET_KEY_FILE=str(key_file),
        APPLIANCE_AUDIT_SIGNING_KEY="a dedicated audit signing key of 40 chars",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("APPLIANCE_SECRET_KEY", "APPLIANCE_SECRET_KEY is required"),
        ("APPLIANCE_AUDIT_SIGNING_KEY", "APPLIANCE_AUDIT_SIGNING_KEY"),
    ],
)
def test_production_refuses_to_start_without_its_secrets(
    tmp_path: Path, missing: str, message: str
) -> None:
    env = _production_env(
        tmp_path,
        APPLIANCE_SECRET_KEY="k" * 60,
        APPLIANCE_AUDIT_SIGNING_KEY="a dedicated audit signing key of 40 chars",
    )
    del env[missing]
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0 and message in result.stderr
