"""Operator commands: plain output, ids alone on the last line, safe to repeat."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from appliance.accounts.models import Membership, User
from ingest.models import Collection

pytestmark = pytest.mark.django_db


def run(*args: str) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip().splitlines()


def test_operator_commands_set_up_a_department_people_and_a_collection() -> None:
    department_id = run("create_department", "Legal")[-1]
    assert run("create_department", "Legal")[-1] == department_id  # idempotent
    user_id = run(
        "create_user",
        "lena",
        "--password",
        "pw-lena-123",
        "--department",
        "Legal",
        "--role",
        "curator",
    )[-1]
    again = run("create_user", "lena", "--department", "Legal", "--role", "curator")
    assert again[-1] == user_id
    assert Membership.objects.filter(user__username="lena", role="curator").count() == 1
    collection_id = run("create_collection", "Contracts", "--department", "Legal")[-1]
    assert Collection.objects.get(pk=int(collection_id)).department.name == "Legal"

    token = run("create_api_token", "lena")[-1]
    response = Client().get("/api/v1/collections", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert [c["name"] for c in response.json()["collections"]] == ["Contracts"]
    assert Client().get("/api/v1/collections", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_commands_explain_mistakes() -> None:
    with pytest.raises(CommandError, match="create_department"):
        call_command("create_user", "x", "--department", "Nowhere")
    with pytest.raises(CommandError, match="No department"):
        call_command("create_collection", "C", "--department", "Nowhere")
    with pytest.raises(CommandError, match="No user"):
        call_command("create_api_token", "ghost")
    assert not User.objects.filter(username="x").exists()
