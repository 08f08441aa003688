"""``manage.py restore``: a backup folder onto an empty host (docs/operations.md, "Backups").

Order, so that a refusal changes nothing and a failure leaves as little as possible:

1. every file's SHA-256 against the manifest (a tampered or damaged backup is refused,
   naming the file), the manifest's signature when a public key is given, and whether
   this appliance knows every migration the backup's database has;
2. the target: an empty (or absent) database, an empty upload folder, unless --force;
3. the database, in one transaction (pg_restore as the owner), objects owned by the
   role restoring, grants left to the appliance's own rule (applied after migrations);
4. the uploaded files, copied aside and checked, then moved into place;
5. migrations, in a fresh process (a newer appliance restoring an older backup), which
   also grants the application's role its rights again; the audit table's grants and
   triggers are then checked;
6. ``audit_verify --database``, with the chain's last row at backup time as the earlier
   export it must still contain;
7. the settings file with its secrets, only when asked (--with-secrets, or --secrets-to).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from psycopg import sql

from appliance.audit import signing
from appliance.operations.backup import AUDIT, DUMP, MODEL_COPIES, UPLOADS
from appliance.operations.common import (
    DbTarget,
    Say,
    client_tool,
    copy_with_sha256,
    human_bytes,
    owner_target,
    run_manage,
    sha256_file,
)
from appliance.operations.restore_checks import (
    RestoreError,
    check_migrations,
    check_target,
    read_manifest,
    verify,
)
from appliance.operations.restore_settings import restore_secrets

EXTENSIONS = ("vector", "btree_gin")
# pg_restore's list entries for extensions: they exist already (deploy/up puts them in
# template1), and only a superuser may create or comment on them.
_EXTENSION_ENTRY = re.compile(
    r"^\s*\d+;\s+\d+\s+\d+\s+(EXTENSION\s+-\s+|COMMENT\s+-\s+EXTENSION\s+)\S"
)


@dataclass
class Result:
    seconds: float
    database: str
    files: int
    warnings: list[str] = field(default_factory=list)
    audit: str = ""
    secrets: str = ""


# --- 3. the database --------------------------------------------------------------------


def _recreate_database(target: DbTarget, exists: bool, tables: int) -> None:
    with target.connect("postgres") as server:
        name = sql.Identifier(target.name)
        try:
            if exists and tables:
                server.execute(sql.SQL("DROP DATABASE {}").format(name))
                exists = False
            if not exists:
                server.execute(sql.SQL("CREATE DATABASE {}").format(name))
        except psycopg.Error as exc:
            raise RestoreError(
                f"Could not create the database {target.name} afresh as {target.user}: "
                f"{str(exc).strip()}. The role needs CREATEDB and must own the old database "
                "(deploy/up sets both up)."
            ) from None


def _ensure_extensions(target: DbTarget) -> None:
    with target.connect() as database:
        present = {
            name for (name,) in database.execute("SELECT extname FROM pg_extension").fetchall()
        }
        for extension in EXTENSIONS:
            if extension in present:
                continue
            try:
                database.execute(
                    sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension))
                )
            except psycopg.Error:
                raise RestoreError(
                    f"The extension {extension} is not in the database {target.name}, and only "
                    f"a superuser may add it. As a superuser run: CREATE EXTENSION {extension}; "
                    f"in {target.name} and in template1 (deploy/up does this), then restore "
                    "again."
                ) from None


def _pg_restore(target: DbTarget, dump: Path, manifest: dict[str, Any], say: Say) -> None:
    pg_restore, major, line = client_tool("pg_restore")
    if pg_restore is None:
        raise RestoreError(
            "pg_restore is not installed. Install PostgreSQL's client programs "
            "(Debian: apt-get install postgresql-client) and try again."
        )
    dumped_with = str(manifest.get("versions", {}).get("pg_dump", ""))
    match = re.search(r"\)\s+(\d+)", dumped_with)
    if match and major is not None and major < int(match.group(1)):
        raise RestoreError(
            f"The dump was written by {dumped_with}; {line} cannot read it. Install the "
            f"client programs of version {match.group(1)} or newer."
        )
    env = target.libpq_env()
    listing = subprocess.run(
        [str(pg_restore), "--list", str(dump)], env=env, capture_output=True, text=True
    )
    if listing.returncode != 0:
        raise RestoreError(f"pg_restore cannot read {DUMP}: {listing.stderr.strip()[-1000:]}")
    kept = [ln for ln in listing.stdout.splitlines() if not _EXTENSION_ENTRY.match(ln)]
    with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as handle:
        handle.write("\n".join(kept) + "\n")
        list_file = Path(handle.name)
    command = [
        str(pg_restore),
        f"--dbname={target.name}",
        f"--use-list={list_file}",
        # Owned by the role restoring (the owner), whatever the old host called it; grants
        # come from the appliance's own rule after migrations, not from the old host.
        "--no-owner",
        "--no-acl",
        "--single-transaction",
        "--exit-on-error",
        "--no-password",
    ]
    # The dump holds rows, not indexes: the vector index is built again at the end, and
    # pgvector builds it in memory only when maintenance_work_mem holds the whole graph
    # (on disk it is several times slower; see ingest/vectors.py, set_build_memory, whose
    # sizing this repeats).
    chunks = int(manifest.get("counts", {}).get("chunks", 0))
    build_mb = max(1024, min(8192, chunks * 4 // 1024))
    env["PGOPTIONS"] = f"-c maintenance_work_mem={build_mb}MB"
    env["PGAPPNAME"] = RESTORE_APPLICATION
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as errors:
        try:
            with subprocess.Popen([*command, str(dump)], env=env, stderr=errors) as process:
                told = started
                while process.poll() is None:
                    time.sleep(0.5)
                    if time.monotonic() - told >= 15:
                        told = time.monotonic()
                        say(f"    … {told - started:.0f} s: {_restore_step(target)}")
        finally:
            list_file.unlink(missing_ok=True)
        errors.seek(0)
        message = errors.read()
    if process.returncode != 0:
        raise RestoreError(
            f"pg_restore failed (exit {process.returncode}); the database was left empty: "
            f"{message.strip()[-2000:]}"
        )


RESTORE_APPLICATION = "appliance-restore"


def _restore_step(target: DbTarget) -> str:
    """What pg_restore is doing, from PostgreSQL's own progress views. Its tables are not
    visible outside its transaction yet, so the statement names them."""
    try:
        with target.connect() as database:
            row = database.execute(
                "SELECT a.query, c.bytes_processed, i.phase, i.tuples_done, i.tuples_total "
                "FROM pg_stat_activity a "
                "LEFT JOIN pg_stat_progress_copy c ON c.pid = a.pid "
                "LEFT JOIN pg_stat_progress_create_index i ON i.pid = a.pid "
                "WHERE a.application_name = %s AND a.datname = %s",
                [RESTORE_APPLICATION, target.name],
            ).fetchone()
    except psycopg.Error:
        return "restoring"
    if row is None:
        return "restoring"
    query, copied, phase, done, total = row
    words = (query or "").split()
    if words[:1] == ["COPY"] and len(words) > 1:
        table = words[1].removeprefix("public.")
        return f"copying {table} ({human_bytes(copied or 0)} read)"
    if words[:2] == ["CREATE", "INDEX"] and len(words) > 2:
        # pgvector names its phases "building index: loading tuples" and so on.
        step = (phase or "").removeprefix("building index: ")
        if total:
            step += f" {done:,} of {total:,}"
        return f"building index {words[2]}" + (f" ({step.strip()})" if step.strip() else "")
    if words[:2] == ["ALTER", "TABLE"]:
        return "adding keys and constraints"
    return "restoring"


def restore_database(
    target: DbTarget, folder: Path, manifest: dict[str, Any], exists: bool, tables: int, say: Say
) -> None:
    counts = manifest.get("counts", {})
    say(
        f"[3/7] database: {counts.get('documents', 0):,} documents, "
        f"{counts.get('chunks', 0):,} chunks, {counts.get('audit_events', 0):,} audit events "
        f"({human_bytes(manifest['files'][DUMP]['size'])} dump)"
    )
    started = time.monotonic()
    _recreate_database(target, exists, tables)
    _ensure_extensions(target)
    _pg_restore(target, folder / DUMP, manifest, say)
    say(f"    restored in {time.monotonic() - started:.1f} s")


# --- 4. files ---------------------------------------------------------------------------


def restore_uploads(folder: Path, manifest: dict[str, Any], say: Say) -> int:
    root = Path(settings.UPLOAD_DIR)
    wanted = {r: item for r, item in manifest["files"].items() if r.startswith(UPLOADS + "/")}
    size = sum(int(item["size"]) for item in wanted.values())
    say(f"[4/7] uploaded files: {len(wanted):,} ({human_bytes(size)}) into {root}")
    staging = root.with_name(root.name + ".restoring")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    told = time.monotonic()
    for done, (relative, item) in enumerate(sorted(wanted.items()), start=1):
        inside = relative.removeprefix(UPLOADS + "/")
        digest, _ = copy_with_sha256(folder / relative, staging / inside)
        if digest != item["sha256"]:
            shutil.rmtree(staging, ignore_errors=True)
            raise RestoreError(f"{relative} changed while it was being restored; try again.")
        if time.monotonic() - told >= 5:
            told = time.monotonic()
            say(f"    … {done:,} of {len(wanted):,}")
    if root.exists():
        kept = root.with_name(f"{root.name}.before-restore-{datetime.now(UTC):%Y%m%d%H%M%S}")
        root.rename(kept)
        say(f"    the old upload folder is kept as {kept}")
    staging.rename(root)
    return len(wanted)


def restore_models(folder: Path, manifest: dict[str, Any], say: Say) -> list[str]:
    """Model files carried in the backup (--with-models) are put where this host looks
    for them, unless a file is there already; a different one there is left and reported."""
    warnings = []
    copies = {r: i for r, i in manifest["files"].items() if r.startswith(MODEL_COPIES + "/")}
    if not copies:
        return warnings
    models_dir = Path(settings.MODELS_DIR)
    for relative, item in sorted(copies.items()):
        inside = relative.removeprefix(MODEL_COPIES + "/")
        target = (
            Path("/" + inside.removeprefix("external/"))
            if inside.startswith("external/")
            else models_dir / inside
        )
        if target.is_file():
            if target.stat().st_size != int(item["size"]) or sha256_file(target) != item["sha256"]:
                warnings.append(f"{target} differs from the backup's copy; left as it is")
            continue
        say(f"    model file {target} ({human_bytes(int(item['size']))})")
        copy_with_sha256(folder / relative, target)
    return warnings


def compare_models(folder: Path, say: Say) -> list[str]:
    """What the backup's host answered with, against what this host has."""
    try:
        entries = json.loads((folder / "models.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    warnings = []
    models_dir = Path(settings.MODELS_DIR)
    for entry in entries:
        if not entry.get("in_use") or not entry.get("present"):
            continue
        for item in entry.get("files", []):
            here = (
                Path(item["path"])
                if Path(item["path"]).is_absolute()
                else models_dir / item["path"]
            )
            if not here.is_file():
                warnings.append(
                    f"the {entry['kind']} model {entry['name']} the old host used is not here "
                    f"({here}); install it (fetch_model) or restore with a backup taken "
                    "--with-models"
                )
                break
            if item.get("sha256") and here.stat().st_size != int(item["size"]):
                warnings.append(f"{here} differs from the old host's (size)")
                break
    if not warnings:
        say("    the models the old host used are present here")
    return warnings


# --- 5 and 6. migrations, grants, the audit chain ----------------------------------------


def migrate(target: DbTarget, say: Say) -> None:
    say("[5/7] migrations (this appliance's code against the restored data)")
    done = run_manage(["migrate", "--noinput"], target)
    if done.returncode != 0:
        raise RestoreError(
            "The database was restored but its migrations failed:\n"
            + (done.stderr or done.stdout).strip()[-3000:]
        )
    applied = [ln.strip() for ln in done.stdout.splitlines() if ln.strip().startswith("Applying")]
    say(
        f"    {len(applied)} applied" + (": " + ", ".join(applied) if applied else " (none needed)")
    )


def check_audit_protection(target: DbTarget, say: Say) -> None:
    """The append-only audit table came back with its triggers, and the application's role
    got back only what it may hold (docs/security.md, "Database roles")."""
    role = settings.DB_APP_ROLE
    with target.connect() as database:
        triggers = {
            name
            for (name,) in database.execute(
                "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN "
                "('audit_auditevent'::regclass, 'audit_auditanchor'::regclass)"
            ).fetchall()
        }
        missing = {
            "audit_no_update_delete",
            "audit_no_truncate",
            "audit_anchor_no_update_delete",
            "audit_anchor_no_truncate",
        } - triggers
        if missing:
            raise RestoreError(
                f"The restored audit tables lack their triggers ({', '.join(sorted(missing))})."
            )
        has_role = database.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
        if not has_role:
            say(f"    audit triggers present; the role {role} does not exist on this host")
            return
        allowed = database.execute(
            "SELECT has_table_privilege(%s, 'audit_auditevent', 'INSERT'), "
            "has_table_privilege(%s, 'audit_auditevent', 'UPDATE'), "
            "has_table_privilege(%s, 'audit_auditevent', 'DELETE'), "
            "has_table_privilege(%s, 'ingest_document', 'UPDATE')",
            [role] * 4,
        ).fetchone()
    if allowed != (True, False, False, True):
        raise RestoreError(
            f"The role {role} did not get its grants back (insert, update, delete on the audit "
            f"log, update on documents: {allowed}); run migrate as the owner role."
        )
    say(
        f"    audit log append-only again: triggers present; {role} may insert and read, "
        "not change or delete"
    )


def verify_audit(target: DbTarget, folder: Path, say: Say) -> str:
    say("[6/7] audit_verify --database (the chain from its anchor to the last row)")
    done = run_manage(["audit_verify", "--database", "--manifest", str(folder / AUDIT)], target)
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise RestoreError(f"The restored audit log does not verify: {output[-2000:]}")
    say(f"    {output.splitlines()[-1] if output else 'intact'}")
    return output


# --- all of it --------------------------------------------------------------------------


def restore(
    folder: Path,
    *,
    force: bool = False,
    with_secrets: bool = False,
    secrets_to: Path | None = None,
    public_key: str = "",
    say: Say = print,
) -> Result:
    started = time.monotonic()
    folder = folder.resolve()
    manifest = read_manifest(folder)
    versions = manifest.get("versions", {})
    say(
        f"Restoring the backup of {manifest.get('host', '?')} taken "
        f"{manifest.get('taken_at', '?')} (appliance {versions.get('appliance_commit') or '?'}, "
        f"PostgreSQL {versions.get('postgresql', '?')}, pgvector {versions.get('pgvector', '?')})"
    )
    try:
        verify(folder, manifest, public_key, say)
    except signing.BadPublicKey as exc:
        raise RestoreError(str(exc)) from None
    check_migrations(manifest)
    target = owner_target()
    if secrets_to is not None and secrets_to.exists() and not force:
        raise RestoreError(f"Nothing was restored: {secrets_to} exists (add --force).")
    exists, tables = check_target(target, force, say)
    restore_database(target, folder, manifest, exists, tables, say)
    files = restore_uploads(folder, manifest, say)
    warnings = restore_models(folder, manifest, say)
    warnings += compare_models(folder, say)
    migrate(target, say)
    check_audit_protection(target, say)
    audit = verify_audit(target, folder, say)
    secrets = restore_secrets(
        folder, manifest, with_secrets=with_secrets, secrets_to=secrets_to, force=force, say=say
    )
    for warning in [*manifest.get("warnings", []), *warnings]:
        say(f"  warning: {warning}")
    seconds = time.monotonic() - started
    say(
        f"Restore complete in {seconds:.1f} s: database {target.name}, {files:,} files. Start "
        "the appliance with deploy/up, then run manage.py doctor."
    )
    return Result(seconds, target.name, files, warnings, audit, secrets)


__all__ = ["RestoreError", "Result", "restore"]
