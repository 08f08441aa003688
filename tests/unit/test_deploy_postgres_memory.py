"""How much memory deploy/ gives PostgreSQL's shared buffers (APPLIANCE_DB_SHARED_BUFFERS),
and the autoprewarm that fills them again after a restart."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def shared_buffers(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "appliance.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    script = f'source deploy/lib/common.sh; ENV_FILE="{env_file}"; shared_buffers_mb'
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "APPLIANCE_DATA_DIR": str(tmp_path)}
    return subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)


def host_memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


@pytest.mark.parametrize("settings", [{}, {"APPLIANCE_DB_SHARED_BUFFERS": "auto"}])
def test_an_eighth_of_the_hosts_memory_by_default(tmp_path: Path, settings: dict) -> None:
    expected = min(max(host_memory_mb() // 8, 128), 8192)
    assert shared_buffers(tmp_path, **settings).stdout.strip() == str(expected)


def test_the_settings_file_can_name_megabytes(tmp_path: Path) -> None:
    assert shared_buffers(tmp_path, APPLIANCE_DB_SHARED_BUFFERS="512").stdout.strip() == "512"


def test_a_value_that_is_not_megabytes_stops_the_install(tmp_path: Path) -> None:
    result = shared_buffers(tmp_path, APPLIANCE_DB_SHARED_BUFFERS="2GB")
    assert result.returncode == 1
    assert "APPLIANCE_DB_SHARED_BUFFERS must be megabytes or auto, not '2GB'" in result.stderr


@pytest.mark.django_db
def test_the_running_server_has_what_deploy_gave_it() -> None:
    """deploy/test ran ensure_postgres_memory before the tests: the server uses its value."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'"
        )
        (megabytes,) = cursor.fetchone()
    script = "source deploy/lib/common.sh; shared_buffers_mb"  # this host's own settings
    wanted = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True
    )
    assert str(megabytes) == wanted.stdout.strip()


@pytest.mark.parametrize(
    ("libraries", "expected"),
    [
        ("", "pg_prewarm"),
        ("pg_stat_statements", "pg_stat_statements,pg_prewarm"),
        ("pg_stat_statements, pg_prewarm", "pg_stat_statements,pg_prewarm"),
        ("pg_prewarm", "pg_prewarm"),
    ],
)
def test_pg_prewarm_joins_the_preloaded_libraries_once(libraries: str, expected: str) -> None:
    script = f'source deploy/lib/common.sh; with_prewarm "{libraries}"'
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.strip() == expected


@pytest.mark.parametrize(
    ("libraries", "expected"),
    [
        ("pg_prewarm", "'pg_prewarm'"),
        ("pg_stat_statements,pg_prewarm", "'pg_stat_statements', 'pg_prewarm'"),
    ],
)
def test_alter_system_gets_each_library_quoted_apart(libraries: str, expected: str) -> None:
    """One quoted 'a,b' would name a single library "a,b": PostgreSQL would not start."""
    script = f'source deploy/lib/common.sh; quoted_list "{libraries}"'
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.strip() == expected


@pytest.mark.django_db
def test_the_running_server_refills_its_buffers_after_a_restart() -> None:
    """deploy/test preloaded pg_prewarm: the server has it, and its autoprewarm leader runs
    (a process of the local server; it takes no row in pg_stat_activity)."""
    from django.db import connection

    with connection.cursor() as cursor:  # shared_preload_libraries is for superusers only
        cursor.execute("SHOW pg_prewarm.autoprewarm")
        (autoprewarm,) = cursor.fetchone()
    assert autoprewarm == "on"
    titles = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            titles.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # the process ended meanwhile
            continue
    assert any("autoprewarm leader" in title for title in titles)
