"""What backup, restore and the doctor share: the owner's database connection, checksums,
the settings file's place, versions and running ``manage.py`` in a child process."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import connections

Say = Callable[[str], None]

# The role that owns the schema (docs/security.md, "Database roles"). Backups and restores
# run as it: the application's role may not read everything a dump needs, nor create a
# database.
OWNER_ROLE = os.environ.get("APPLIANCE_DB_OWNER_USER", "appliance_owner")


@dataclass(frozen=True)
class DbTarget:
    host: str
    port: int
    name: str
    user: str
    password: str

    def libpq_env(self) -> dict[str, str]:
        """For pg_dump and pg_restore: the password travels in the environment, never on a
        command line that ``ps`` shows to everyone on the host."""
        env = dict(os.environ)
        env.update(
            PGHOST=self.host,
            PGPORT=str(self.port),
            PGUSER=self.user,
            PGDATABASE=self.name,
            PGPASSWORD=self.password,
            PGCONNECT_TIMEOUT="10",
        )
        return env

    def connect(
        self, database: str | None = None, *, autocommit: bool = True
    ) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            dbname=database or self.name,
            user=self.user,
            password=self.password,
            autocommit=autocommit,
            connect_timeout=10,
            application_name="appliance-operations",
        )


def owner_target() -> DbTarget:
    """The configured database, reached as the owner role.

    On a host set up by deploy/up the appliance connects as the application role, and the
    owner's password sits beside it in the settings file (APPLIANCE_DB_OWNER_PASSWORD), so
    ``manage.py backup`` works without the operator typing a password. Run with
    ``APPLIANCE_DB_USER=appliance_owner APPLIANCE_DB_PASSWORD=...`` it uses exactly that."""
    config = connections["default"].settings_dict
    target = DbTarget(
        host=str(config.get("HOST") or "127.0.0.1"),
        port=int(config.get("PORT") or 5432),
        name=str(config["NAME"]),
        user=str(config["USER"]),
        password=str(config.get("PASSWORD") or ""),
    )
    owner_password = os.environ.get("APPLIANCE_DB_OWNER_PASSWORD", "")
    if target.user != OWNER_ROLE and owner_password:
        target = replace(target, user=OWNER_ROLE, password=owner_password)
    return target


def settings_file() -> Path:
    """The settings file this process read (the same rule as appliance/settings.py)."""
    return Path(os.environ.get("APPLIANCE_ENV_FILE", settings.BASE_DIR / "var" / "appliance.env"))


CHUNK = 1 << 22


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def copy_with_sha256(source: Path, target: Path) -> tuple[str, int]:
    """Copy and hash in one read; the copy is written aside and renamed into place, so a
    half-written file never carries the final name. Keeps the source's mode."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as reader, open(partial, "wb") as writer:
        while block := reader.read(CHUNK):
            digest.update(block)
            size += len(block)
            writer.write(block)
    shutil.copymode(source, partial)
    partial.replace(target)
    return digest.hexdigest(), size


def human_bytes(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GB"


def git_commit() -> str | None:
    """The appliance's commit, with ``-dirty`` when the checkout has local changes; None
    where the code did not come from git."""
    if not (settings.BASE_DIR / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(settings.BASE_DIR), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(settings.BASE_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


_TOOL_VERSION = re.compile(r"\)\s+(\d+)(?:\.(\d+))?")


def client_tool(name: str) -> tuple[Path | None, int | None, str]:
    """(path, major version, full version line) of a PostgreSQL client program."""
    found = shutil.which(name)
    if found is None:
        return None, None, ""
    try:
        line = subprocess.run(
            [found, "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return Path(found), None, ""
    match = _TOOL_VERSION.search(line)
    return Path(found), int(match.group(1)) if match else None, line


def server_major(version_num: int) -> int:
    """``server_version_num`` (150020) as its major version (15)."""
    return version_num // 10000


def run_manage(args: list[str], target: DbTarget, **extra_env: str) -> subprocess.CompletedProcess:
    """``manage.py <args>`` in a fresh process against ``target`` (as its role).

    A fresh process runs the code on disk against the restored database from the start:
    migrations of a newer appliance, and connections that never saw the old database."""
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")
    env.update(
        APPLIANCE_DB_HOST=target.host,
        APPLIANCE_DB_PORT=str(target.port),
        APPLIANCE_DB_NAME=target.name,
        APPLIANCE_DB_USER=target.user,
        APPLIANCE_DB_PASSWORD=target.password,
        **extra_env,
    )
    return subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
