"""Every audited act writes exactly one audit row, through the entry point people use, and
that row says when (UTC), who, in which departments, from which address and browser.

Acts done by a worker rather than a request (an answer, the end of an ingestion) carry no
address or browser of their own; their row points at the question or document, whose own
row (the question, the upload) carries them.
"""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client, TestCase
from django.utils import timezone

from appliance.accounts import actions as accounts
from appliance.accounts.models import Membership, Role
from appliance.audit import actions as audit
from appliance.audit import maintenance
from appliance.audit.models import Action, AuditEvent
from inference import actions as inference_actions
from inference import answering
from inference.settings_file import set_values
from ingest import actions as ingest_actions
from ingest import pipeline
from ingest.actions import create_collection
from ingest.models import Collection, Document
from tests.conftest import PASSWORD, ClientFor

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent

BROWSER = "AuditedBrowser/1.0"
ADDRESS = "192.0.2.44"
FROM_BROWSER = {"HTTP_USER_AGENT": BROWSER, "REMOTE_ADDR": ADDRESS}


@dataclass
class World:
    people: Any
    hr: Collection
    handbook: Document
    tmp: Path
    signed_in: ClientFor


def _upload(curator: Any, collection: Collection, name: str, text: str) -> Document:
    (result,) = ingest_actions.upload_documents(
        curator, collection, [ingest_actions.IncomingFile(name, io.BytesIO(text.encode()))]
    )
    assert result.document is not None, result.error
    return result.document


@pytest.fixture
def world(
    people: Any, tmp_path: Path, settings: Any, monkeypatch: Any, signed_in: ClientFor
) -> World:
    settings.LLM_MAX_ANSWER_TOKENS = 16
    monkeypatch.setenv("APPLIANCE_ENV_FILE", str(tmp_path / "appliance.env"))
    hr = create_collection(people.carol, "HR handbook", people.hr)
    handbook = _upload(
        people.carol, hr, "leave.txt", "Employees get 30 days of paid leave each year."
    )
    assert pipeline.process(handbook.pk) == "ready"
    return World(people, hr, handbook, tmp_path, signed_in)


# Each case prepares everything its act needs (sign-ins, uploads: their rows are not
# counted) and returns the act itself: the one audited thing.
Act = Callable[[], Any]


def _as(user_name: str | None, method: str, url: str, data: Any = None, **extra: Any) -> Any:
    def prepare(w: World) -> Act:
        if user_name:
            client = w.signed_in(getattr(w.people, user_name), **FROM_BROWSER)
        else:
            client = Client(**FROM_BROWSER)
        target = url(w) if callable(url) else url
        body = data(w) if callable(data) else (data or {})
        return lambda: getattr(client, method)(target, body, **extra)

    return prepare


def _answer(w: World) -> Act:
    question = inference_actions.ask(w.people.alice, "How many days of paid leave?")

    def act() -> None:
        with TestCase.captureOnCommitCallbacks(execute=True):
            assert answering.answer(question.pk) == "done"

    return act


def _ingest(name: str, text: str) -> Callable[[World], Act]:
    def prepare(w: World) -> Act:
        document = _upload(w.people.carol, w.hr, name, text)
        return lambda: pipeline.process(document.pk)

    return prepare


def _sharing(action: str, target: str) -> Callable[[World], Act]:
    def prepare(w: World) -> Act:
        department = str(w.people.finance.pk) if target == "department" else "all"
        if action == "unshare" and target == "department":
            ingest_actions.share_collection(w.people.carol, w.hr, w.people.finance)
        elif action == "unshare":
            ingest_actions.share_with_organisation(w.people.carol, w.hr)
        client = w.signed_in(w.people.carol, **FROM_BROWSER)
        return lambda: client.post(
            f"/collections/{w.hr.pk}/sharing", {"action": action, "department": department}
        )

    return prepare


def _alices_membership(w: World) -> str:
    membership = Membership.objects.get(user=w.people.alice, department=w.people.hr)
    return f"/operator/users/{w.people.alice.pk}/memberships/{membership.pk}"


