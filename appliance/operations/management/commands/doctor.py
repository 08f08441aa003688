from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandParser

from appliance.operations import doctor


class Command(BaseCommand):
    help = (
        "Check what a support call would ask: versions, disk space, model files and their "
        "checksums, PostgreSQL and pgvector, indexes, migrations, the audit log's protection, "
        "Redis, queues, workers and clocks. One line each, ok / warn / fail, with what to do. "
        "Exits 1 when something fails. --security lists installed packages with known "
        "vulnerabilities from an advisory file on disk (no network)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="one JSON document instead")
        parser.add_argument(
            "--security",
            action="store_true",
            help="check the installed Python packages against the advisory file instead",
        )
        parser.add_argument(
            "--advisories",
            type=Path,
            help="OSV advisories: PyPI/all.zip, a folder of .json files, or one .json "
            "(default: var/advisories/)",
        )
        parser.add_argument(
            "--checksums",
            action="store_true",
            help="read every model file again for its SHA-256 (otherwise remembered by size "
            "and time)",
        )

    def handle(self, *args: object, **options: object) -> None:
        findings: list = []
        if options["security"]:
            source = Path(str(options["advisories"])) if options["advisories"] else None
            checks, findings = doctor.security_checks(source)
        else:
            checks = doctor.run_checks(fresh_checksums=bool(options["checksums"]))
        status = doctor.worst(checks)
        if options["json"]:
            body: dict = {"status": status, "checks": [c.as_dict() for c in checks]}
            if options["security"]:
                body["vulnerabilities"] = [f.as_dict() for f in findings]
            self.stdout.write(json.dumps(body, indent=2))
        else:
            width = max((len(c.name) for c in checks), default=0)
            for check in checks:
                self.stdout.write(f"{check.status:<4}  {check.name:<{width}}  {check.message}")
                if check.fix and check.status != doctor.OK:
                    self.stdout.write(f"{'':<4}  {'':<{width}}  -> {check.fix}")
            counts = {
                s: sum(c.status == s for c in checks) for s in (doctor.OK, doctor.WARN, doctor.FAIL)
            }
            self.stdout.write(
                f"{status.upper()}: {counts['ok']} ok, {counts['warn']} warnings, "
                f"{counts['fail']} failed"
            )
        if status == doctor.FAIL:
            raise SystemExit(1)
