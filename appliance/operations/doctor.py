"""``manage.py doctor``: what a support call would ask, each answered ok, warn or fail with
what to do about it. Read-only: it changes nothing but its own checksum cache.

``doctor --security`` (``security_checks``) lists installed packages with known
vulnerabilities from an advisory file on disk (appliance/operations/advisories.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from django.db import connection
from packaging.version import Version

from appliance.operations import advisories
from appliance.operations.checks_host import (
    check_disk,
    check_models,
    check_packages,
    check_python,
    check_settings_file,
)
from appliance.operations.checks_services import (
    check_audit_protection,
    check_backup_tools,
    check_clock_database,
    check_indexes,
    check_migrations,
    check_postgres,
    check_redis,
)
from appliance.operations.report import FAIL, OK, WARN, Check, worst

ADVISORIES_STALE_DAYS = 30


# --- all of them ----------------------------------------------------------------------------


def _guarded(name: str, produce: Callable[[], Iterator[Check]]) -> list[Check]:
    """A check that breaks is itself a finding, never the end of the doctor."""
    try:
        return list(produce())
    except Exception as exc:
        return [Check(name, FAIL, f"the check could not run: {type(exc).__name__}: {exc}", "")]


def run_checks(*, fresh_checksums: bool = False) -> list[Check]:
    checks: list[Check] = []
    checks += _guarded("python", check_python)
    checks += _guarded("packages", check_packages)
    checks += _guarded("disk", check_disk)
    checks += _guarded("settings", check_settings_file)
    embedding_models: list[str] = []
    server_version_num = 0
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('server_version_num')::int")
            server_version_num = int(cursor.fetchone()[0])
            database_ok = True
    except Exception as exc:
        database_ok = False
        checks.append(
            Check(
                "postgresql",
                FAIL,
                f"cannot connect to the database ({type(exc).__name__}: {str(exc).strip()[:200]})",
                "start PostgreSQL (deploy/up does), or fix APPLIANCE_DB_* in the settings file",
            )
        )
    if database_ok:
        with connection.cursor() as cursor:
            checks += _guarded("postgresql", lambda: check_postgres(cursor))
            checks += _guarded("indexes", lambda: check_indexes(cursor))
            checks += _guarded("audit", lambda: check_audit_protection(cursor))
            checks += _guarded("clock", lambda: check_clock_database(cursor))
            try:
                cursor.execute(
                    "SELECT embedding_model FROM ingest_collection UNION "
                    "SELECT reembedding_to FROM ingest_collection WHERE reembedding_to <> ''"
                )
                embedding_models = [name for (name,) in cursor.fetchall() if name]
            except Exception:
                embedding_models = []  # reported by the index and migration checks
        checks += _guarded("migrations", check_migrations)
        checks += _guarded("backup", lambda: check_backup_tools(server_version_num))
    checks += _guarded("models", lambda: check_models(embedding_models, fresh_checksums))
    checks += _guarded("redis", check_redis)
    return checks


def security_checks(source: Path | None = None) -> tuple[list[Check], list[advisories.Finding]]:
    path = source or advisories.default_location()
    try:
        database, findings = advisories.audit(path)
    except advisories.AdvisoryFileError as exc:
        return [
            Check(
                "security",
                FAIL,
                f"no advisories to check against: {exc}",
                "on a machine with internet access download "
                "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip and copy it "
                f"to {advisories.default_location()}/ (or name it with --advisories)",
            )
        ], []
    packages = len(advisories.installed_packages())
    checks = []
    age = ""
    if database.newest is not None:
        days = (datetime.now(UTC) - database.newest.astimezone(UTC)).days
        age = f", newest advisory {database.newest:%Y-%m-%d}"
        if days > ADVISORIES_STALE_DAYS:
            checks.append(
                Check(
                    "security",
                    WARN,
                    f"the advisory file is {days} days old: it knows no newer vulnerabilities",
                    "download PyPI/all.zip from OSV again (see docs/operations.md, Doctor)",
                )
            )
    checks.append(
        Check(
            "security",
            OK if not findings else FAIL,
            f"{packages} installed packages checked against {database.records:,} advisories in "
            f"{database.source}{age}: "
            + (f"{len(findings)} known vulnerabilities" if findings else "none known"),
            ""
            if not findings
            else "upgrade the packages named below (or pin and accept them "
            "knowingly), then run deploy/up",
        )
    )
    for label, items in advisories.summarise(findings).items():
        # The first fixed release of each advisory; the latest of those fixes them all.
        firsts = [min(f.fixed_in, key=Version) for f in items if f.fixed_in]
        fixed = max(firsts, key=Version) if firsts else ""
        ids = ", ".join(f.advisory + (f" ({f.aliases[0]})" if f.aliases else "") for f in items[:5])
        checks.append(
            Check(
                "security",
                FAIL,
                f"{label}: {ids}{' …' if len(items) > 5 else ''} — {items[0].summary}",
                f"upgrade to {fixed} or newer" if fixed else "no fixed version is published",
            )
        )
    return checks, findings


__all__ = ["FAIL", "OK", "WARN", "Check", "run_checks", "security_checks", "worst"]
