"""Shared fixtures.

The same cast in every permission test (see STYLE.md): ``alice`` is an employee of HR,
``carol`` curates HR, ``bob`` is an employee of Finance, ``oscar`` belongs nowhere,
``dave`` audits and ``erin`` operates. ``signed_in(user)`` and ``api_signed_in(user)``
give in-process clients acting as one of them. Tests marked ``services`` run against real
worker processes and a real uvicorn server started once per session (see ``stack``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from django.db import connection
from django.test import Client

from appliance.accounts import actions as accounts
from appliance.accounts.models import Department, Role, User

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
DOCUMENTS = CORPUS / "documents"


@dataclass
class People:
    hr: Department
    finance: Department
    alice: User  # employee, HR
    carol: User  # curator, HR
    bob: User  # employee, Finance
    oscar: User  # no department at all
    dave: User  # auditor
    erin: User  # operator


PASSWORD = "correct horse battery staple"


@pytest.fixture
def people(db: Any) -> People:
    hr, _ = accounts.create_department(None, "HR")
    finance, _ = accounts.create_department(None, "Finance")
    cast = {}
    for name, memberships in {
        "alice": [(hr, Role.EMPLOYEE)],
        "carol": [(hr, Role.CURATOR)],
        "bob": [(finance, Role.EMPLOYEE)],
        "oscar": [],
        "dave": [(hr, Role.AUDITOR)],
        "erin": [(hr, Role.OPERATOR)],
    }.items():
        user, _ = accounts.create_or_update_user(None, name, PASSWORD)
        for department, role in memberships:
            accounts.add_membership(None, user, department, role)
        cast[name] = user
    return People(hr=hr, finance=finance, **cast)


class ClientFor(Protocol):
    def __call__(self, user: User, **client_kwargs: Any) -> Client: ...


@pytest.fixture
def signed_in() -> ClientFor:
    """``signed_in(user, **client_kwargs)``: a ``django.test.Client`` (built with
    ``client_kwargs``, e.g. ``HTTP_USER_AGENT``, ``REMOTE_ADDR``, ``enforce_csrf_checks``)
    whose session is already signed in as ``user`` through ``force_login`` (no login form,
    but the sign-in is audited all the same)."""

    def make(user: User, **client_kwargs: Any) -> Client:
        client = Client(**client_kwargs)
        client.force_login(user)
        return client

    return make


@pytest.fixture
def api_signed_in() -> ClientFor:
    """``api_signed_in(user, **client_kwargs)``: a ``django.test.Client`` that sends a new API
    token of ``user`` (named "test") with every request, as the API's programs do."""

    def make(user: User, **client_kwargs: Any) -> Client:
        token = accounts.create_api_token(None, user, "test")
        return Client(HTTP_AUTHORIZATION=f"Bearer {token}", **client_kwargs)

    return make


@pytest.fixture
def live_db(transactional_db: Any) -> Iterator[None]:
    """Committed data, for tests where other processes (workers, the web server) must see
    it. Such tests end with TRUNCATE of every table, which the append-only audit table
    refuses unless the session declares maintenance, as the test database's owner may."""
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET appliance.audit_maintenance = 'on'")
