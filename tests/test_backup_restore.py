"""The restore drill: a working appliance is backed up while questions keep coming, and
restored onto a fresh host (a new database, a new data folder, a new settings file) by
``manage.py restore`` in processes of its own, as an operator would run it.

On the real PostgreSQL, Redis, parse sandbox, embedding model and SmolLM2: documents are
ingested for real, a question is answered with citations, the audit log is exported. The
restored host then gives the same search hits for the same questions, the same answers and
citations, every document with its file (SHA-256 equal), every row of every table, an audit
chain that verifies, and the old export verifies with the restored signing key (and not
with the fresh host's own key). A tampered backup is refused, naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection, connections
from psycopg import sql

from appliance import redis_client
from appliance.accounts.models import User
from appliance.audit import signing
from appliance.audit.models import AuditEvent
from appliance.operations import backup, restore_settings
from inference import actions as inference_actions
from inference import answering
from inference.models import Question
from inference.retrieval import search
from ingest import actions as ingest_actions
from ingest import embedding, pipeline, storage
from ingest.models import Collection, Document
from tests.conftest import DOCUMENTS

ROOT = Path(__file__).resolve().parent.parent
OLD_HOST_SIGNING_KEY = "old-host-audit-signing-key-" + "k" * 24
NEW_HOST_SIGNING_KEY = "new-host-audit-signing-key-" + "n" * 24

HR_MEMO = (
    "Quokka restructuring memo. The quokka team moves to the second floor in March. "
    "The secret canary phrase is purple elephant 7431.\n\nParking: staff park in garage B "
    "from April; visitors use the front lot."
)
BUDGET = "Finance note. The travel budget for 2026 is 40,000 euros, approved in January."
# (who asks, what): HR's employee, Finance's employee, and a question nobody's documents hold.
QUERIES = [
    ("alice", "When does the quokka team move to the second floor?"),
    ("alice", "Where do staff park from April?"),
    ("bob", "What is the travel budget for 2026?"),
    ("bob", "When does the quokka team move?"),
    ("alice", "What does Reliance report about its revenue?"),
]
ASKED = "When does the quokka team move to the second floor?"


def probe() -> dict[str, Any]:
    """Everything the drill compares, read through the appliance's own code in whatever
    database and data folder this process is configured for (run here for the original,
    in a child process for the restored host)."""
    people = {u.username: u for u in User.objects.all()}
    hits = {}
    for who, text in QUERIES:
        found = search(
            people[who], text, lambda model, t=text: embedding.embed([t], name=model)[0], k=6
        )
        hits[f"{who}: {text}"] = [
            [h.chunk_id, h.document_id, h.ordinal, h.page, round(h.score, 6)] for h in found
        ]
    documents = {}
    for document in Document.objects.order_by("pk"):
        path = storage.absolute(document.stored_path)
        on_disk = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        documents[str(document.pk)] = {
            "name": document.original_name,
            "status": document.status,
            "sha256": document.sha256,
            "file_sha256": on_disk,
            "chunks": document.chunks,
        }
    questions = {}
    for question in Question.objects.order_by("pk"):
        questions[str(question.pk)] = {
            "text": question.text,
            "status": question.status,
            "answer": question.answer,
            "conversation": question.conversation_id,
            "retrieved": question.retrieved_chunk_ids,
            "citations": [
                [c.n, c.chunk_id, c.document_id, c.page, c.snippet, c.cited]
                for c in question.citations.order_by("n")
            ],
        }
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relkind = 'r' ORDER BY relname"
        )
        tables = [name for (name,) in cursor.fetchall()]
        rows = {}
        for table in tables:
            cursor.execute(f'SELECT count(*) FROM "{table}"')  # noqa: S608 - catalog names
            rows[table] = cursor.fetchone()[0]
        cursor.execute(
            "SELECT has_table_privilege(%s, 'audit_auditevent', 'INSERT'), "
            "has_table_privilege(%s, 'audit_auditevent', 'UPDATE'), "
            "has_table_privilege(%s, 'audit_auditevent', 'DELETE'), "
            "has_table_privilege(%s, 'audit_auditanchor', 'INSERT'), "
            "has_table_privilege(%s, 'ingest_document', 'DELETE')",
            [settings.DB_APP_ROLE] * 5,
        )
        grants = list(cursor.fetchone())
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN "
            "('audit_auditevent'::regclass, 'audit_auditanchor'::regclass) ORDER BY tgname"
        )
        triggers = [name for (name,) in cursor.fetchall()]
    return {
        "hits": hits,
        "documents": documents,
        "questions": questions,
        "rows": rows,
        "audit_hashes": [
            [pk, digest]
            for pk, digest in AuditEvent.objects.order_by("id").values_list("id", "hash")
        ],
        "grants": grants,
        "triggers": triggers,
    }


@dataclass
class Host:
    """The fresh host: its own database name, data folder and settings file."""

    database: str
    data_dir: Path
    env_file: Path

    def env(self) -> dict[str, str]:
        """The environment of a process on that host: nothing of this test's settings but
        the connection as the owner (the test cluster's roles) and the models folder."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
        env.update(
            DJANGO_SETTINGS_MODULE="appliance.settings",
            APPLIANCE_ENV_FILE=str(self.env_file),
            APPLIANCE_DB_USER=connection.settings_dict["USER"],
            APPLIANCE_DB_PASSWORD=connection.settings_dict["PASSWORD"],
            APPLIANCE_MODELS_DIR=str(settings.MODELS_DIR),
            APPLIANCE_LLM_MODEL="smollm2-135m",
            HF_HUB_OFFLINE="1",
        )
        return env

    def manage(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=600,
        )

    def probe(self) -> dict[str, Any]:
        code = (
            "import django, json; django.setup(); "
            "from tests.test_backup_restore import probe; print(json.dumps(probe()))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def database_exists(self) -> bool:
        with _owner() as server:
            found = server.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [self.database]
            ).fetchone()
        return found is not None


def _owner() -> psycopg.Connection:
    config = connection.settings_dict
    return psycopg.connect(
        host=config["HOST"] or "127.0.0.1",
        port=config["PORT"] or 5432,
        dbname="postgres",
        user=config["USER"],
        password=config["PASSWORD"],
        autocommit=True,
    )


def _write_env(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    path.chmod(0o600)


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs}


@pytest.fixture
def new_host(tmp_path: Path) -> Iterator[Host]:
    host = Host(
        database=f"test_ops_restore_{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path / "new-host" / "var",
        env_file=tmp_path / "new-host" / "var" / "appliance.env",
    )
    # What deploy/up writes on a fresh host: its own secrets and passwords.
    _write_env(
        host.env_file,
        {
            "APPLIANCE_SECRET_KEY": "new-host-secret-" + "s" * 50,
            "APPLIANCE_DATA_DIR": str(host.data_dir),
            "APPLIANCE_DB_NAME": host.database,
            "APPLIANCE_DB_PASSWORD": "new-host-app-password",
            "APPLIANCE_DB_OWNER_PASSWORD": "new-host-owner-password",
            "APPLIANCE_AUDIT_SIGNING_KEY": NEW_HOST_SIGNING_KEY,
            "APPLIANCE_REDIS_URL": settings.REDIS_URL,
        },
    )
    yield host
    with _owner() as server:
        server.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(host.database))
        )


