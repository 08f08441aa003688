from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.audit import export, integrity, signing


class Command(BaseCommand):
    help = (
        "Verify an audit export and its signed manifest offline, or (--database) the live "
        "audit table from its retention anchor. Exits 0 when intact; otherwise names the "
        "first problem and exits 1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, nargs="?", help="the export file")
        parser.add_argument(
            "--manifest",
            type=Path,
            help="the manifest (default: <file>.manifest.json); with --database, the "
            "manifest of an earlier export whose rows must all still be there",
        )
        parser.add_argument(
            "--public-key",
            default="",
            help="the appliance's Ed25519 public key (hex, or a file holding it) to trust; "
            "default: this appliance's own (see audit_public_key)",
        )
        parser.add_argument(
            "--database", action="store_true", help="verify the live audit table instead"
        )

    def handle(self, *args: object, **options: object) -> None:
        if options["database"]:
            self._verify_database(options["manifest"])  # type: ignore[arg-type]
            return
        path: Path | None = options["file"]  # type: ignore[assignment]
        if path is None or not path.is_file():
            raise CommandError(f"{path} is not a file." if path else "Name the export file.")
        try:
            key = (
                signing.read_public_key(str(options["public_key"]))
                if options["public_key"]
                else None
            )
            manifest = export.verify_export(path, options["manifest"], public_key=key)  # type: ignore[arg-type]
        except signing.BadPublicKey as exc:
            raise CommandError(str(exc)) from None
        except export.VerificationFailed as exc:
            raise CommandError(f"NOT INTACT: {exc}") from None
        self.stdout.write(
            f"Intact: {manifest['rows']} events, hashes and signature verified "
            f"(last hash {manifest['last_hash']})."
        )

    def _verify_database(self, manifest_path: Path | None) -> None:
        earlier = None
        if manifest_path is not None:
            try:
                earlier = json.loads(manifest_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CommandError(f"Cannot read {manifest_path}: {exc}") from None
        try:
            report = integrity.verify_database(earlier)
        except integrity.Broken as exc:
            raise CommandError(f"NOT INTACT: {exc}") from None
        start = (
            f"retention anchor #{report.anchor.pk} (rows up to {report.anchor.last_pruned_id} "
            "pruned)"
            if report.anchor
            else "the start of the log"
        )
        self.stdout.write(
            f"Intact: {report.rows} events in the database, rows {report.first_id} to "
            f"{report.last_id}, unbroken from {start}."
        )
