from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.operations import backup
from appliance.operations.common import owner_target


class Command(BaseCommand):
    help = (
        "Back up the appliance into a folder: the database (one consistent snapshot, taken "
        "without stopping questions), the uploaded files, the settings file with its secrets, "
        "and the model files' checksums, with a manifest of every file's SHA-256. Runs as "
        "the database's owner role. See docs/operations.md, Backups."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", required=True, type=Path, help="a new or empty folder")
        parser.add_argument(
            "--force", action="store_true", help="write into a folder that is not empty"
        )
        parser.add_argument(
            "--with-models",
            action="store_true",
            help="copy the model files too (gpt-oss-20b is about 12 GB); by default only "
            "their checksums are recorded",
        )
        parser.add_argument(
            "--without-secrets",
            action="store_true",
            help="leave the settings file (secret key, audit signing key, passwords) out, for "
            "a backup kept where secrets must not go; keep the signing key another way",
        )
        parser.add_argument(
            "--if-data",
            action="store_true",
            help="do nothing (and succeed) when the database holds no appliance data yet, as "
            "on a new installation (deploy/up uses this before an upgrade)",
        )
        parser.add_argument(
            "--env-file",
            type=Path,
            help="the settings file to include (default: the one this appliance reads)",
        )

    def handle(self, *args: object, **options: object) -> None:
        try:
            if options["if_data"] and not backup.holds_data(owner_target()):
                self.stdout.write("Nothing to back up: the database holds no appliance data yet.")
                return
            result = backup.take(
                Path(str(options["output"])),
                force=bool(options["force"]),
                with_models=bool(options["with_models"]),
                with_secrets=not options["without_secrets"],
                env_file=Path(str(options["env_file"])) if options["env_file"] else None,
                say=self._say,
            )
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(str(result.folder))

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