@pytest.fixture
def old_host_env(tmp_path: Path, settings: Any) -> Path:
    """The settings file of the appliance being backed up, whose signing key signs exports."""
    settings.AUDIT_SIGNING_KEY = OLD_HOST_SIGNING_KEY
    settings.LLM_MAX_ANSWER_TOKENS = 24
    path = tmp_path / "old-host" / "appliance.env"
    _write_env(
        path,
        {
            "APPLIANCE_SECRET_KEY": "old-host-secret-" + "o" * 50,
            "APPLIANCE_DATA_DIR": "/srv/old-host/var",
            "APPLIANCE_DB_PASSWORD": "old-host-app-password",
            "APPLIANCE_DB_OWNER_PASSWORD": "old-host-owner-password",
            "APPLIANCE_AUDIT_SIGNING_KEY": OLD_HOST_SIGNING_KEY,
            "APPLIANCE_RETRIEVAL_TOP_K": "6",
        },
    )
    return path


@pytest.fixture(autouse=True)
def clean_slate() -> Iterator[None]:
    # Ids start at 1 in every test database; this test's Redis database holds nothing old.
    redis_client.client().flushdb()
    shutil.rmtree(settings.UPLOAD_DIR, ignore_errors=True)
    yield
    redis_client.client().flushdb()
    shutil.rmtree(settings.UPLOAD_DIR, ignore_errors=True)


