"""Directory sign-in in a real browser (Debian's Chromium): a person signs in with their
LDAP password, another through the OIDC provider's own page and back, and the operator
maps a group on the mapping page. The appliance runs as its real web process (uvicorn),
configured through APPLIANCE_LDAP_* and APPLIANCE_OIDC_* as an installation would be, with
slapd and the test OIDC provider on 127.0.0.1. Screenshots go to var/screenshots."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.accounts import directory
from appliance.accounts.models import DirectoryAccount, Membership, Role
from appliance.audit.models import Action, AuditEvent
from tests.conftest import PASSWORD
from tests.support.browser import browser_context, save_screenshots
from tests.support.oidc_provider import Provider
from tests.support.slapd import (
    GROUPS,
    PASSWORDS,
    PEOPLE,
    READER_DN,
    READER_PASSWORD,
    USER_FILTER,
    group_dn,
    start_slapd,
)
from tests.support.stack import Stack, free_port, wait_for

pytestmark = [pytest.mark.services, pytest.mark.browser]


@pytest.fixture
def directories(tmp_path: Path) -> Iterator[tuple[Any, Provider]]:
    slapd = start_slapd(tmp_path / "slapd")
    provider = Provider()
    provider.add_person("nina", "nina password", ["hr-readers"], given_name="Nina")
    provider.start()
    yield slapd, provider
    provider.stop()
    slapd.stop()


@pytest.fixture
def web(
    django_db_setup: Any, live_db: Any, directories: tuple[Any, Provider], tmp_path: Path
) -> Iterator[Stack]:
    """The appliance's web process alone (no workers are needed to sign in)."""
    from django.conf import settings
    from django.db import connection

    slapd, provider = directories
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider.add_client(
        "appliance", "client secret", [f"{url}/login/oidc/callback"], [f"{url}/login/"]
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "APPLIANCE_DB_NAME": connection.settings_dict["NAME"],
        "APPLIANCE_DB_USER": connection.settings_dict["USER"],
        "APPLIANCE_DB_PASSWORD": connection.settings_dict["PASSWORD"],
        "APPLIANCE_DATA_DIR": str(settings.DATA_DIR),
        "PYTHONUNBUFFERED": "1",
        "APPLIANCE_LDAP_SERVER_URI": slapd.uri,
        "APPLIANCE_LDAP_START_TLS": "true",
        "APPLIANCE_LDAP_CA_FILE": str(slapd.ca_file),
        "APPLIANCE_LDAP_BIND_DN": READER_DN,
        "APPLIANCE_LDAP_BIND_PASSWORD": READER_PASSWORD,
        "APPLIANCE_LDAP_USER_BASE": PEOPLE,
        "APPLIANCE_LDAP_GROUP_BASE": GROUPS,
        "APPLIANCE_LDAP_USER_FILTER": USER_FILTER,
        "APPLIANCE_OIDC_ISSUER": provider.issuer,
        "APPLIANCE_OIDC_CLIENT_ID": "appliance",
        "APPLIANCE_OIDC_CLIENT_SECRET": "client secret",
        "APPLIANCE_OIDC_PROVIDER_NAME": "Example SSO",
    }
    running = Stack(url=url, env=env, log_dir=tmp_path)
    running.start(
        "web",
        [
            str(Path(sys.executable).parent / "uvicorn"),
            "appliance.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
    )

    def login_page_up() -> bool:
        process = running.processes["web"]
        if process.poll() is not None:
            raise RuntimeError(f"the web process exited:\n{running.log_tail('web')}")
        try:
            return httpx.get(f"{url}/login/", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(login_page_up, timeout=90, message="the sign-in page")
        yield running
    finally:
        running.stop_all()


@pytest.fixture
def page(web: Stack, directories: tuple[Any, Provider], monkeypatch: Any) -> Iterator[Any]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    _, provider = directories
    with browser_context(web.url, also_allowed=(provider.issuer,)) as context:
        yield context.new_page()


def test_ldap_and_oidc_sign_in_in_a_browser(
    people: Any, web: Stack, directories: tuple[Any, Provider], page: Any
) -> None:
    slapd, provider = directories
    directory.add_mapping(None, group_dn("hr-staff"), people.hr, Role.EMPLOYEE)
    directory.add_mapping(None, "hr-readers", people.hr, Role.EMPLOYEE)

    page.goto("/login/")
    assert page.locator("#oidc-sign-in button").text_content().strip() == (
        "Sign in with Example SSO"
    )
    save_screenshots(page, "sign-in-choices")

    # LDAP: the directory password, on the appliance's own form.
    page.fill("#id_username", "lena")
    page.fill("#id_password", PASSWORDS["lena"])
    page.click("form[action='/login/'] button[type=submit]")
    page.wait_for_selector("#question")
    save_screenshots(page, "sign-in-ldap-done")
    lena = DirectoryAccount.objects.get(external_id__startswith="uid=lena").user
    assert Membership.objects.filter(user=lena, department=people.hr, from_directory=True).exists()
    page.click("form.signout button")
    page.wait_for_selector("#id_username")

    # OIDC: off to the provider's page, and back signed in.
    page.click("#oidc-sign-in button")
    page.wait_for_url(f"{provider.issuer}/authorize*")
    page.fill("#username", "nina")
    page.fill("#password", "nina password")
    save_screenshots(page, "sign-in-oidc-provider")
    page.click("#kc-login")
    page.wait_for_selector("#question")
    assert page.url.startswith(web.url)
    save_screenshots(page, "sign-in-oidc-done")
    nina = DirectoryAccount.objects.get(server=provider.issuer).user
    assert nina.username == "nina"
    assert Membership.objects.filter(user=nina, department=people.hr, from_directory=True).exists()
    logins = AuditEvent.objects.filter(action=Action.LOGIN).order_by("id")
    assert [row.details["source"] for row in logins] == [slapd.uri, provider.issuer]

    # Signing out also signs out at the provider, which sends the browser back here.
    page.click("form.signout button")
    wait_for(lambda: provider.ended_sessions == 1, timeout=20, message="the provider's sign-out")
    page.wait_for_selector("#id_username")
    assert page.url.startswith(f"{web.url}/login/")

    # The break-glass operator (a local account) maps a group on the mapping page.
    page.fill("#id_username", "erin")
    page.fill("#id_password", PASSWORD)
    page.click("form[action='/login/'] button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)  # an operator reads no documents
    page.goto("/operator/groups/")
    page.fill("input[name=group]", group_dn("finance"))
    page.select_option("select[name=department]", label="Finance")
    page.select_option("select[name=role]", value="curator")
    page.click("form[action='/operator/groups/add'] button[type=submit]")
    page.wait_for_selector("#group-mappings")
    assert group_dn("finance") in page.locator("#group-mappings").text_content()
    save_screenshots(page, "group-mappings")
    assert AuditEvent.objects.filter(action=Action.GROUP_MAPPING_ADD, actor="erin").exists()