def _plain(act: Callable[[World], Any]) -> Callable[[World], Act]:
    return lambda w: lambda: act(w)


CASES: dict[str, tuple[Callable[[World], Act], str, bool]] = {
    # name: (prepare, action, made by a request)
    "login": (
        _as(None, "post", "/login/", {"username": "alice", "password": PASSWORD}),
        Action.LOGIN,
        True,
    ),
    "failed login": (
        _as(None, "post", "/login/", {"username": "alice", "password": "wrong"}),
        Action.LOGIN_FAILED,
        True,
    ),
    "logout": (_as("alice", "post", "/logout/"), Action.LOGOUT, True),
    "access denied": (_as("alice", "get", "/audit/"), Action.ACCESS_DENIED, True),
    "question": (
        _as(
            "alice",
            "post",
            "/api/v1/questions",
            lambda w: json.dumps({"question": "How much leave?", "collection_ids": [w.hr.pk]}),
            content_type="application/json",
        ),
        Action.QUESTION,
        True,
    ),
    "answer": (_answer, Action.ANSWER, False),
    "upload": (
        _as(
            "carol",
            "post",
            lambda w: f"/collections/{w.hr.pk}/upload",
            lambda w: {"files": _named_file("new.txt", b"New policy.")},
        ),
        Action.UPLOAD,
        True,
    ),
    "ingestion finished": (_ingest("b.txt", "Bonus rules."), Action.INGEST_DONE, False),
    "ingestion failed": (_ingest("blank.txt", " \n \n"), Action.INGEST_FAILED, False),
    "delete": (
        _as("carol", "post", lambda w: f"/documents/{w.handbook.pk}/delete"),
        Action.DOCUMENT_DELETE,
        True,
    ),
    "share with a department": (_sharing("share", "department"), Action.SHARE, True),
    "unshare a department": (_sharing("unshare", "department"), Action.UNSHARE, True),
    "share with everyone": (_sharing("share", "all"), Action.SHARE, True),
    "unshare everyone": (_sharing("unshare", "all"), Action.UNSHARE, True),
    "membership added": (
        _as(
            "erin",
            "post",
            lambda w: f"/operator/users/{w.people.oscar.pk}/memberships/add",
            lambda w: {"department": w.people.hr.pk, "role": Role.EMPLOYEE},
        ),
        Action.MEMBERSHIP_ADD,
        True,
    ),
    "membership removed": (
        _as("erin", "post", lambda w: _alices_membership(w) + "/remove"),
        Action.MEMBERSHIP_REMOVE,
        True,
    ),
    "role changed": (
        _as("erin", "post", lambda w: _alices_membership(w) + "/role", {"role": Role.CURATOR}),
        Action.ROLE_CHANGE,
        True,
    ),
    "user deactivated": (
        _as("erin", "post", lambda w: f"/operator/users/{w.people.bob.pk}/deactivate"),
        Action.USER_DEACTIVATE,
        True,
    ),
    "department created": (
        _as("erin", "post", "/operator/departments/create", {"name": "Legal"}),
        Action.DEPARTMENT_CREATE,
        True,
    ),
    "settings changed": (
        _plain(lambda w: set_values({"APPLIANCE_LLM_THREADS": "4"})),
        Action.SETTINGS_CHANGE,
        False,
    ),
    "audit export (command)": (
        _plain(lambda w: call_command("audit_export", "--output", str(w.tmp / "a.jsonl"))),
        Action.AUDIT_EXPORT,
        False,
    ),
    "audit export (api)": (
        _as("dave", "get", "/api/v1/audit/events?format=csv"),
        Action.AUDIT_EXPORT,
        True,
    ),
    "audit export (page)": (
        _as("dave", "get", "/audit/export?format=jsonl"),
        Action.AUDIT_EXPORT,
        True,
    ),
    "audit pruned": (
        _plain(
            lambda w: maintenance.prune(
                1, actor_name="test", now=timezone.now() + timedelta(days=5)
            )
        ),
        Action.AUDIT_PRUNE,
        False,
    ),
    "person erased": (
        _plain(lambda w: maintenance.erase_person("oscar", actor_name="test")),
        Action.AUDIT_ERASE,
        False,
    ),
}


