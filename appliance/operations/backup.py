"""``manage.py backup``: one folder holding everything a restore needs.

Consistency on a live appliance: the database is read in one snapshot (a REPEATABLE READ
transaction whose snapshot pg_dump joins with ``--snapshot``), so writers never wait and
the dump is one moment of the appliance. The uploaded files copied are exactly those the
documents of that snapshot name. Stored files are never changed after they are written
(each upload gets a new name), so a file copied after the snapshot is the file the
snapshot meant; a file uploaded during the backup belongs to a document the snapshot does
not hold, and is left out with it. A document deleted during the backup loses its file
before the copy: the backup then holds the row without the file, and says so.

The folder (docs/operations.md, "Backups"):

    manifest.json        what is inside, versions, counts, and the SHA-256 of every file
    database.dump        pg_dump custom format: every table, the audit chain and its anchors
    audit.json           the audit chain's last row at the snapshot (restore checks it is there)
    uploads/…            the stored files, under their stored names
    secrets/appliance.env  the settings file: secret key, audit signing key, passwords
    models.json          the model files on the host, with sizes and SHA-256
    models/…             the model files themselves (only with --with-models)
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import django
import psycopg
from django.conf import settings

from appliance.audit import signing
from appliance.operations import model_files
from appliance.operations.common import (
    DbTarget,
    Say,
    client_tool,
    copy_with_sha256,
    git_commit,
    human_bytes,
    owner_target,
    server_major,
    settings_file,
    sha256_file,
)

FORMAT = "appliance-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DUMP = "database.dump"
AUDIT = "audit.json"
MODELS = "models.json"
SECRETS = "secrets/appliance.env"
UPLOADS = "uploads"
MODEL_COPIES = "models"

# Rows that make a database worth keeping; counted into the manifest, and what restore
# looks at to call a database empty.
COUNTED_TABLES = {
    "users": "accounts_user",
    "departments": "accounts_department",
    "collections": "ingest_collection",
    "documents": "ingest_document",
    "chunks": "ingest_chunk",
    "conversations": "inference_conversation",
    "questions": "inference_question",
    "citations": "inference_citation",
    "audit_events": "audit_auditevent",
    "audit_anchors": "audit_auditanchor",
}


class BackupError(Exception):
    """Why no backup was written, in words for the operator."""


@dataclass
class Snapshot:
    """What the database said, in the same snapshot the dump reads."""

    snapshot_id: str
    taken_at: datetime
    database: str
    postgresql: str
    postgresql_num: int
    pgvector: str
    counts: dict[str, int]
    stored_files: dict[str, str]  # stored path -> the SHA-256 recorded at upload ("" unknown)
    document_of: dict[str, int]
    embedding_models: list[str]
    audit_last: dict[str, Any]
    migrations: list[str]


@dataclass
class Result:
    folder: Path
    manifest: dict[str, Any]
    seconds: float
    size: int
    warnings: list[str] = field(default_factory=list)


def _prepare(output: Path, force: bool) -> None:
    output = output.resolve()
    upload_dir = Path(settings.UPLOAD_DIR).resolve()
    if output == upload_dir or upload_dir in output.parents:
        raise BackupError(f"{output} is inside the upload folder; choose a folder outside it.")
    if output.exists() and not output.is_dir():
        raise BackupError(f"{output} is a file, not a folder.")
    if output.exists() and any(output.iterdir()) and not force:
        raise BackupError(
            f"{output} is not empty. Choose a new or empty folder, or add --force to write "
            "into it (this backup's files are replaced, anything else is left alone)."
        )
    output.mkdir(parents=True, exist_ok=True)
    # It holds the secrets and every document: readable by its owner only.
    output.chmod(0o700)
    # A manifest left by an earlier backup must not vouch for a half-written new one.
    (output / MANIFEST).unlink(missing_ok=True)


def _read_snapshot(cursor: psycopg.Cursor) -> Snapshot:
    cursor.execute("SELECT pg_export_snapshot(), now(), current_database()")
    snapshot_id, taken_at, database = cursor.fetchone()
    cursor.execute(
        "SELECT current_setting('server_version'), current_setting('server_version_num')"
    )
    version, version_num = cursor.fetchone()
    cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    row = cursor.fetchone()
    cursor.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND relkind IN ('r', 'p')"
    )
    tables = {name for (name,) in cursor.fetchall()}
    if "ingest_document" not in tables or "audit_auditevent" not in tables:
        raise BackupError(
            f"The database {database} holds no appliance tables: is APPLIANCE_DB_NAME right, "
            "and has deploy/up (or migrate) run?"
        )
    counts = {}
    for label, table in COUNTED_TABLES.items():
        if table in tables:
            cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - names from the code
            counts[label] = int(cursor.fetchone()[0])
    stored: dict[str, str] = {}
    document_of: dict[str, int] = {}
    cursor.execute(
        "SELECT table_name || '.' || column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name IN ('ingest_document', 'ingest_collection')"
    )
    columns = {name for (name,) in cursor.fetchall()}
    # Backups run before an upgrade's migrations, so the schema may be an older one's.
    previous = "previous_stored_path" if "ingest_document.previous_stored_path" in columns else "''"
    cursor.execute(f"SELECT id, stored_path, sha256, {previous} FROM ingest_document")  # noqa: S608
    for document_id, path, digest, previous in cursor.fetchall():
        if path:
            stored[path] = digest or ""
            document_of[path] = document_id
        if previous:
            stored.setdefault(previous, "")
            document_of.setdefault(previous, document_id)
    embedding_models = []
    if "ingest_collection.reembedding_to" in columns:
        cursor.execute(
            "SELECT embedding_model FROM ingest_collection UNION "
            "SELECT reembedding_to FROM ingest_collection WHERE reembedding_to <> ''"
        )
        embedding_models = sorted(name for (name,) in cursor.fetchall() if name)
    cursor.execute("SELECT id, hash FROM audit_auditevent ORDER BY id DESC LIMIT 1")
    last = cursor.fetchone()
    audit_last: dict[str, Any] = {"last_id": last[0], "last_hash": last[1]} if last else {}
    cursor.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
    migrations = [f"{app}.{name}" for app, name in cursor.fetchall()]
    return Snapshot(
        snapshot_id=snapshot_id,
        taken_at=taken_at,
        database=database,
        postgresql=version,
        postgresql_num=int(version_num),
        pgvector=row[0] if row else "",
        counts=counts,
        stored_files=stored,
        document_of=document_of,
        embedding_models=embedding_models,
        audit_last=audit_last,
        migrations=migrations,
    )


def _dump(target: DbTarget, snapshot: Snapshot, dump: Path, say: Say) -> None:
    pg_dump, major, line = client_tool("pg_dump")
    if pg_dump is None:
        raise BackupError(
            "pg_dump is not installed. Install PostgreSQL's client programs "
            "(Debian: apt-get install postgresql-client) and try again."
        )
    server = server_major(snapshot.postgresql_num)
    if major is not None and major < server:
        raise BackupError(
            f"{line} cannot dump PostgreSQL {snapshot.postgresql}: install the client "
            f"programs of version {server} or newer (postgresql-client-{server})."
        )
    command = [
        str(pg_dump),
        "--format=custom",
        f"--snapshot={snapshot.snapshot_id}",
        f"--file={dump}",
        "--no-password",
    ]
    started = time.monotonic()
    # stderr to a file: a pipe nobody reads while pg_dump runs could fill and stall it.
    with tempfile.TemporaryFile("w+") as errors:
        with subprocess.Popen(command, env=target.libpq_env(), stderr=errors) as process:
            told = started
            while process.poll() is None:
                time.sleep(0.5)
                if time.monotonic() - told >= 10:
                    told = time.monotonic()
                    size = dump.stat().st_size if dump.exists() else 0
                    say(f"    … {human_bytes(size)} written, {told - started:.0f} s")
        errors.seek(0)
        message = errors.read()
    if process.returncode != 0:
        raise BackupError(f"pg_dump failed (exit {process.returncode}): {message.strip()[-2000:]}")


def _copy_uploads(snapshot: Snapshot, folder: Path, say: Say) -> tuple[dict, list[str], dict]:
    """Copy the files the snapshot's documents name. Returns (files for the manifest,
    warnings, statistics)."""
    root = Path(settings.UPLOAD_DIR).resolve()
    files: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    copied = size = 0
    missing = []
    told = time.monotonic()
    for stored, expected in sorted(snapshot.stored_files.items()):
        source = (root / stored).resolve()
        if root not in source.parents:
            warnings.append(
                f"document {snapshot.document_of[stored]}: its stored path "
                f"{stored!r} leaves the upload folder; not copied"
            )
            continue
        if not source.is_file():
            missing.append(stored)
            continue
        relative = f"{UPLOADS}/{Path(stored).as_posix()}"
        digest, length = copy_with_sha256(source, folder / relative)
        files[relative] = {"sha256": digest, "size": length}
        if expected and digest != expected:
            warnings.append(
                f"document {snapshot.document_of[stored]}: the file {stored} on disk differs "
                "from the one uploaded (its SHA-256 changed); copied as it is"
            )
        copied += 1
        size += length
        if time.monotonic() - told >= 5:
            told = time.monotonic()
            say(f"    … {copied:,} of {len(snapshot.stored_files):,} files, {human_bytes(size)}")
    for stored in missing:
        warnings.append(
            f"document {snapshot.document_of[stored]}: its file {stored} was not in the upload "
            "folder (deleted after the snapshot, or lost before it); the backup holds the "
            "row without the file"
        )
    referenced = {(root / p).resolve() for p in snapshot.stored_files}
    left_out = 0
    if root.is_dir():
        left_out = sum(1 for p in root.rglob("*") if p.is_file() and p.resolve() not in referenced)
    stats = {"files": copied, "bytes": size, "missing": len(missing), "left_out": left_out}
    return files, warnings, stats


def _copy_models(entries: list[model_files.ModelEntry], folder: Path, say: Say) -> dict:
    files: dict[str, dict[str, Any]] = {}
    models_dir = Path(settings.MODELS_DIR)
    for entry in entries:
        if not entry.present:
            continue
        for item in entry.files:
            source = Path(item.path) if Path(item.path).is_absolute() else models_dir / item.path
            # Files outside the models folder keep their place under "external/".
            inside = (
                item.path
                if not Path(item.path).is_absolute()
                else ("external/" + item.path.lstrip("/"))
            )
            relative = f"{MODEL_COPIES}/{inside}"
            say(f"    {relative} ({human_bytes(item.size)})")
            digest, length = copy_with_sha256(source, folder / relative)
            files[relative] = {"sha256": digest, "size": length}
    return files


def _write_json(path: Path, content: Any) -> dict[str, Any]:
    path.write_text(json.dumps(content, indent=2, default=str) + "\n", encoding="utf-8")
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def versions(snapshot: Snapshot) -> dict[str, Any]:
    try:
        appliance_version = metadata.version("appliance")
    except metadata.PackageNotFoundError:
        appliance_version = ""
    return {
        "appliance": appliance_version,
        "appliance_commit": git_commit(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgresql": snapshot.postgresql,
        "postgresql_num": snapshot.postgresql_num,
        "pgvector": snapshot.pgvector,
        "pg_dump": client_tool("pg_dump")[2],
    }


def holds_data(target: DbTarget) -> bool:
    """Whether the database has the appliance's tables with anything in them: deploy/up
    backs up before an upgrade, and a new installation has nothing to keep."""
    try:
        with target.connect() as database:
            tables = {
                name
                for (name,) in database.execute(
                    "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                    "AND relkind IN ('r', 'p')"
                ).fetchall()
            }
            for table in ("accounts_user", "ingest_document", "audit_auditevent"):
                if table in tables:
                    query = f"SELECT EXISTS (SELECT 1 FROM {table})"  # noqa: S608 - our names
                    if database.execute(query).fetchone()[0]:
                        return True
    except psycopg.OperationalError as exc:
        if f'database "{target.name}" does not exist' in str(exc):
            return False
        # Anything else (a wrong password, PostgreSQL down) must not pass for "no data":
        # an upgrade would then go on without its backup.
        raise BackupError(f"Cannot reach the database {target.name}: {str(exc).strip()}") from None
    return False


def take(
    output: Path,
    *,
    force: bool = False,
    with_models: bool = False,
    with_secrets: bool = True,
    env_file: Path | None = None,
    say: Say = print,
) -> Result:
    started = time.monotonic()
    _prepare(output, force)
    folder = output.resolve()
    target = owner_target()
    warnings: list[str] = []
    files: dict[str, dict[str, Any]] = {}

    say(f"Backing up to {folder}")
    try:
        connection = target.connect(autocommit=False)
    except psycopg.OperationalError as exc:
        raise BackupError(
            f"Cannot reach the database {target.name} as {target.user}: {exc}".strip()
        ) from None
    with connection:
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = _read_snapshot(cursor)
            counts = snapshot.counts
            say(
                f"[1/5] database {snapshot.database} (PostgreSQL {snapshot.postgresql}, "
                f"pgvector {snapshot.pgvector or 'missing'}) as of "
                f"{snapshot.taken_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC: "
                f"{counts.get('documents', 0):,} documents, {counts.get('chunks', 0):,} chunks, "
                f"{counts.get('questions', 0):,} questions, "
                f"{counts.get('audit_events', 0):,} audit events"
            )
            dump_started = time.monotonic()
            _dump(target, snapshot, folder / DUMP, say)
        connection.rollback()  # a read-only snapshot: nothing to keep, end it now
    dump = folder / DUMP
    files[DUMP] = {"sha256": sha256_file(dump), "size": dump.stat().st_size}
    say(
        f"    database.dump: {human_bytes(files[DUMP]['size'])} in "
        f"{time.monotonic() - dump_started:.1f} s"
    )
    files[AUDIT] = _write_json(folder / AUDIT, snapshot.audit_last)

    say(f"[2/5] uploaded files: {len(snapshot.stored_files):,} named by the documents")
    uploaded, upload_warnings, upload_stats = _copy_uploads(snapshot, folder, say)
    files.update(uploaded)
    warnings += upload_warnings
    say(
        f"    {upload_stats['files']:,} files, {human_bytes(upload_stats['bytes'])}"
        + (
            f"; {upload_stats['left_out']:,} files in the upload folder belong to no "
            "document of the snapshot (uploads in progress, or left behind) and were left out"
            if upload_stats["left_out"]
            else ""
        )
    )

    env_path = env_file or settings_file()
    if not with_secrets:
        say("[3/5] settings file: left out (--without-secrets)")
    elif env_path.is_file():
        secrets = folder / SECRETS
        secrets.parent.mkdir(mode=0o700, exist_ok=True)
        digest, length = copy_with_sha256(env_path, secrets)
        secrets.chmod(0o600)
        files[SECRETS] = {"sha256": digest, "size": length}
        say(f"[3/5] settings file {env_path} (secrets and the audit signing key)")
    else:
        warnings.append(
            f"no settings file at {env_path}: the backup holds no secrets; keep the audit "
            "signing key (APPLIANCE_AUDIT_SIGNING_KEY) some other way"
        )
        say(f"[3/5] settings file: none at {env_path}")

    say("[4/5] model files (checksums" + (" and copies)" if with_models else ", not the files)"))
    entries = model_files.inventory(snapshot.embedding_models, say=say)
    for entry in entries:
        if entry.present:
            state = f"{human_bytes(entry.size)}" + (", in use" if entry.in_use else "")
        else:
            state = "not on this host" + (" (in use!)" if entry.in_use else "")
        say(f"    {entry.kind} model {entry.name}: {state}")
    files[MODELS] = _write_json(folder / MODELS, [e.as_dict() for e in entries])
    if with_models:
        files.update(_copy_models(entries, folder, say))

    say("[5/5] manifest")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "taken_at": snapshot.taken_at.astimezone(UTC).isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "host": socket.gethostname(),
        "database": snapshot.database,
        "versions": versions(snapshot),
        "counts": snapshot.counts,
        "audit": snapshot.audit_last,
        "migrations": snapshot.migrations,
        "uploads": upload_stats,
        "secrets": SECRETS in files,
        "models_included": with_models,
        "warnings": warnings,
        "files": dict(sorted(files.items())),
        "signature_algorithm": signing.ALGORITHM,
        "public_key": signing.public_key_hex(),
    }
    manifest["signature"] = signing.sign(manifest)
    staged = folder / (MANIFEST + ".part")
    staged.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(staged, folder / MANIFEST)
    size = sum(f["size"] for f in files.values()) + (folder / MANIFEST).stat().st_size
    seconds = time.monotonic() - started
    for warning in warnings:
        say(f"  warning: {warning}")
    say(
        f"Backup complete: {len(files):,} files, {human_bytes(size)} in {seconds:.1f} s."
        + (
            " It holds the appliance's secrets: keep it where only operators can read it."
            if SECRETS in files
            else ""
        )
    )
    return Result(folder, manifest, seconds, size, warnings)