def _ingest(curator: Any, collection: Collection, name: str, data: bytes) -> Document:
    (result,) = ingest_actions.upload_documents(
        curator, collection, [ingest_actions.IncomingFile(name, io.BytesIO(data))], enqueue=False
    )
    assert result.document is not None, result.error
    assert pipeline.process(result.document.pk) == "ready"
    result.document.refresh_from_db()
    return result.document


def _appliance_with_history(people: Any) -> Question:
    """Two departments' documents ingested for real (text, a PDF, a book page) and one
    question answered by SmolLM2 with citations."""
    hr = ingest_actions.create_collection(people.carol, "HR handbook", people.hr)
    finance = ingest_actions.create_collection(None, "Budgets", people.finance)
    _ingest(people.carol, hr, "quokka-memo.txt", HR_MEMO.encode())
    _ingest(people.carol, hr, "book.txt", (DOCUMENTS / "book-war-and-peace-1p.txt").read_bytes())
    _ingest(None, finance, "budget.txt", BUDGET.encode())
    _ingest(None, finance, "reliance.pdf", (DOCUMENTS / "pdf" / "reliance.pdf").read_bytes())
    question = inference_actions.ask(people.alice, ASKED)
    assert answering.answer(question.pk) == "done"
    question.refresh_from_db()
    assert question.citations.exists(), "the drill needs an answer with citations"
    return question


class QuestionsDuringBackup(threading.Thread):
    """Questions asked (and a file uploaded) while the backup's snapshot is open and
    pg_dump reads: each must commit at once, and none may appear in the backup."""

    def __init__(self, people: Any, collection: Collection) -> None:
        super().__init__(daemon=True)
        self.people = people
        self.collection = collection
        self.stop = threading.Event()
        self.asked: list[tuple[float, float, int]] = []  # (started, finished, question id)
        self.uploaded: Document | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            number = 0
            while not self.stop.is_set():
                number += 1
                started = time.monotonic()
                question = inference_actions.ask(
                    self.people.alice, f"Asked during the backup, number {number}?"
                )
                self.asked.append((started, time.monotonic(), question.pk))
                if self.uploaded is None:
                    (result,) = ingest_actions.upload_documents(
                        self.people.carol,
                        self.collection,
                        [ingest_actions.IncomingFile("late.txt", io.BytesIO(b"Uploaded late."))],
                        enqueue=False,
                    )
                    self.uploaded = result.document
                time.sleep(0.02)
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            connections.close_all()


