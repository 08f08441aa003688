"""deploy/install-services writes systemd units for the web server, both worker pools and
the two timers: the same command lines as deploy/up, restarts on failure, the right user.
The units are written to a folder and read (and checked by ``systemd-analyze verify``
where it exists), never enabled on the test host."""

from __future__ import annotations

import configparser
import getpass
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
SERVICES = ("appliance-web", "appliance-ingest", "appliance-answer")


def install_services(tmp_path: Path, *extra: str, **settings: str) -> Path:
    env_file = tmp_path / "appliance.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    out = tmp_path / "units"
    result = subprocess.run(
        ["deploy/install-services", "--output", str(out), *extra],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": str(tmp_path),
            "APPLIANCE_ENV_FILE": str(env_file),
            "APPLIANCE_DATA_DIR": str(tmp_path / "var"),
            "APPLIANCE_VENV": str(VENV),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return out


def unit(folder: Path, name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(folder / name)
    return parser


@pytest.fixture
def units(tmp_path: Path) -> Path:
    return install_services(tmp_path, APPLIANCE_PORT="8123", APPLIANCE_WEB_WORKERS="3")


def test_every_process_restarts_on_failure_as_the_owner_of_the_settings(units: Path) -> None:
    owner = getpass.getuser()
    for name in SERVICES:
        service = unit(units, f"{name}.service")
        assert service["Service"]["Restart"] == "on-failure", name
        assert service["Service"]["User"] == owner
        assert service["Service"]["WorkingDirectory"] == str(ROOT)
        assert service["Unit"]["PartOf"] == "appliance.target"
        assert "appliance-prepare.service" in service["Unit"]["Requires"]
    target = (units / "appliance.target").read_text()
    assert "Wants=appliance-web.service appliance-ingest.service appliance-answer.service" in target
    assert "WantedBy=multi-user.target" in target


def test_the_web_server_runs_as_deploy_up_starts_it(units: Path) -> None:
    service = (units / "appliance-web.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    assert exec_start.startswith(f"ExecStart={VENV}/bin/uvicorn appliance.asgi:application")
    assert "--port 8123" in exec_start and "--workers 3" in exec_start
    assert "--proxy-headers --forwarded-allow-ips 127.0.0.1" in exec_start
    assert f"--log-config {ROOT}/deploy/logging.json --no-access-log" in exec_start
    assert "Environment=APPLIANCE_PROCESS=web" in service


def test_each_worker_pool_takes_its_own_queue(units: Path) -> None:
    for role in ("ingest", "answer"):
        service = (units / f"appliance-{role}.service").read_text()
        exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
        assert f"worker -Q {role} -n {role}@%%h" in exec_start  # %h is Celery's, not systemd's
        assert "--concurrency 1 --prefetch-multiplier 1" in exec_start
        assert f"Environment=APPLIANCE_WORKER_ROLE={role}" in service
        assert ("--max-memory-per-child" in exec_start) == (role == "ingest")


def test_timers_run_the_reconciler_and_audit_prune(units: Path) -> None:
    reconcile = unit(units, "appliance-reconcile.timer")
    assert reconcile["Timer"]["OnUnitActiveSec"] == "5min"
    assert "manage.py reconcile" in (units / "appliance-reconcile.service").read_text()
    prune = (units / "appliance-audit-prune.service").read_text()
    # The owner role deletes; its password comes from the settings file through the shell.
    assert 'APPLIANCE_DB_PASSWORD="$$APPLIANCE_DB_OWNER_PASSWORD"' in prune
    assert "manage.py audit_prune" in prune and "APPLIANCE_DB_USER=appliance_owner" in prune
    assert unit(units, "appliance-audit-prune.timer")["Timer"]["Persistent"] == "true"


def test_the_metric_files_are_cleared_once_per_start_of_the_whole_appliance(
    units: Path, tmp_path: Path
) -> None:
    prepare = (units / "appliance-prepare.service").read_text()
    assert "RemainAfterExit=yes" in prepare
    assert "-delete" in prepare and str(tmp_path / "var" / "run" / "metrics") in prepare


def test_an_unknown_user_is_refused(tmp_path: Path) -> None:
    env_file = tmp_path / "appliance.env"
    env_file.write_text("")
    result = subprocess.run(
        ["deploy/install-services", "--output", str(tmp_path / "u"), "--user", "nobody-here-x"],
        cwd=ROOT,
        env={**os.environ, "APPLIANCE_ENV_FILE": str(env_file), "APPLIANCE_VENV": str(VENV)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "there is no user 'nobody-here-x'" in result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is missing")
def test_systemd_accepts_the_units(units: Path) -> None:
    names = [str(p) for p in sorted(units.iterdir())]
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    # Units it merely cannot find on this host (postgresql.service on a test machine) are
    # not faults of ours; anything else it says is.
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not line.rstrip().endswith("not found.")
    ]
    assert problems == [], problems


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["--role", "worker"], "usage: deploy/up --role worker --queues"),
        (
            [
                "--role",
                "worker",
                "--queues",
                "answer,pdf",
                "--broker",
                "redis://h/0",
                "--database",
                "postgresql://h/a",
            ],
            "--queues: 'pdf' is not a queue",
        ),
        (
            [
                "--role",
                "worker",
                "--queues",
                "answer",
                "--broker",
                "http://h",
                "--database",
                "postgresql://h/a",
            ],
            "--broker must be a redis:// URL",
        ),
        (["--role", "boss"], "--role must be worker"),
        (["--queues", "answer"], "go with --role worker"),
        (["--broker"], "--broker needs a value"),
    ],
)
def test_a_worker_host_with_wrong_arguments_is_told_before_anything_is_installed(
    tmp_path: Path, arguments: list[str], said: str
) -> None:
    result = subprocess.run(
        ["deploy/up", *arguments],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "APPLIANCE_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert said in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing installed
