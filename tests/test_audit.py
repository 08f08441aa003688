"""The audit trail: one row per act in the act's transaction, append-only in the database,
a hash chain that exports verify offline, and exports that detect a changed byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client

from appliance.audit import actions as audit
from appliance.audit import chain, export
from appliance.audit.models import Action, AuditEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_record_refuses_to_run_outside_the_acts_transaction(live_db: Any) -> None:
    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit.record(Action.LOGIN)


def test_an_act_that_rolls_back_leaves_no_audit_row(people: Any) -> None:
    before = AuditEvent.objects.count()
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        audit.record(Action.SHARE, actor=people.carol)
        1 / 0  # noqa: B018 - the act fails after its audit row was written
    assert AuditEvent.objects.count() == before


def test_rows_form_one_verifiable_chain(people: Any) -> None:
    for i in range(5):
        audit.record_alone(Action.QUESTION, actor=people.alice, details={"i": i})
    rows = [audit.to_row(e) for e in AuditEvent.objects.order_by("id")]
    count, _first, last = chain.verify_rows(rows, anchor=chain.GENESIS)
    assert count == len(rows) and last == rows[-1]["hash"]
    assert rows[-1]["actor_departments"] == ["HR:employee"]


def test_sign_in_out_and_failures_are_audited(people: Any) -> None:
    client = Client()
    client.post("/login/", {"username": "alice", "password": "wrong"}, REMOTE_ADDR="10.0.0.9")
    client.post("/login/", {"username": "nobody", "password": "wrong"})
    client.post("/login/", {"username": "alice", "password": PASSWORD}, HTTP_USER_AGENT="TestAgent")
    client.post("/logout/")
    actions = list(AuditEvent.objects.order_by("id").values_list("action", "actor", "ip"))
    assert (Action.LOGIN_FAILED, "alice", "10.0.0.9") in actions
    assert (Action.LOGIN_FAILED, "nobody", "127.0.0.1") in actions
    login = AuditEvent.objects.get(action=Action.LOGIN)
    assert login.actor == "alice" and login.user_agent == "TestAgent"
    assert AuditEvent.objects.filter(action=Action.LOGOUT, actor="alice").count() == 1


def test_unknown_user_and_wrong_password_get_the_same_message(people: Any) -> None:
    wrong = Client().post("/login/", {"username": "alice", "password": "nope"})
    unknown = Client().post("/login/", {"username": "zed", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 200
    assert b"do not match" in wrong.content and b"do not match" in unknown.content


def _as_app_role(sql: str) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL ROLE appliance_app")
        cursor.execute(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET action = 'login'",
        "DELETE FROM audit_auditevent",
        "TRUNCATE audit_auditevent",
    ],
)
def test_the_application_role_cannot_change_or_remove_audit_rows(people: Any, sql: str) -> None:
    audit.record_alone(Action.QUESTION, actor=people.alice)
    with pytest.raises(DatabaseError, match="permission denied"):
        _as_app_role(sql)
    _as_app_role("SELECT count(*) FROM audit_auditevent")  # reading is allowed


def test_even_the_owner_cannot_update_without_declaring_maintenance(people: Any) -> None:
    audit.record_alone(Action.QUESTION, actor=people.alice)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.update(action=Action.LOGIN)


def _export(tmp_path: Path, fmt: str, **filters: Any) -> Path:
    out = tmp_path / f"audit.{fmt}"
    call_command(
        "audit_export",
        "--format",
        fmt,
        "--output",
        str(out),
        *[f"--{k}={v}" for k, v in filters.items()],
    )
    return out


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_verifies_and_any_changed_byte_is_caught(
    people: Any, tmp_path: Path, fmt: str
) -> None:
    for text in ('=HYPERLINK("http://evil")', "+1", "plain question"):
        audit.record_alone(Action.QUESTION, actor=people.alice, details={"text": text})
    out = _export(tmp_path, fmt)
    call_command("audit_verify", str(out))
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["rows"] == AuditEvent.objects.count()  # the export's own event included

    original = out.read_bytes()
    position = original.index(b"plain question")
    out.write_bytes(original[:position] + b"P" + original[position + 1 :])
    with pytest.raises(CommandError, match="NOT INTACT"):
        call_command("audit_verify", str(out))

    out.write_bytes(original)
    lines = original.splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:2] + lines[3:]))  # one row cut out
    with pytest.raises(CommandError, match="NOT INTACT"):
        call_command("audit_verify", str(out))


def test_csv_cells_that_spreadsheets_would_run_are_escaped(people: Any, tmp_path: Path) -> None:
    audit.record_alone(Action.QUESTION, actor_name="=cmd|' /C calc'!A0", details={"x": 1})
    text = _export(tmp_path, "csv").read_text()
    assert ",'=cmd|" in text
    assert ",=cmd" not in text


def test_a_forged_manifest_fails_its_signature(people: Any, tmp_path: Path) -> None:
    audit.record_alone(Action.QUESTION, actor=people.alice)
    out = _export(tmp_path, "jsonl")
    manifest_path = Path(f"{out}.manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["rows"] += 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(export.VerificationFailed, match="signature"):
        export.verify_export(out)


def test_filtered_export_holds_only_matching_rows_and_still_verifies(
    people: Any, tmp_path: Path
) -> None:
    audit.record_alone(Action.QUESTION, actor=people.alice)
    audit.record_alone(Action.QUESTION, actor=people.bob)
    out = _export(tmp_path, "jsonl", user="bob")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["actor"] for r in rows} == {"bob"}
    call_command("audit_verify", str(out))


def test_each_export_is_itself_audited(people: Any, tmp_path: Path) -> None:
    _export(tmp_path, "jsonl")
    client = Client()
    client.force_login(people.dave)
    response = client.get("/api/v1/audit/events?format=csv&action=login")
    assert response.status_code == 200
    b"".join(response.streaming_content)
    assert AuditEvent.objects.filter(action=Action.AUDIT_EXPORT).count() == 2
