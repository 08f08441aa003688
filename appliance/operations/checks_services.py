"""The doctor's checks of the services: PostgreSQL (version, memory, pg_prewarm), pgvector,
the indexes the migrations and ingestion create, migrations, the audit log's protection,
the backup tools, Redis, queues, workers and the clocks."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from appliance import redis_client
from appliance.operations.common import client_tool, human_bytes, server_major
from appliance.operations.report import FAIL, OK, WARN, Check
from appliance.workers import WORKER_KEY
from ingest import vectors

PGVECTOR_MINIMUM = (0, 8)
# A question's route through the database and the model is measured in tens of
# milliseconds; a clock this far off makes logs, audit times and leases disagree.
CLOCK_WARN_SECONDS = 2.0
CLOCK_FAIL_SECONDS = 30.0


# --- PostgreSQL -------------------------------------------------------------------------


def _wanted_shared_buffers_mb() -> int:
    """What deploy/up gives PostgreSQL on this host (deploy/lib/common.sh, shared_buffers_mb)."""
    configured = os.environ.get("APPLIANCE_DB_SHARED_BUFFERS", "")
    if configured.isdigit():
        return int(configured)
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 128
    return max(128, min(8192, pages * page_size // 2**20 // 8))


def _vector_version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_postgres(cursor: Any) -> Iterator[Check]:
    cursor.execute(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
        "pg_database_size(current_database()), current_database(), current_user"
    )
    version, number, size, database, user = cursor.fetchone()
    message = f"PostgreSQL {version}, database {database} ({human_bytes(size)}) as {user}"
    if server_major(number) < 15:
        yield Check("postgresql", WARN, message, "the appliance is tested on PostgreSQL 15")
    else:
        yield Check("postgresql", OK, message)

    cursor.execute(
        "SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'"
    )
    buffers = int(cursor.fetchone()[0])
    wanted = _wanted_shared_buffers_mb()
    if buffers < wanted // 2:
        yield Check(
            "postgresql",
            WARN,
            f"shared_buffers is {buffers} MB; deploy/up gives {wanted} MB on this host",
            "run deploy/up on the database host, or set shared_buffers "
            "(docs/operations.md, PostgreSQL memory)",
        )
    else:
        yield Check("postgresql", OK, f"shared_buffers {buffers} MB")
    # A library's own settings appear only once the server has loaded it, so this works
    # for a role that may not read shared_preload_libraries itself.
    cursor.execute("SELECT setting FROM pg_settings WHERE name = 'pg_prewarm.autoprewarm'")
    row = cursor.fetchone()
    if row is None:
        yield Check(
            "postgresql",
            WARN,
            "pg_prewarm is not preloaded: after a restart the first questions read the index "
            "from disk",
            "run deploy/up (it adds pg_prewarm to shared_preload_libraries and restarts "
            "PostgreSQL)",
        )
    elif row[0] != "on":
        yield Check("postgresql", WARN, "pg_prewarm is loaded but autoprewarm is off", "")
    else:
        yield Check("postgresql", OK, "pg_prewarm preloaded, autoprewarm on")

    cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    row = cursor.fetchone()
    if row is None:
        yield Check(
            "pgvector",
            FAIL,
            "the vector extension is not in the database",
            "as a superuser: CREATE EXTENSION vector; (deploy/up does this)",
        )
    elif _vector_version(row[0]) < PGVECTOR_MINIMUM:
        yield Check(
            "pgvector",
            FAIL,
            f"pgvector {row[0]}; the appliance needs 0.8 or newer (iterative index scans)",
            "install pgvector 0.8 (deploy/up builds it where the distribution has none), "
            "then ALTER EXTENSION vector UPDATE;",
        )
    else:
        yield Check("pgvector", OK, f"pgvector {row[0]}")


def check_indexes(cursor: Any) -> Iterator[Check]:
    cursor.execute(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname = 'ingest_chunk'"
    )
    indexes = dict(cursor.fetchall())
    invalid = sorted(name for name, valid in indexes.items() if not valid)
    if invalid:
        yield Check(
            "indexes",
            FAIL,
            f"invalid indexes (an interrupted build): {', '.join(invalid)}",
            "REINDEX INDEX <name>; as the owner role, in a quiet hour",
        )
    # The vector lengths in use, one chunk per embedding model (cheap at any size).
    cursor.execute(
        "SELECT DISTINCT m.name, (SELECT vector_dims(c.embedding) FROM ingest_chunk c "
        "WHERE c.embedding_model = m.name LIMIT 1) FROM (SELECT embedding_model AS name FROM "
        "ingest_collection UNION SELECT reembedding_to FROM ingest_collection "
        "WHERE reembedding_to <> '') m"
    )
    lengths = sorted({int(d) for _name, d in cursor.fetchall() if d})
    wanted = [vectors.index_name(d) for d in lengths] + ["chunk_collection_search_vector"]
    missing = [name for name in wanted if name not in indexes]
    if missing:
        yield Check(
            "indexes",
            FAIL,
            f"missing: {', '.join(missing)} (searches scan every chunk)",
            "run migrate as the owner role; a missing vector index is built again by the "
            "next document ingested with that model",
        )
    else:
        shown = ", ".join(wanted)
        yield Check("indexes", OK, f"present and valid: {shown}")


def check_migrations() -> Iterator[Check]:
    executor = MigrationExecutor(connection)
    graph = executor.loader.graph
    plan = executor.migration_plan(graph.leaf_nodes())
    applied = set(executor.loader.applied_migrations)
    unknown = sorted(f"{a}.{n}" for a, n in applied if (a, n) not in graph.nodes)
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
        yield Check(
            "migrations",
            FAIL,
            f"{len(plan)} not applied ({names}{', …' if len(plan) > 5 else ''})",
            "run deploy/up (it takes a backup-worthy moment: see docs/operations.md, Upgrades) "
            "or migrate as the owner role",
        )
    elif unknown:
        yield Check(
            "migrations",
            WARN,
            f"the database has migrations this code does not know ({', '.join(unknown[:3])}): "
            "it was used by a newer appliance",
            "check out the newer version again",
        )
    else:
        yield Check("migrations", OK, f"all {len(graph.nodes)} applied")


def check_audit_protection(cursor: Any) -> Iterator[Check]:
    role = settings.DB_APP_ROLE
    cursor.execute(
        "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgrelid IN "
        "('audit_auditevent'::regclass, 'audit_auditanchor'::regclass)"
    )
    triggers = int(cursor.fetchone()[0])
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
    if cursor.fetchone() is None:
        changes = False
    else:
        cursor.execute(
            "SELECT has_table_privilege(%s, 'audit_auditevent', 'UPDATE') OR "
            "has_table_privilege(%s, 'audit_auditevent', 'DELETE')",
            [role, role],
        )
        changes = bool(cursor.fetchone()[0])
    if triggers < 4 or changes:
        yield Check(
            "audit",
            FAIL,
            f"the audit log is not append-only: {triggers} of 4 triggers"
            + (f", and {role} may change or delete rows" if changes else ""),
            "run migrate as the owner role (it restores the grants); see docs/security.md",
        )
    else:
        yield Check("audit", OK, f"append-only: triggers present, {role} may only add and read")


def check_clock_database(cursor: Any) -> Iterator[Check]:
    before = time.time()
    cursor.execute("SELECT extract(epoch FROM clock_timestamp())")
    after = time.time()
    skew = float(cursor.fetchone()[0]) - (before + after) / 2
    yield _clock_check("PostgreSQL", skew)


def _clock_check(other: str, skew: float) -> Check:
    message = f"this host and {other} agree within {abs(skew):.2f} s"
    fix = "run an NTP client (chrony, systemd-timesyncd) on every host"
    if abs(skew) >= CLOCK_FAIL_SECONDS:
        return Check("clock", FAIL, f"this host's clock is {skew:+.1f} s off {other}'s", fix)
    if abs(skew) >= CLOCK_WARN_SECONDS:
        return Check("clock", WARN, f"this host's clock is {skew:+.1f} s off {other}'s", fix)
    return Check("clock", OK, message)


def check_backup_tools(server_version_num: int) -> Iterator[Check]:
    for tool in ("pg_dump", "pg_restore"):
        path, major, line = client_tool(tool)
        server = server_major(server_version_num)
        if path is None:
            yield Check(
                "backup",
                WARN,
                f"{tool} is not installed: manage.py backup and restore need it",
                f"apt-get install postgresql-client-{server}",
            )
        elif major is not None and major < server:
            yield Check(
                "backup",
                WARN,
                f"{line} is older than the server ({server}); it cannot dump it",
                f"apt-get install postgresql-client-{server}",
            )
        else:
            yield Check("backup", OK, f"{line}")


# --- Redis and workers --------------------------------------------------------------------


def check_redis() -> Iterator[Check]:
    client = redis_client.client()
    try:
        client.ping()
        before = time.time()
        seconds, micros = client.time()
        after = time.time()
    except Exception as exc:
        yield Check(
            "redis",
            FAIL,
            f"Redis at {settings.REDIS_URL} is unreachable ({type(exc).__name__})",
            "start Redis (deploy/up does), or fix APPLIANCE_REDIS_URL",
        )
        return
    lengths = {queue: redis_client.queue_length(queue) for queue in ("ingest", "answer")}
    yield Check(
        "redis",
        OK,
        f"reachable; waiting: {lengths['ingest']} ingest, {lengths['answer']} answer messages",
    )
    yield _clock_check("Redis", seconds + micros / 1e6 - (before + after) / 2)
    workers = {}
    for role in ("ingest", "answer"):
        workers[role] = sorted(
            key.rsplit(":", 1)[-1]
            for key in client.scan_iter(WORKER_KEY.format(role=role, host="*"))
        )
    for role, alive in workers.items():
        if alive:
            yield Check("workers", OK, f"{len(alive)} {role} worker(s) alive: {', '.join(alive)}")
        else:
            waiting = lengths[role]
            yield Check(
                "workers",
                FAIL,
                f"no {role} worker is alive"
                + (f" and {waiting} messages wait for one" if waiting > 0 else ""),
                f"start one (deploy/up); its log is {settings.DATA_DIR}/log/{role}.log",
            )