def _named_file(name: str, content: bytes) -> io.BytesIO:
    handle = io.BytesIO(content)
    handle.name = name
    return handle


@pytest.mark.parametrize("case", list(CASES))
def test_each_audited_act_writes_exactly_one_row(world: World, case: str) -> None:
    prepare, action, by_request = CASES[case]
    act = prepare(world)
    before = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0

    response = act()

    if response is not None and hasattr(response, "streaming_content"):
        b"".join(response.streaming_content)
    new = list(AuditEvent.objects.filter(id__gt=before).order_by("id"))
    assert [e.action for e in new] == [action], [str(e) for e in new]
    (row,) = new
    assert row.created_at.utcoffset() == timedelta(0)
    assert audit.to_row(row)["created_at"].endswith("+00:00")
    if by_request:
        assert (row.ip, row.user_agent) == (ADDRESS, BROWSER)
        assert row.actor and row.actor_departments, "who, and in which departments"
    if action == Action.ANSWER:
        assert row.actor == "alice" and row.actor_departments == ["HR:employee"]
        for key in ("model", "retrieved_chunk_ids", "cited_chunk_ids", "prompt_tokens"):
            assert key in row.details, key
        assert row.details["retrieved_chunk_ids"] and row.details["prompt_tokens"] > 0
        assert row.details["completion_tokens"] > 0 and row.details["latency_ms"] > 0
    if action == Action.QUESTION:
        assert row.details["text"] == "How much leave?" and row.details["scope"] == [world.hr.pk]


def test_a_setting_changed_by_command_is_audited_without_its_secret(
    world: World, monkeypatch: Any
) -> None:
    env_file = world.tmp / "appliance.env"
    env_file.write_text("APPLIANCE_SECRET_KEY=old\nAPPLIANCE_DEBUG=false\n")
    env_file.chmod(0o600)
    set_values({"APPLIANCE_SECRET_KEY": "new-secret-value", "APPLIANCE_LLM_THREADS": "3"})
    assert "APPLIANCE_SECRET_KEY=new-secret-value" in env_file.read_text()
    assert env_file.stat().st_mode & 0o777 == 0o600  # the secrets stay private
    row = AuditEvent.objects.get(action=Action.SETTINGS_CHANGE)
    assert row.details["values"]["APPLIANCE_LLM_THREADS"] == "3"
    assert "new-secret-value" not in json.dumps(audit.to_row(row))
    assert row.actor.startswith("(command line")


def test_deploy_writes_an_audit_signing_key_once(tmp_path: Path) -> None:
    def ensure(env_file: Path) -> str:
        script = f'source deploy/lib/common.sh; ENV_FILE="{env_file}"; ensure_env_file'
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "APPLIANCE_DATA_DIR": str(tmp_path)}
        subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, check=True, capture_output=True)
        return env_file.read_text()

    fresh = ensure(tmp_path / "fresh.env")
    assert fresh.count("APPLIANCE_AUDIT_SIGNING_KEY=") == 1
    assert (tmp_path / "fresh.env").stat().st_mode & 0o777 == 0o600
    assert ensure(tmp_path / "fresh.env") == fresh  # run again: the key is kept
    older = tmp_path / "older.env"
    older.write_text("APPLIANCE_SECRET_KEY=x\n")  # from before signing keys
    assert ensure(older).count("APPLIANCE_AUDIT_SIGNING_KEY=") == 1


def test_membership_changes_by_command_are_audited_once_each(people: Any) -> None:
    before = AuditEvent.objects.count()
    accounts.add_membership(people.erin, people.oscar, people.finance, Role.EMPLOYEE)
    accounts.add_membership(people.erin, people.oscar, people.finance, Role.EMPLOYEE)  # no-op
    accounts.remove_membership(people.erin, people.oscar, people.finance, Role.EMPLOYEE)
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True)[before:])
    assert actions == [Action.MEMBERSHIP_ADD, Action.MEMBERSHIP_REMOVE]
