from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from appliance.operations import restore


class Command(BaseCommand):
    help = (
        "Restore a backup folder onto this host: checks every file's SHA-256 first, then "
        "restores the database (into an empty one), the uploaded files and, with "
        "--with-secrets, the settings file; runs migrations and audit_verify --database. "
        "Stop the appliance first (deploy/down). See docs/operations.md, Backups."
    )
    # Nothing may hold a connection to the database that is about to be replaced.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("folder", type=Path, help="the backup folder")
        parser.add_argument(
            "--force",
            action="store_true",
            help="replace a database and upload folder that are not empty (the old upload "
            "folder is kept beside the new one)",
        )
        parser.add_argument(
            "--with-secrets",
            action="store_true",
            help="put the backup's settings file (secret key, audit signing key) in place of "
            "this host's, keeping this host's database passwords, Redis and data folder",
        )
        parser.add_argument(
            "--secrets-to",
            type=Path,
            help="write the backup's settings file, unchanged, to this file instead",
        )
        parser.add_argument(
            "--public-key",
            default="",
            help="the old host's audit public key (audit_public_key; hex or a file): the "
            "manifest's signature must verify with it",
        )

    def handle(self, *args: object, **options: object) -> None:
        if options["with_secrets"] and options["secrets_to"]:
            raise CommandError("Give --with-secrets or --secrets-to, not both.")
        connections.close_all()
        try:
            restore.restore(
                Path(str(options["folder"])),
                force=bool(options["force"]),
                with_secrets=bool(options["with_secrets"]),
                secrets_to=Path(str(options["secrets_to"])) if options["secrets_to"] else None,
                public_key=str(options["public_key"]),
                say=self._say,
            )
        except restore.RestoreError as exc:
            raise CommandError(str(exc)) from None

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
