"""``manage.py doctor`` on the real PostgreSQL, Redis and model files: each check says ok,
warn or fail with what to do, and the exit code is non-zero when something fails. Faults
are made for real (a worker that stopped beating, an index dropped, a migration unrecorded,
a grant too many, a model file missing or not the catalogue's), inside the test's
transaction where the database is concerned. ``doctor --security`` reads advisories from a
file written here, never from the network."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from packaging.version import Version

from appliance import redis_client
from appliance.operations import advisories, checks_host, checks_services, doctor
from appliance.workers import WORKER_KEY
from inference.catalog import ModelSpec
from ingest import actions as ingest_actions
from ingest import pipeline, vectors

DJANGO = metadata.version("django")
CELERY = metadata.version("celery")


def run_doctor(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("doctor", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def by_name(checks: list[dict[str, str]], name: str) -> list[dict[str, str]]:
    return [c for c in checks if c["name"] == name]


@pytest.fixture
def no_workers() -> Iterator[None]:
    redis_client.client().flushdb()
    yield
    redis_client.client().flushdb()


@pytest.fixture
def workers_beating(no_workers: None) -> None:
    for role in ("ingest", "answer"):
        redis_client.client().set(WORKER_KEY.format(role=role, host="doctor-test-1"), "1", ex=60)


@pytest.mark.django_db
def test_without_workers_doctor_fails_naming_them_and_exits_non_zero(no_workers: None) -> None:
    code, output = run_doctor("--json")
    report = json.loads(output)
    assert code == 1 and report["status"] == "fail"
    names = {c["name"] for c in report["checks"]}
    assert names >= {
        "python",
        "packages",
        "disk",
        "postgresql",
        "pgvector",
        "indexes",
        "migrations",
        "audit",
        "clock",
        "backup",
        "models",
        "redis",
        "workers",
    }
    workers = by_name(report["checks"], "workers")
    assert [w["status"] for w in workers] == ["fail", "fail"]
    assert "no ingest worker is alive" in workers[0]["message"]
    assert "deploy/up" in workers[0]["fix"]
    # The plain form: one line per check, the fix under what failed.
    code, text = run_doctor()
    assert code == 1
    assert any(line.startswith("fail  workers") for line in text.splitlines())
    assert "-> start one (deploy/up)" in text
    assert text.rstrip().splitlines()[-1].startswith("FAIL:")


@pytest.mark.django_db
def test_a_healthy_appliance_passes_every_check(workers_beating: None) -> None:
    code, output = run_doctor("--json")
    report = json.loads(output)
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert failed == [] and code == 0
    checks = report["checks"]
    assert any("pgvector 0.8" in c["message"] for c in by_name(checks, "pgvector"))
    assert any("chunk_collection_search_vector" in c["message"] for c in by_name(checks, "indexes"))
    assert by_name(checks, "migrations")[0]["message"].startswith("all ")
    assert "may only add and read" in by_name(checks, "audit")[0]["message"]
    assert any("PostgreSQL" in c["message"] for c in by_name(checks, "clock"))
    assert any("Redis" in c["message"] for c in by_name(checks, "clock"))
    assert {c["status"] for c in by_name(checks, "workers")} == {"ok"}
    models = " ".join(c["message"] for c in by_name(checks, "models"))
    assert "smollm2-135m" in models and "SHA-256" in models and "all-MiniLM-L6-v2" in models


def statuses(checks: Iterator[doctor.Check]) -> list[tuple[str, str]]:
    return [(c.status, c.message) for c in checks]


@pytest.mark.django_db
def test_a_migration_not_applied_fails_naming_it() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM django_migrations WHERE app = 'ingest' AND name = "
            "(SELECT max(name) FROM django_migrations WHERE app = 'ingest') RETURNING name"
        )
        (name,) = cursor.fetchone()
    (check,) = checks_services.check_migrations()
    assert check.status == "fail" and f"ingest.{name}" in check.message
    assert "migrate as the owner role" in check.fix


@pytest.mark.django_db
def test_an_audit_log_the_app_role_may_change_fails() -> None:
    with connection.cursor() as cursor:
        cursor.execute("GRANT UPDATE ON audit_auditevent TO appliance_app")
        (check,) = checks_services.check_audit_protection(cursor)
    assert check.status == "fail"
    assert "not append-only" in check.message and "may change or delete" in check.message


@pytest.mark.django_db
def test_a_dropped_full_text_index_fails_naming_it() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX chunk_collection_search_vector")
        (check,) = checks_services.check_indexes(cursor)
    assert check.status == "fail" and "chunk_collection_search_vector" in check.message


def test_the_vector_index_of_each_length_in_use_is_checked(people: Any, live_db: Any) -> None:
    collection = ingest_actions.create_collection(people.carol, "Notes", people.hr)
    (result,) = ingest_actions.upload_documents(
        people.carol,
        collection,
        [ingest_actions.IncomingFile("note.txt", io.BytesIO(b"The garage opens at seven."))],
        enqueue=False,
    )
    assert result.document is not None
    assert pipeline.process(result.document.pk) == "ready"
    with connection.cursor() as cursor:
        (check,) = checks_services.check_indexes(cursor)
        assert check.status == "ok" and vectors.index_name(384) in check.message
        try:
            cursor.execute(f"DROP INDEX {vectors.index_name(384)}")
            (check,) = checks_services.check_indexes(cursor)
            assert check.status == "fail" and vectors.index_name(384) in check.message
        finally:
            vectors.ensure_index(384)  # the test database keeps its index


@pytest.mark.django_db
def test_a_missing_language_model_fails_with_the_command_that_installs_it(
    settings: Any, tmp_path: Path
) -> None:
    settings.LLM_MODEL_PATH = tmp_path / "gone.gguf"
    settings.DATA_DIR = tmp_path
    found = statuses(checks_host.check_models([], fresh=False))
    assert ("fail", f"language model smollm2-135m is missing at {tmp_path / 'gone.gguf'}") in found
    failed = [c for c in checks_host.check_models([], fresh=False) if c.status == "fail"]
    assert failed[0].fix == "manage.py fetch_model smollm2-135m"


@pytest.mark.django_db
def test_a_model_file_is_compared_with_the_checksum_the_catalogue_pins(
    settings: Any, tmp_path: Path
) -> None:
    model = tmp_path / "pinned.gguf"
    model.write_bytes(b"GGUF not really a model")
    settings.DATA_DIR = tmp_path
    settings.LLM_MODEL_PATH = model
    right = "8b2f0f7e2c8d3e1b0d8f1a1e0c2b7c5d3f4a6b8c9d0e1f2a3b4c5d6e7f8a9b0c"
    settings.LLM_SPEC = ModelSpec("smollm2-135m", "x", model.name, "template", sha256=right)
    wrong = [
        c
        for c in checks_host.check_models([], fresh=True)
        if c.message.startswith("language model")
    ]
    assert wrong[0].status == "fail" and "is not the catalogue's" in wrong[0].message

    settings.LLM_SPEC = ModelSpec(
        "smollm2-135m",
        "x",
        model.name,
        "template",
        sha256=hashlib.sha256(model.read_bytes()).hexdigest(),
    )
    fine = [
        c
        for c in checks_host.check_models([], fresh=False)
        if c.message.startswith("language model")
    ]
    assert fine[0].status == "ok" and "matches the catalogue" in fine[0].message


def test_clock_skew_is_a_warning_then_a_failure() -> None:
    assert checks_services._clock_check("PostgreSQL", 0.3).status == "ok"
    assert checks_services._clock_check("PostgreSQL", -3.0).status == "warn"
    failed = checks_services._clock_check("Redis", 45.0)
    assert failed.status == "fail" and "+45.0 s off Redis" in failed.message


# --- doctor --security ------------------------------------------------------------------


def osv(identifier: str, package: str, **affected: Any) -> dict[str, Any]:
    return {
        "id": identifier,
        "modified": datetime.now(UTC).isoformat(),
        "aliases": [f"CVE-2099-{identifier[-4:]}"],
        "summary": f"test advisory {identifier}",
        "affected": [{"package": {"ecosystem": "PyPI", "name": package}, **affected}],
    }


def advisory_records() -> list[dict[str, Any]]:
    return [
        # Every Django release until a far future one: the installed one is affected.
        osv(
            "TEST-0001",
            "Django",
            ranges=[{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "999.0"}]}],
        ),
        # The exact installed celery version, listed: affected.
        osv("TEST-0002", "celery", versions=[CELERY]),
        # Fixed long before the installed Django: not affected.
        osv(
            "TEST-0003",
            "django",
            ranges=[{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"fixed": "1.1"}]}],
        ),
        # Withdrawn, and another ecosystem's package of the same name: neither counts.
        osv("TEST-0004", "django", versions=[DJANGO]) | {"withdrawn": "2026-01-01T00:00:00Z"},
        {
            "id": "TEST-0005",
            "affected": [{"package": {"ecosystem": "npm", "name": "django"}, "versions": [DJANGO]}],
        },
    ]


def test_security_lists_installed_packages_with_known_vulnerabilities(tmp_path: Path) -> None:
    path = tmp_path / "advisories.json"
    path.write_text(json.dumps(advisory_records()))
    code, output = run_doctor("--security", "--advisories", str(path), "--json")
    report = json.loads(output)
    assert code == 1 and report["status"] == "fail"
    found = {(v["package"].lower(), v["version"], v["advisory"]) for v in report["vulnerabilities"]}
    assert found == {("django", DJANGO, "TEST-0001"), ("celery", CELERY, "TEST-0002")}
    django_finding = next(v for v in report["vulnerabilities"] if v["advisory"] == "TEST-0001")
    assert django_finding["fixed_in"] == ["999.0"] and django_finding["aliases"] == [
        "CVE-2099-0001"
    ]
    code, text = run_doctor("--security", "--advisories", str(path))
    assert code == 1
    assert f"Django {DJANGO}: TEST-0001 (CVE-2099-0001)" in text
    assert "-> upgrade to 999.0 or newer" in text
    assert "5 advisories" in text and "2 known vulnerabilities" in text


def test_security_reads_osvs_zip_and_a_clean_result_passes(tmp_path: Path) -> None:
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for record in advisory_records()[2:]:  # none of these affect what is installed
            bundle.writestr(f"{record['id']}.json", json.dumps(record))
    code, output = run_doctor("--security", "--advisories", str(archive), "--json")
    report = json.loads(output)
    assert code == 0 and report["status"] == "ok" and report["vulnerabilities"] == []
    assert "none known" in report["checks"][0]["message"]


def test_security_never_touches_the_network(tmp_path: Path, monkeypatch: Any) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    path = tmp_path / "advisories.json"
    path.write_text(json.dumps(advisory_records()))
    checks, findings = doctor.security_checks(path)
    assert len(findings) == 2 and checks[0].status == "fail"


def test_security_without_an_advisory_file_says_where_to_get_one(tmp_path: Path) -> None:
    code, output = run_doctor("--security", "--advisories", str(tmp_path / "none.zip"))
    assert code == 1
    assert "no advisories to check against" in output
    assert "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip" in output


def test_an_old_advisory_file_is_a_warning(tmp_path: Path) -> None:
    record = advisory_records()[2] | {"modified": "2020-01-01T00:00:00Z"}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(record))
    checks, _ = doctor.security_checks(path)
    assert checks[0].status == "warn" and "days old" in checks[0].message


@pytest.mark.parametrize(
    ("version", "events", "affected"),
    [
        ("1.5", [{"introduced": "0"}, {"fixed": "2.0"}], True),
        ("2.0", [{"introduced": "0"}, {"fixed": "2.0"}], False),
        ("2.0", [{"introduced": "1.0"}, {"last_affected": "2.0"}], True),
        ("2.0.1", [{"introduced": "1.0"}, {"last_affected": "2.0"}], False),
        ("0.9", [{"introduced": "1.0"}, {"fixed": "2.0"}], False),
        # Two ranges in one list: 1.x fixed in 1.4, 2.x fixed in 2.2.
        (
            "2.1",
            [{"introduced": "1.0"}, {"fixed": "1.4"}, {"introduced": "2.0"}, {"fixed": "2.2"}],
            True,
        ),
        (
            "1.5",
            [{"introduced": "1.0"}, {"fixed": "1.4"}, {"introduced": "2.0"}, {"fixed": "2.2"}],
            False,
        ),
        ("3.0", [{"introduced": "0"}, {"limit": "3.0"}], False),
    ],
)
def test_osv_ranges_follow_the_schema(
    version: str, events: list[dict[str, str]], affected: bool
) -> None:
    assert advisories._in_range(Version(version), events) is affected
