"""Keeping the audit log honest over years: retention pruning with an anchor, GDPR erasure
with a pseudonym, and checking the live table, which finds the first edited, removed or
cut row. Tampering is done the way a database administrator could: as the table's owner,
declaring maintenance to get past the append-only trigger."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from appliance.accounts.models import User
from appliance.audit import actions as audit
from appliance.audit import export, maintenance
from appliance.audit.models import Action, AuditAnchor, AuditEvent
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _events(people: Any, n: int) -> list[AuditEvent]:
    return [
        audit.record_alone(Action.QUESTION, actor=people.alice, details={"i": i}) for i in range(n)
    ]


def _tamper(sql: str, params: list[Any] | None = None) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL appliance.audit_maintenance = 'on'")
        cursor.execute(sql, params or [])


def _verify_database(*extra: str) -> None:
    call_command("audit_verify", "--database", *extra)


def _export(tmp_path: Path, name: str = "audit.jsonl") -> Path:
    out = tmp_path / name
    call_command("audit_export", "--format", "jsonl", "--output", str(out))
    return out


def test_the_untouched_log_verifies_in_the_database(people: Any, capsys: Any) -> None:
    _events(people, 5)
    _verify_database()
    assert "Intact" in capsys.readouterr().out


def test_an_edited_row_is_reported_as_the_first_break(people: Any) -> None:
    rows = _events(people, 6)
    _tamper("UPDATE audit_auditevent SET details = '{\"i\": 99}' WHERE id = %s", [rows[3].id])
    with pytest.raises(CommandError, match=rf"row {rows[3].id}: its content"):
        _verify_database()


def test_an_edited_name_or_address_is_reported(people: Any) -> None:
    rows = _events(people, 3)
    _tamper("UPDATE audit_auditevent SET actor = 'bob' WHERE id = %s", [rows[1].id])
    with pytest.raises(CommandError, match=rf"row {rows[1].id}: actor, subject, address"):
        _verify_database()


def test_a_deleted_row_breaks_the_link_of_the_row_after_it(people: Any) -> None:
    rows = _events(people, 6)
    _tamper("DELETE FROM audit_auditevent WHERE id = %s", [rows[2].id])
    with pytest.raises(CommandError, match=rf"row {rows[3].id}: its previous-hash"):
        _verify_database()


def test_a_cut_head_is_reported(people: Any) -> None:
    first = AuditEvent.objects.order_by("id").first()
    rows = _events(people, 4)
    _tamper("DELETE FROM audit_auditevent WHERE id <= %s", [rows[1].id])
    assert first is not None
    with pytest.raises(CommandError, match=rf"row {rows[2].id}: it does not follow the start"):
        _verify_database()


def test_a_cut_tail_is_reported_against_an_earlier_export(people: Any, tmp_path: Path) -> None:
    _events(people, 4)
    out = _export(tmp_path)
    _verify_database("--manifest", f"{out}.manifest.json")
    last = AuditEvent.objects.order_by("-id").first()
    assert last is not None
    _tamper("DELETE FROM audit_auditevent WHERE id >= %s", [last.id - 2])
    _verify_database()  # the remaining chain alone is still whole...
    with pytest.raises(CommandError, match=rf"row {last.id}, the last row of the earlier"):
        _verify_database("--manifest", f"{out}.manifest.json")  # ...but it was cut


def test_pruning_keeps_the_rest_verifiable_from_an_anchor(people: Any, tmp_path: Path) -> None:
    old = _events(people, 5)
    later = timezone.now() + timedelta(days=30)
    result = maintenance.prune(10, actor_name="test", now=later)
    assert result.anchor is not None
    assert result.anchor.last_pruned_id == AuditEvent.objects.order_by("id").first().id - 1
    assert not AuditEvent.objects.filter(id__lte=result.anchor.last_pruned_id).exists()
    # Everything was older than the cutoff; the newest row stays so the chain goes on.
    assert AuditEvent.objects.filter(id=old[-1].id).exists()
    prune_event = AuditEvent.objects.get(action=Action.AUDIT_PRUNE)
    assert prune_event.details["last_pruned_hash"] == result.anchor.last_pruned_hash
    assert prune_event.details["rows"] == result.rows > 0

    _events(people, 3)
    _verify_database()
    out = _export(tmp_path)
    call_command("audit_verify", str(out))
    assert AuditEvent.objects.order_by("id").first().prev_hash == result.anchor.last_pruned_hash


def test_pruning_everything_but_one_row_twice_still_verifies(people: Any) -> None:
    _events(people, 3)
    later = timezone.now() + timedelta(days=30)
    maintenance.prune(10, actor_name="test", now=later)
    _events(people, 2)
    maintenance.prune(10, actor_name="test", now=later + timedelta(days=30))
    assert AuditAnchor.objects.count() == 2
    _verify_database()


def test_nothing_recent_is_pruned(people: Any, capsys: Any) -> None:
    _events(people, 3)
    before = AuditEvent.objects.count()
    call_command("audit_prune", "--days", "1")
    assert "Nothing older" in capsys.readouterr().out
    assert AuditEvent.objects.count() == before and not AuditAnchor.objects.exists()


def test_pruning_refuses_to_destroy_evidence_of_tampering(people: Any) -> None:
    rows = _events(people, 4)
    _tamper("UPDATE audit_auditevent SET details = '{}' WHERE id = %s", [rows[1].id])
    count = AuditEvent.objects.count()
    with pytest.raises(maintenance.MaintenanceRefused, match="do not verify"):
        maintenance.prune(1, actor_name="test", now=timezone.now() + timedelta(days=9))
    assert AuditEvent.objects.count() == count


def test_an_anchor_added_by_hand_is_reported(people: Any) -> None:
    rows = _events(people, 4)
    _tamper("DELETE FROM audit_auditevent WHERE id <= %s", [rows[1].id])
    # The forger also writes an anchor so the remaining rows seem to follow it.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditanchor (created_at, last_pruned_id, last_pruned_hash, "
            "last_pruned_created_at, rows_pruned, retention_days) "
            "VALUES (now(), %s, %s, now(), 2, 1)",
            [rows[1].id, rows[1].hash],
        )
    with pytest.raises(CommandError, match="not confirmed by an audit_prune event"):
        _verify_database()


def test_the_application_role_can_neither_prune_nor_erase(people: Any) -> None:
    _events(people, 3)
    count = AuditEvent.objects.count()
    for attempt in (
        lambda: maintenance.prune(1, actor_name="x", now=timezone.now() + timedelta(days=9)),
        lambda: maintenance.erase_person("alice", actor_name="x"),
    ):
        with (
            pytest.raises(maintenance.MaintenanceRefused, match="owner role"),
            transaction.atomic(),
        ):
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL ROLE appliance_app")
            attempt()
    assert AuditEvent.objects.count() == count
    assert not AuditAnchor.objects.exists()


def test_erasing_a_person_leaves_a_pseudonym_and_a_verifiable_log(
    people: Any, tmp_path: Path, capsys: Any
) -> None:
    client = Client(HTTP_USER_AGENT="AliceBrowser/2.0", REMOTE_ADDR="10.9.8.7")
    client.post("/login/", {"username": "alice", "password": "wrong"})
    client.post("/login/", {"username": "alice", "password": PASSWORD})
    client.post("/logout/")
    audit.record_alone(Action.QUESTION, actor=people.bob, details={"text": "bob's"})
    before = _export(tmp_path, "before.jsonl")
    assert b"AliceBrowser" in before.read_bytes()
    alice_pk = people.alice.pk
    capsys.readouterr()

    call_command("audit_erase_person", "alice")

    pseudonym = capsys.readouterr().out.strip().splitlines()[-1]
    assert pseudonym.startswith("erased-")
    erased = AuditEvent.objects.filter(actor=pseudonym)
    assert erased.count() == 3  # the failed sign-in, the sign-in and the sign-out
    assert not erased.exclude(ip="", user_agent="", identity_salt="").exists()
    assert not AuditEvent.objects.filter(actor="alice").exists()
    assert not AuditEvent.objects.filter(user_agent="AliceBrowser/2.0").exists()
    account = User.objects.get(pk=alice_pk)
    assert account.username == pseudonym and not account.is_active
    erasure = AuditEvent.objects.get(action=Action.AUDIT_ERASE)
    assert "alice" not in str(audit.to_row(erasure)).lower().replace(pseudonym, "")
    about = AuditEvent.objects.filter(subject=pseudonym).exclude(actor=pseudonym)
    assert about.exists()  # the fixture created her account and memberships
    assert erasure.details["rows"] == erased.count() + about.count()

    _verify_database()
    call_command("audit_verify", str(_export(tmp_path, "after.jsonl")))
    # An export made before the erasure still verifies on its own: it is a signed copy.
    export.verify_export(before)


def test_an_erased_row_is_still_protected_by_its_hash(people: Any) -> None:
    rows = _events(people, 3)
    maintenance.erase_person("alice", actor_name="test", keep_account=True)
    _verify_database()
    _tamper("UPDATE audit_auditevent SET details = '{\"i\": 7}' WHERE id = %s", [rows[1].id])
    with pytest.raises(CommandError, match=rf"row {rows[1].id}: its content"):
        _verify_database()


def test_erasure_reaches_rows_about_the_person_and_the_log_still_verifies(
    people: Any, tmp_path: Path
) -> None:
    from appliance.accounts import actions as accounts
    from appliance.accounts.models import Department, Role

    department = Department.objects.create(name="Legal")
    accounts.add_membership(people.oscar, people.alice, department, Role.EMPLOYEE)
    accounts.change_role(
        people.oscar,
        people.alice.memberships.get(department=department),
        Role.CURATOR,
    )
    about = AuditEvent.objects.filter(subject="alice", actor="oscar")
    assert about.count() == 2
    assert not any("alice" in str(e.details) for e in about)
    found = export.filtered(export.Filters(user="alice")).filter(actor="oscar")
    assert found.count() == 2  # the user filter finds rows about the person too

    result = maintenance.erase_person("alice", actor_name="test", keep_account=True)

    assert not AuditEvent.objects.filter(subject="alice").exists()
    assert AuditEvent.objects.filter(subject=result.pseudonym, actor="oscar").count() == 2
    assert result.rows >= 2
    _verify_database()
    call_command("audit_verify", str(_export(tmp_path)))


def test_an_altered_subject_is_caught_by_the_identity_digest(people: Any) -> None:
    from appliance.accounts import actions as accounts

    accounts.deactivate_user(people.oscar, people.bob)
    row = AuditEvent.objects.get(action=Action.USER_DEACTIVATE)
    assert row.subject == "bob"
    _tamper("UPDATE audit_auditevent SET subject = 'carol' WHERE id = %s", [row.id])
    with pytest.raises(CommandError, match=rf"row {row.id}: actor, subject"):
        _verify_database()
