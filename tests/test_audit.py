"""The audit trail: one row per act in the act's transaction, append-only in the database,
a hash chain that exports verify offline, and exports that detect a changed byte."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client

from appliance.audit import actions as audit
from appliance.audit import chain, export, signing
from appliance.audit.models import Action, AuditEvent
from tests.conftest import PASSWORD, ClientFor

pytestmark = pytest.mark.django_db
AUDITOR_BROWSER = {"HTTP_USER_AGENT": "AuditorBrowser/1.0", "REMOTE_ADDR": "10.1.2.3"}


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
    # By bob, or about bob (his account and memberships, created by the fixture).
    assert all("bob" in (r["actor"], r["subject"]) for r in rows)
    assert [r["action"] for r in rows if r["actor"] == "bob"] == ["question"]
    assert any(r["subject"] == "bob" for r in rows)
    call_command("audit_verify", str(out))


def test_each_export_is_itself_audited(people: Any, tmp_path: Path, signed_in: ClientFor) -> None:
    _export(tmp_path, "jsonl")
    client = signed_in(people.dave)
    response = client.get("/api/v1/audit/events?format=csv&action=login")
    assert response.status_code == 200
    b"".join(response.streaming_content)
    assert AuditEvent.objects.filter(action=Action.AUDIT_EXPORT).count() == 2


def test_manifest_is_signed_with_the_dedicated_key_not_the_secret_key(
    people: Any, tmp_path: Path, settings: Any
) -> None:
    settings.AUDIT_SIGNING_KEY = "k" * 40
    out = _export(tmp_path, "jsonl")
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert manifest["signature_algorithm"] == "ed25519"
    settings.SECRET_KEY = "another-secret-key-" + "y" * 40  # rotating Django's key...
    export.verify_export(out)  # ...leaves audit exports verifiable
    settings.AUDIT_SIGNING_KEY = "z" * 40  # another appliance's key does not verify it
    with pytest.raises(export.VerificationFailed, match="another key"):
        export.verify_export(out)


def test_an_export_verifies_offline_with_only_the_public_key(
    people: Any, tmp_path: Path, settings: Any, capsys: Any
) -> None:
    settings.AUDIT_SIGNING_KEY = "the appliance's own signing secret, 40+ chars"
    audit.record_alone(Action.QUESTION, actor=people.alice, details={"text": "hello"})
    out = _export(tmp_path, "csv")
    capsys.readouterr()
    call_command("audit_public_key")
    public_key = capsys.readouterr().out.strip()
    assert len(public_key) == 64
    # Elsewhere: a machine that holds no secret of this appliance.
    settings.AUDIT_SIGNING_KEY = "some other machine's key, not this appliance's"
    with pytest.raises(CommandError, match="another key"):
        call_command("audit_verify", str(out))
    call_command("audit_verify", str(out), "--public-key", public_key)
    key_file = tmp_path / "appliance.pub"
    key_file.write_text(public_key + "\n")
    call_command("audit_verify", str(out), "--public-key", str(key_file))


def test_a_manifest_resigned_with_a_forgers_own_key_is_refused(
    people: Any, tmp_path: Path, settings: Any
) -> None:
    audit.record_alone(Action.QUESTION, actor=people.alice, details={"text": "original"})
    out = _export(tmp_path, "jsonl")
    trusted = signing.public_key_hex()
    # A forger edits a row, recomputes every hash and the file digest, and signs the
    # manifest with a key of their own, naming that key inside the manifest.
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    previous = rows[0]["prev_hash"]
    for row in rows:
        if row["details"].get("text") == "original":
            row["details"]["text"] = "forged"
        row["prev_hash"] = previous
        row["hash"] = chain.row_hash(previous, row)
        previous = row["hash"]
    out.write_text("".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    settings.AUDIT_SIGNING_KEY = "the forger's key " * 3
    manifest.update(
        sha256=hashlib.sha256(out.read_bytes()).hexdigest(),
        first_hash=rows[0]["hash"],
        last_hash=rows[-1]["hash"],
        public_key=signing.public_key_hex(),
    )
    manifest["signature"] = signing.sign(manifest)
    Path(f"{out}.manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(export.VerificationFailed, match="another key"):
        export.verify_export(out, public_key=trusted)


def test_api_export_carries_its_manifest_and_verifies(
    people: Any, tmp_path: Path, signed_in: ClientFor
) -> None:
    audit.record_alone(Action.QUESTION, actor=people.alice, details={"text": "=1+1"})
    response = signed_in(people.dave, **AUDITOR_BROWSER).get("/api/v1/audit/events?format=csv")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    manifest = json.loads(response["X-Audit-Manifest"])
    assert manifest["rows"] == AuditEvent.objects.count()
    (tmp_path / "api.csv").write_bytes(body)
    (tmp_path / "api.csv.manifest.json").write_text(json.dumps(manifest))
    call_command("audit_verify", str(tmp_path / "api.csv"))

    zipped = signed_in(people.dave, **AUDITOR_BROWSER).get(
        "/api/v1/audit/events?format=jsonl&bundle=zip"
    )
    assert zipped["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(b"".join(zipped.streaming_content))) as archive:
        archive.extractall(tmp_path / "bundle")
    (exported,) = (tmp_path / "bundle").glob("*.jsonl")
    call_command("audit_verify", str(exported))


def _page_download(client: Client, query: str) -> bytes:
    response = client.get(f"/audit/export?{query}")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/zip"
    return b"".join(response.streaming_content)


def _upload_for_check(client: Client, bundle: bytes) -> str:
    upload = io.BytesIO(bundle)
    upload.name = "audit.zip"
    response = client.post("/audit/verify", {"bundle": upload})
    assert response.status_code == 200
    return response.content.decode()


def test_auditor_page_downloads_an_export_and_checks_it_when_uploaded_again(
    people: Any, signed_in: ClientFor
) -> None:
    audit.record_alone(Action.QUESTION, actor=people.alice, details={"text": "plain question"})
    client = signed_in(people.dave, **AUDITOR_BROWSER)
    bundle = _page_download(client, "format=csv&user=alice")
    assert "<strong>Intact.</strong>" in _upload_for_check(client, bundle)

    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    (data_name,) = [n for n in members if n.endswith(".csv")]
    members[data_name] = members[data_name].replace(b"plain question", b"plain questioN")
    tampered = io.BytesIO()
    with zipfile.ZipFile(tampered, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    page = _upload_for_check(client, tampered.getvalue())
    assert "Not intact:" in page and "does not match its hash" in page


def test_the_page_and_the_api_give_the_same_export(people: Any, signed_in: ClientFor) -> None:
    audit.record_alone(Action.QUESTION, actor=people.bob, details={"text": "same?"})
    client = signed_in(people.dave, **AUDITOR_BROWSER)
    with zipfile.ZipFile(io.BytesIO(_page_download(client, "format=jsonl&user=bob"))) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".jsonl")]
        from_page = z.read(name)
    from_api = b"".join(client.get("/api/v1/audit/events?format=jsonl&user=bob").streaming_content)
    assert from_page == from_api and b"same?" in from_page
    exports = AuditEvent.objects.filter(action=Action.AUDIT_EXPORT).order_by("id")
    assert [e.details["via"] for e in exports] == ["web", "api"]


def test_only_auditors_may_download_or_check_exports(people: Any, signed_in: ClientFor) -> None:
    for other in (people.alice, people.bob, people.oscar, people.erin, people.carol):
        client = signed_in(other, **AUDITOR_BROWSER)
        assert client.get("/audit/export?format=csv").status_code == 404
        assert client.post("/audit/verify", {}).status_code == 404
    assert AuditEvent.objects.filter(action=Action.AUDIT_EXPORT).count() == 0