def test_restore_drill_on_a_fresh_host_loses_nothing(
    people: Any, live_db: Any, tmp_path: Path, old_host_env: Path, new_host: Host
) -> None:
    question = _appliance_with_history(people)
    export = tmp_path / "export-before-backup.jsonl"
    call_command("audit_export", format="jsonl", output=str(export), stdout=io.StringIO())
    before = probe()
    assert before["hits"][f"alice: {ASKED}"], "the drill needs search hits to compare"
    assert any(before["hits"][f"bob: {QUERIES[2][1]}"])

    # --- back up while questions keep coming -------------------------------------------
    folder = tmp_path / "backup"
    writer = QuestionsDuringBackup(people, Collection.objects.get(name="HR handbook"))
    lines: list[tuple[float, str]] = []

    def progress(line: str) -> None:
        lines.append((time.monotonic(), line))
        if line.startswith("[1/5]"):
            writer.start()  # the snapshot is open; pg_dump starts next
        elif line.startswith("[2/5]"):
            writer.stop.set()
            writer.join(timeout=30)

    result = backup.take(folder, env_file=old_host_env, say=progress)
    assert writer.error is None, writer.error
    dump_started = next(t for t, line in lines if line.startswith("[1/5]"))
    dump_done = next(t for t, line in lines if "database.dump:" in line)
    during = [q for started, finished, q in writer.asked if dump_started <= finished <= dump_done]
    assert during, "no question was asked while pg_dump ran"
    assert max(finished - started for started, finished, _ in writer.asked) < 2.0
    assert writer.uploaded is not None
    late_questions = {str(q) for _, _, q in writer.asked}

    manifest = json.loads((folder / "manifest.json").read_text())
    for document in Document.objects.exclude(pk=writer.uploaded.pk):
        assert manifest["files"][f"uploads/{document.stored_path}"]["sha256"] == document.sha256
    assert f"uploads/{writer.uploaded.stored_path}" not in manifest["files"]
    assert manifest["counts"]["questions"] == len(before["questions"])
    assert manifest["audit"]["last_hash"] == before["audit_hashes"][-1][1]
    assert manifest["versions"]["pgvector"] and manifest["versions"]["postgresql"]
    assert "secrets/appliance.env" in manifest["files"]
    assert {m["name"] for m in json.loads((folder / "models.json").read_text())} >= {
        "smollm2-135m",
        "all-MiniLM-L6-v2",
    }

    # --- before the restore, the new host cannot verify the old export ------------------
    refused = new_host.manage("audit_verify", str(export))
    assert refused.returncode != 0 and "another key" in refused.stderr

    # --- restore onto the fresh host, as its operator would ------------------------------
    # deploy/up on the fresh host made an empty, migrated database (APPLIANCE_DEMO=false).
    with _owner() as server:
        server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(new_host.database)))
    installed = new_host.manage("migrate", "--noinput")
    assert installed.returncode == 0, installed.stderr[-2000:]
    started = time.monotonic()
    restored = new_host.manage(
        "restore", str(folder), "--with-secrets", "--public-key", signing.public_key_hex()
    )
    restore_seconds = time.monotonic() - started
    assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]
    assert "the appliance's tables but no data; it will be created again" in restored.stdout
    assert "[6/7]" in restored.stdout and "Intact" in restored.stdout

    after = new_host.probe()
    # The same hits, in the same order with the same scores, for every question and person.
    assert after["hits"] == before["hits"]
    # The answer, its conversation and citations; every document and its file, unchanged.
    assert after["questions"] == before["questions"]
    assert after["questions"][str(question.pk)]["citations"]
    assert after["documents"] == before["documents"]
    assert all(d["file_sha256"] == d["sha256"] for d in after["documents"].values())
    # Every row of every table, and the audit chain row for row.
    assert after["rows"] == before["rows"]
    assert after["audit_hashes"] == before["audit_hashes"]
    # The append-only audit log: the same grants for the app role, the same triggers.
    assert after["grants"] == before["grants"] == [True, False, False, False, True]
    assert len(after["triggers"]) == 4 and after["triggers"] == before["triggers"]
    # What happened during the backup is after its snapshot: not in it.
    assert not late_questions & set(after["questions"])

    # The live table verifies, and so does the export made before the backup, with the
    # restored signing key (the fresh host's own key refused it above).
    assert new_host.manage("audit_verify", "--database").returncode == 0
    verified = new_host.manage("audit_verify", str(export))
    assert verified.returncode == 0, verified.stderr
    assert "Intact" in verified.stdout

    # The settings file: the old host's secrets, this host's connections and data folder.
    restored_env = _read_env(new_host.env_file)
    assert restored_env["APPLIANCE_AUDIT_SIGNING_KEY"] == OLD_HOST_SIGNING_KEY
    assert restored_env["APPLIANCE_SECRET_KEY"].startswith("old-host-secret-")
    assert restored_env["APPLIANCE_RETRIEVAL_TOP_K"] == "6"
    assert restored_env["APPLIANCE_DATA_DIR"] == str(new_host.data_dir)
    assert restored_env["APPLIANCE_DB_NAME"] == new_host.database
    assert restored_env["APPLIANCE_DB_OWNER_PASSWORD"] == "new-host-owner-password"
    assert restored_env["APPLIANCE_DEMO"] == "false"
    assert new_host.env_file.stat().st_mode & 0o077 == 0
    before_restore = new_host.env_file.with_name("appliance.env.before-restore")
    assert _read_env(before_restore)["APPLIANCE_AUDIT_SIGNING_KEY"] == NEW_HOST_SIGNING_KEY

    # A second restore onto the now-filled host is refused and changes nothing; with
    # --force it replaces the database and keeps the old upload folder beside the new one.
    again = new_host.manage("restore", str(folder))
    assert again.returncode != 0 and "is not empty" in again.stderr
    assert new_host.probe()["rows"] == before["rows"]
    forced = new_host.manage("restore", str(folder), "--force")
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert "settings file: NOT restored" in forced.stdout
    assert list(new_host.data_dir.glob("uploads.before-restore-*"))
    assert new_host.probe()["documents"] == before["documents"]

    print(  # the figures for docs/operations.md (pytest -s shows them)
        f"\nbackup: {result.seconds:.1f} s, {result.size / 2**20:.1f} MB "
        f"({manifest['files']['database.dump']['size'] / 2**20:.1f} MB dump, "
        f"{manifest['uploads']['files']} files); restore: {restore_seconds:.1f} s; "
        f"{len(before['documents'])} documents, {before['rows']['ingest_chunk']} chunks, "
        f"{len(before['audit_hashes'])} audit events"
    )


