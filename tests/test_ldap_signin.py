"""Sign-in against a real OpenLDAP server (Debian's slapd, started per test on 127.0.0.1):
bind and search through StartTLS or LDAPS with a CA file, nested groups mapped to
departments, revocation at the next sign-in, disabled accounts and their API tokens, a
directory that is down, and the mapping page and command. Every change is audited with
the LDAP server it came from."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from appliance.accounts import actions as accounts
from appliance.accounts import directory
from appliance.accounts.models import (
    DirectoryAccount,
    GroupMapping,
    Membership,
    Role,
    User,
)
from appliance.audit.models import Action, AuditEvent
from appliance.env import Env
from appliance.sso_settings import ldap_settings
from tests.conftest import PASSWORD
from tests.support.slapd import (
    GROUPS,
    PASSWORDS,
    PEOPLE,
    READER_DN,
    READER_PASSWORD,
    USER_FILTER,
    Slapd,
    group_dn,
    person_dn,
    start_slapd,
)

LDAP_BACKEND = "appliance.accounts.ldap_backend.DirectoryLDAPBackend"


@pytest.fixture
def slapd(tmp_path: Path) -> Iterator[Slapd]:
    server = start_slapd(tmp_path / "slapd")
    yield server
    server.stop()


def configure(settings: Any, **env: str) -> None:
    """Reads APPLIANCE_LDAP_* as the appliance does at start-up, and turns the backend on."""
    for name, value in ldap_settings(Env(env)).items():
        setattr(settings, name, value)
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "django.contrib.auth.backends.ModelBackend",
        LDAP_BACKEND,
    ]


def ldap_env(server: Slapd, **overrides: str) -> dict[str, str]:
    return {
        "APPLIANCE_LDAP_SERVER_URI": server.uri,
        "APPLIANCE_LDAP_START_TLS": "true",
        "APPLIANCE_LDAP_CA_FILE": str(server.ca_file),
        "APPLIANCE_LDAP_BIND_DN": READER_DN,
        "APPLIANCE_LDAP_BIND_PASSWORD": READER_PASSWORD,
        "APPLIANCE_LDAP_USER_BASE": PEOPLE,
        "APPLIANCE_LDAP_GROUP_BASE": GROUPS,
        "APPLIANCE_LDAP_USER_FILTER": USER_FILTER,
        "APPLIANCE_LDAP_GROUP_TYPE": "nested_group_of_names",
        "APPLIANCE_LDAP_TIMEOUT_SECONDS": "2",
        **overrides,
    }


@pytest.fixture
def ldap_on(settings: Any, slapd: Slapd) -> Slapd:
    configure(settings, **ldap_env(slapd))
    return slapd


@pytest.fixture
def mapped(people: Any) -> dict[str, Any]:
    """hr-staff -> employee of HR; all-staff (which holds hr-staff) -> employee of Staff."""
    staff, _ = accounts.create_department(None, "Staff")
    directory.add_mapping(None, group_dn("hr-staff"), people.hr, Role.EMPLOYEE)
    directory.add_mapping(None, group_dn("all-staff"), staff, Role.EMPLOYEE)
    directory.add_mapping(None, group_dn("finance"), people.finance, Role.CURATOR)
    return {"staff": staff, "hr": people.hr, "finance": people.finance}


def sign_in(username: str, password: str) -> tuple[Client, Any]:
    client = Client()
    response = client.post("/login/", {"username": username, "password": password})
    return client, response


def held(user: User) -> set[tuple[str, str, bool]]:
    return {
        (m.department.name, m.role, m.from_directory)
        for m in Membership.objects.select_related("department").filter(user=user)
    }


def test_ldap_first_sign_in_creates_the_person_with_mapped_nested_groups(
    ldap_on: Slapd, mapped: Any
) -> None:
    _, response = sign_in("lena", PASSWORDS["lena"])
    assert response.status_code == 302, response.content.decode()[:2000]
    lena = User.objects.get(username="lena")
    assert not lena.has_usable_password()
    assert (lena.email, lena.first_name, lena.last_name) == ("lena@example.org", "Lena", "Lind")
    # HR directly; Staff only through hr-staff's membership of all-staff (nested).
    assert held(lena) == {("HR", "employee", True), ("Staff", "employee", True)}
    account = DirectoryAccount.objects.get(user=lena)
    assert account.external_id == person_dn("lena") and account.server == ldap_on.uri
    assert account.checked_at is not None and account.disabled_at is None
    rows = AuditEvent.objects.filter(subject="lena").order_by("id")
    assert [r.action for r in rows] == [
        Action.USER_CREATE,
        Action.MEMBERSHIP_ADD,
        Action.MEMBERSHIP_ADD,
    ]
    assert all(r.details["source"] == ldap_on.uri for r in rows)
    login = AuditEvent.objects.get(action=Action.LOGIN, actor="lena")
    assert login.details == {"source": ldap_on.uri}


def test_ldap_group_removal_revokes_at_the_next_sign_in(ldap_on: Slapd, mapped: Any) -> None:
    assert sign_in("lena", PASSWORDS["lena"])[1].status_code == 302
    lena = User.objects.get(username="lena")
    # A membership an operator gave by hand is not the directory's to take away.
    accounts.add_membership(None, lena, mapped["finance"], Role.EMPLOYEE)
    ldap_on.remove_member("hr-staff", person_dn("lena"))

    assert sign_in("lena", PASSWORDS["lena"])[1].status_code == 302
    assert held(lena) == {("Finance", "employee", False)}
    removed = AuditEvent.objects.filter(action=Action.MEMBERSHIP_REMOVE, subject="lena")
    assert {(r.details["department"], r.details["source"]) for r in removed} == {
        ("HR", ldap_on.uri),
        ("Staff", ldap_on.uri),
    }
    assert AuditEvent.objects.filter(action=Action.LOGIN, actor="lena").count() == 2

    # Back in the group: back in the department at the next sign-in.
    ldap_on.add_member("hr-staff", person_dn("lena"))
    assert sign_in("lena", PASSWORDS["lena"])[1].status_code == 302
    assert ("HR", "employee", True) in held(lena)


def test_ldap_wrong_password_and_unknown_user_are_refused_alike(
    ldap_on: Slapd, mapped: Any
) -> None:
    _, wrong = sign_in("lena", "not her password")
    _, unknown = sign_in("nobody", "whatever it is")
    for response in (wrong, unknown):
        assert response.status_code == 200
        assert b"do not match" in response.content
    assert not User.objects.filter(username__in=["lena", "nobody"]).exists()
    failed = AuditEvent.objects.filter(action=Action.LOGIN_FAILED)
    assert set(failed.values_list("actor", flat=True)) == {"lena", "nobody"}


def test_ldap_disabled_account_cannot_sign_in_or_use_its_api_tokens(
    ldap_on: Slapd, mapped: Any, settings: Any
) -> None:
    # Dora's password is right, but her account is locked in the directory.
    _, response = sign_in("dora", PASSWORDS["dora"])
    assert response.status_code == 200 and b"do not match" in response.content
    assert not User.objects.filter(username="dora").exists()

    assert sign_in("tom", PASSWORDS["tom"])[1].status_code == 302
    tom = User.objects.get(username="tom")
    assert held(tom) == {("Staff", "employee", True), ("Finance", "curator", True)}
    api = Client(HTTP_AUTHORIZATION=f"Bearer {accounts.create_api_token(None, tom, 't')}")
    assert api.get("/api/v1/collections").status_code == 200

    ldap_on.lock("tom")
    # Within the re-check period the token still works, without asking the directory...
    assert api.get("/api/v1/collections").status_code == 200
    # ...and once the period is over, the directory is asked and says no.
    DirectoryAccount.objects.filter(user=tom).update(
        checked_at=timezone.now() - timedelta(minutes=settings.DIRECTORY_RECHECK_MINUTES + 1)
    )
    assert api.get("/api/v1/collections").status_code in (401, 403)
    account = DirectoryAccount.objects.get(user=tom)
    assert account.disabled_at is not None
    assert held(tom) == set()
    check = AuditEvent.objects.get(action=Action.DIRECTORY_CHECK, subject="tom")
    assert check.details["source"] == ldap_on.uri and check.details["result"] == "disabled"
    # Still refused later, without a new question to the directory.
    assert api.get("/api/v1/collections").status_code in (401, 403)
    assert sign_in("tom", PASSWORDS["tom"])[1].status_code == 200


def test_ldap_token_recheck_applies_group_changes(
    ldap_on: Slapd, mapped: Any, settings: Any
) -> None:
    assert sign_in("tom", PASSWORDS["tom"])[1].status_code == 302
    tom = User.objects.get(username="tom")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {accounts.create_api_token(None, tom, 't')}")
    ldap_on.remove_member("finance", person_dn("tom"))
    DirectoryAccount.objects.filter(user=tom).update(
        checked_at=timezone.now() - timedelta(minutes=settings.DIRECTORY_RECHECK_MINUTES + 1)
    )
    assert api.get("/api/v1/collections").status_code == 200
    assert held(tom) == {("Staff", "employee", True)}
    assert AuditEvent.objects.filter(
        action=Action.MEMBERSHIP_REMOVE, subject="tom", details__department="Finance"
    ).exists()


def test_ldap_directory_down_says_so_and_the_local_operator_still_signs_in(
    ldap_on: Slapd, mapped: Any, people: Any, settings: Any
) -> None:
    assert sign_in("tom", PASSWORDS["tom"])[1].status_code == 302
    tom = User.objects.get(username="tom")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {accounts.create_api_token(None, tom, 't')}")
    ldap_on.stop()

    _, response = sign_in("lena", PASSWORDS["lena"])
    assert response.status_code == 200
    assert b"directory cannot be reached" in response.content
    assert b"do not match" not in response.content
    failed = AuditEvent.objects.filter(action=Action.LOGIN_FAILED, actor="lena").get()
    assert "cannot be reached" in failed.details["directory_problem"]

    # The break-glass operator is a local account: the directory is not asked at all.
    client, response = sign_in("erin", PASSWORD)
    assert response.status_code == 302
    assert client.get("/operator/groups/").status_code == 200
    assert AuditEvent.objects.get(action=Action.LOGIN, actor="erin").details == {"source": "local"}

    # A directory account's token is refused once its check is due and cannot be made
    # (fails closed), without disabling the account: it works again when the directory does.
    DirectoryAccount.objects.filter(user=tom).update(
        checked_at=timezone.now() - timedelta(minutes=settings.DIRECTORY_RECHECK_MINUTES + 1)
    )
    assert api.get("/api/v1/collections").status_code in (401, 403)
    assert DirectoryAccount.objects.get(user=tom).disabled_at is None
    ldap_on.start()
    assert api.get("/api/v1/collections").status_code == 200


def test_ldap_over_ldaps_with_a_ca_file(settings: Any, slapd: Slapd, mapped: Any) -> None:
    configure(
        settings,
        **ldap_env(
            slapd, APPLIANCE_LDAP_SERVER_URI=slapd.ldaps_uri, APPLIANCE_LDAP_START_TLS="false"
        ),
    )
    assert sign_in("tom", PASSWORDS["tom"])[1].status_code == 302
    assert DirectoryAccount.objects.get(user__username="tom").server == slapd.ldaps_uri


def test_ldap_refuses_a_server_certificate_it_cannot_verify(
    settings: Any, slapd: Slapd, mapped: Any
) -> None:
    env = ldap_env(slapd)
    del env["APPLIANCE_LDAP_CA_FILE"]  # the system's CAs do not know the test CA
    configure(settings, **env)
    _, response = sign_in("tom", PASSWORDS["tom"])
    assert response.status_code == 200 and b"directory cannot be reached" in response.content
    assert not User.objects.filter(username="tom").exists()


def test_ldap_mapping_page_is_for_operators_and_audited(
    ldap_on: Slapd, mapped: Any, people: Any, signed_in: Any
) -> None:
    assert signed_in(people.alice).get("/operator/groups/").status_code == 404
    operator = signed_in(people.erin)
    page = operator.get("/operator/groups/")
    assert page.status_code == 200 and group_dn("hr-staff").encode() in page.content
    assert ldap_on.uri.encode() in page.content

    # Tom signed in before the mapping existed; the new mapping reaches him at once.
    assert sign_in("tom", PASSWORDS["tom"])[1].status_code == 302
    tom = User.objects.get(username="tom")
    response = operator.post(
        "/operator/groups/add",
        {"group": group_dn("FINANCE").upper(), "department": people.hr.pk, "role": "auditor"},
    )
    assert response.status_code == 302
    assert ("HR", "auditor", True) in held(tom)
    added = AuditEvent.objects.get(action=Action.GROUP_MAPPING_ADD, actor="erin")
    assert added.details == {
        "group": group_dn("FINANCE").upper(),
        "department": "HR",
        "role": "auditor",
    }
    mapping = GroupMapping.objects.get(role="auditor")
    assert operator.post(f"/operator/groups/{mapping.pk}/remove").status_code == 302
    assert ("HR", "auditor", True) not in held(tom)
    assert AuditEvent.objects.filter(action=Action.GROUP_MAPPING_REMOVE, actor="erin").exists()
    assert AuditEvent.objects.filter(
        action=Action.MEMBERSHIP_REMOVE, subject="tom", details__role="auditor"
    ).exists()


def test_ldap_mapping_command_lists_adds_and_removes(mapped: Any) -> None:
    out = StringIO()
    call_command("group_mapping", "add", "cn=legal,ou=groups", "HR", "curator", stdout=out)
    call_command("group_mapping", "list", stdout=out)
    assert "cn=legal,ou=groups\tHR\tcurator" in out.getvalue()
    call_command("group_mapping", "remove", "CN=Legal,ou=groups", "HR", "curator", stdout=out)
    assert not GroupMapping.objects.filter(group="cn=legal,ou=groups").exists()
    rows = AuditEvent.objects.filter(
        action__in=[Action.GROUP_MAPPING_ADD, Action.GROUP_MAPPING_REMOVE]
    ).filter(details__group="cn=legal,ou=groups")
    assert rows.count() == 2 and all(r.actor.startswith("(command line") for r in rows)
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no department"):
        call_command("group_mapping", "add", "cn=x", "Nowhere", "employee")


def test_ldap_group_removal_closes_the_department_to_the_persons_api_token(
    ldap_on: Slapd, mapped: Any, settings: Any
) -> None:
    from ingest.actions import create_collection

    hr_policies = create_collection(None, "HR policies", mapped["hr"])
    assert sign_in("lena", PASSWORDS["lena"])[1].status_code == 302
    lena = User.objects.get(username="lena")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {accounts.create_api_token(None, lena, 't')}")

    def names() -> set[str]:
        return {c["name"] for c in api.get("/api/v1/collections").json()["collections"]}

    documents = f"/api/v1/collections/{hr_policies.pk}/documents"
    assert "HR policies" in names() and api.get(documents).status_code == 200
    ldap_on.remove_member("hr-staff", person_dn("lena"))
    DirectoryAccount.objects.filter(user=lena).update(
        checked_at=timezone.now() - timedelta(minutes=settings.DIRECTORY_RECHECK_MINUTES + 1)
    )
    # The token still works (Lena is enabled), but HR's collection is now as missing.
    assert "HR policies" not in names()
    assert api.get(documents).status_code == 404
