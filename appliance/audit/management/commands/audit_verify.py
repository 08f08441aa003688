from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.audit import export


class Command(BaseCommand):
    help = (
        "Verify an audit export and its manifest. Exits 0 when intact; otherwise names the "
        "first problem and exits 1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)

    def handle(self, *args: object, **options: object) -> None:
        path: Path = options["file"]  # type: ignore[assignment]
        if not path.is_file():
            raise CommandError(f"{path} is not a file.")
        try:
            manifest = export.verify_export(path)
        except export.VerificationFailed as exc:
            raise CommandError(f"NOT INTACT: {exc}") from None
        self.stdout.write(
            f"Intact: {manifest['rows']} events, hashes and signature verified "
            f"(last hash {manifest['last_hash']})."
        )