def test_a_tampered_backup_is_refused_naming_the_file(
    people: Any, live_db: Any, tmp_path: Path, old_host_env: Path, new_host: Host
) -> None:
    hr = ingest_actions.create_collection(people.carol, "HR handbook", people.hr)
    document = _ingest(people.carol, hr, "quokka-memo.txt", HR_MEMO.encode())
    folder = tmp_path / "backup"
    out = io.StringIO()
    call_command("backup", "--if-data", output=str(folder), env_file=str(old_host_env), stdout=out)
    assert "Backup complete" in out.getvalue()

    # A folder that is not empty is refused, unless --force.
    with pytest.raises(CommandError, match="not empty"):
        call_command("backup", output=str(folder), stdout=io.StringIO())

    # One byte of one stored file changed: refused, the file named, nothing created.
    stored = folder / "uploads" / document.stored_path
    data = bytearray(stored.read_bytes())
    data[0] ^= 0x01
    stored.write_bytes(bytes(data))
    refused = new_host.manage("restore", str(folder))
    assert refused.returncode != 0
    assert f"uploads/{document.stored_path} does not match the manifest" in refused.stderr
    assert "nothing was restored" in refused.stderr
    assert not new_host.database_exists()
    assert not (new_host.data_dir / "uploads").exists()

    # The manifest edited to vouch for the changed file: its signature gives it away.
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][f"uploads/{document.stored_path}"]["sha256"] = hashlib.sha256(
        bytes(data)
    ).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    forged = new_host.manage("restore", str(folder), "--public-key", signing.public_key_hex())
    assert forged.returncode != 0 and "signature is wrong" in forged.stderr
    assert not new_host.database_exists()

    # A backup that never finished (no manifest) is refused for what it is.
    (folder / "manifest.json").unlink()
    unfinished = new_host.manage("restore", str(folder))
    assert unfinished.returncode != 0 and "did not finish" in unfinished.stderr


def test_restored_settings_keep_this_hosts_connections_and_move_its_paths(settings: Any) -> None:
    settings.DATA_DIR = Path("/srv/new-host/var")
    old = (
        "# the old host\n"
        "APPLIANCE_SECRET_KEY=old-secret\n"
        "APPLIANCE_DATA_DIR=/srv/old-host/var\n"
        "APPLIANCE_DB_PASSWORD=old-app-password\n"
        "APPLIANCE_LLM_MODEL=gpt-oss-20b\n"
        "APPLIANCE_LLM_MODEL_PATH=/srv/old-host/var/models/gpt-oss-20b-mxfp4.gguf\n"
        "APPLIANCE_REDIS_URL=redis://old-host:6379/0\n"
    )
    mine = "APPLIANCE_DB_PASSWORD=new-app-password\nAPPLIANCE_SECRET_KEY=new-secret\n"
    text, set_here = restore_settings.merged_settings(old, mine)
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert text.startswith("# the old host\n")
    assert values["APPLIANCE_SECRET_KEY"] == "old-secret"
    assert values["APPLIANCE_DB_PASSWORD"] == "new-app-password"
    assert values["APPLIANCE_DATA_DIR"] == "/srv/new-host/var"
    assert values["APPLIANCE_LLM_MODEL_PATH"] == "/srv/new-host/var/models/gpt-oss-20b-mxfp4.gguf"
    # This host names no Redis of its own: the default, not the old host's server.
    assert "APPLIANCE_REDIS_URL" not in values
    assert values["APPLIANCE_DEMO"] == "false"
    assert set(set_here) == {
        "APPLIANCE_DB_PASSWORD",
        "APPLIANCE_DATA_DIR",
        "APPLIANCE_LLM_MODEL_PATH",
    }
