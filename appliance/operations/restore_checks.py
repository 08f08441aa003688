"""What ``manage.py restore`` checks before it changes anything: the backup is whole (every
file's SHA-256, the manifest's signature when a key is given), it is not from a newer
appliance, and the target database and upload folder are empty (or --force)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db.migrations.loader import MigrationLoader
from psycopg import sql

from appliance.audit import signing
from appliance.operations.backup import COUNTED_TABLES, DUMP, FORMAT, FORMAT_VERSION, MANIFEST
from appliance.operations.common import DbTarget, Say, human_bytes, sha256_file


class RestoreError(Exception):
    """Why the restore stopped, in words for the operator."""


# --- 1. the backup --------------------------------------------------------------------


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise RestoreError(f"{folder} is not a folder.")
    if not path.is_file():
        raise RestoreError(
            f"{folder} has no {MANIFEST}: it is not a backup, or the backup did not finish."
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RestoreError(f"{path} cannot be read ({exc}); the backup is damaged.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RestoreError(f"{path} is not the manifest of an appliance backup.")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise RestoreError(
            f"This backup was written in format {manifest['format_version']} by a newer "
            "appliance; restore it with that version or newer."
        )
    if not isinstance(manifest.get("files"), dict) or DUMP not in manifest["files"]:
        raise RestoreError(f"{path} lists no database dump; the backup is incomplete.")
    return manifest


def verify(folder: Path, manifest: dict[str, Any], public_key: str = "", say: Say = print) -> None:
    """Every file named in the manifest is there with its size and SHA-256; the first one
    that is not stops the restore, named."""
    if public_key:
        problem = signing.check(manifest, signing.read_public_key(public_key))
        if problem:
            raise RestoreError(f"{MANIFEST}: {problem}. The backup is refused.")
    listed: dict[str, dict[str, Any]] = manifest["files"]
    total = sum(int(item.get("size", 0)) for item in listed.values())
    say(f"[1/7] checking {len(listed):,} files ({human_bytes(total)}) against the manifest")
    root = folder.resolve()
    done = 0
    told = time.monotonic()
    for relative, item in sorted(listed.items()):
        path = (root / relative).resolve()
        if root not in path.parents:
            raise RestoreError(f"{MANIFEST} names {relative!r}, outside the backup folder.")
        if not path.is_file():
            raise RestoreError(f"{relative} is missing from the backup. The backup is refused.")
        if path.stat().st_size != int(item["size"]) or sha256_file(path) != item["sha256"]:
            raise RestoreError(
                f"{relative} does not match the manifest (its SHA-256 differs): the file was "
                "changed or damaged after the backup. The backup is refused; nothing was "
                "restored."
            )
        done += int(item["size"])
        if time.monotonic() - told >= 10:
            told = time.monotonic()
            say(f"    … {human_bytes(done)} of {human_bytes(total)}")
    listed_paths = {(root / r).resolve() for r in listed} | {(root / MANIFEST).resolve()}
    extra = [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.resolve() not in listed_paths
    ]
    if extra:
        say(f"    {len(extra)} files not in the manifest are ignored (e.g. {extra[0]})")
    if not public_key:
        say(
            f"    all intact. The manifest is signed by {manifest.get('public_key', '?')}; give "
            "--public-key (the old host's audit_public_key) to have that checked too."
        )
    else:
        say("    all intact, and the manifest's signature verifies with the key given.")


def check_migrations(manifest: dict[str, Any]) -> None:
    """A backup from a newer appliance holds migrations this code cannot undo or know;
    restoring it here would run code older than its data."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    known = {f"{app}.{name}" for app, name in loader.disk_migrations}
    for migration in loader.disk_migrations.values():
        # A squashed migration stands for the ones it replaced, which may be gone from disk.
        known |= {f"{app}.{name}" for app, name in migration.replaces or ()}
    unknown = sorted(set(manifest.get("migrations", [])) - known)
    if unknown:
        commit = manifest.get("versions", {}).get("appliance_commit") or "a newer version"
        raise RestoreError(
            f"This backup comes from a newer appliance ({commit}): its database has "
            f"migrations this checkout does not know ({', '.join(unknown[:5])}). Check out "
            "that version (or newer) and restore again."
        )


# --- 2. the target ----------------------------------------------------------------------


def _database_state(target: DbTarget) -> tuple[bool, int, dict[str, int], int]:
    """(exists, tables, rows per counted table, other sessions) of the target database."""
    try:
        with target.connect("postgres") as server:
            exists = (
                server.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", [target.name]
                ).fetchone()
                is not None
            )
    except psycopg.OperationalError as exc:
        raise RestoreError(
            f"Cannot reach PostgreSQL as {target.user} ({str(exc).strip()}). Is PostgreSQL "
            "running, and has deploy/up created the database roles on this host?"
        ) from None
    if not exists:
        return False, 0, {}, 0
    with target.connect() as database:
        tables = {
            name
            for (name,) in database.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                "AND relkind IN ('r', 'p')"
            ).fetchall()
        }
        rows = {}
        for label, table in COUNTED_TABLES.items():
            if table in tables and label not in ("chunks", "citations"):
                query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
                rows[label] = int(database.execute(query).fetchone()[0])
        others = int(
            database.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND pid <> pg_backend_pid()",
                [target.name],
            ).fetchone()[0]
        )
    return True, len(tables), rows, others


def _upload_dir_state() -> int:
    root = Path(settings.UPLOAD_DIR)
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0


def check_target(target: DbTarget, force: bool, say: Say) -> tuple[bool, int]:
    """Refuse a target that holds anything, unless --force. Returns (exists, tables)."""
    exists, tables, rows, others = _database_state(target)
    problems = []
    filled = {label: n for label, n in rows.items() if n}
    if filled and not force:
        listed = ", ".join(f"{n:,} {label.replace('_', ' ')}" for label, n in filled.items())
        problems.append(
            f"the database {target.name} is not empty ({listed}). Restore onto an empty "
            "database, or add --force to replace everything in it"
        )
    if tables and others:
        problems.append(
            f"{others} other session(s) are connected to {target.name} (the web server or "
            "workers?): stop the appliance first (deploy/down)"
        )
    uploads = _upload_dir_state()
    if uploads and not force:
        problems.append(
            f"the upload folder {settings.UPLOAD_DIR} already holds {uploads:,} files. Restore "
            "onto an empty one, or add --force (the old folder is kept beside it)"
        )
    if problems:
        raise RestoreError("Nothing was restored: " + "; ".join(problems) + ".")
    state = (
        "does not exist yet; it will be created"
        if not exists
        else "is empty"
        if not tables
        else "holds "
        + (
            "data that --force replaces"
            if filled
            else "the appliance's tables but no data; it will be created again"
        )
    )
    say(f"[2/7] target: database {target.name} on {target.host}:{target.port} {state}")
    return exists, tables
