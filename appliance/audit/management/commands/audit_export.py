from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from appliance.audit import actions as audit
from appliance.audit import export
from appliance.audit.models import Action


class Command(BaseCommand):
    help = "Export the audit log to a file with a signed manifest beside it (<file>.manifest.json)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=export.FORMATS, default="jsonl")
        parser.add_argument("--output", required=True, type=Path)
        parser.add_argument("--since", help="ISO date or time, inclusive")
        parser.add_argument("--until", help="ISO date or time, exclusive")
        parser.add_argument("--user", default="")
        parser.add_argument("--department", default="")
        parser.add_argument("--action", default="")

    def handle(self, *args: object, **options: object) -> None:
        try:
            filters = export.Filters(
                since=export.parse_time(options["since"], "--since"),  # type: ignore[arg-type]
                until=export.parse_time(options["until"], "--until"),  # type: ignore[arg-type]
                user=str(options["user"]),
                department=str(options["department"]),
                action=str(options["action"]),
            )
        except export.BadFilter as exc:
            raise CommandError(str(exc)) from None
        with transaction.atomic():
            audit.record(
                Action.AUDIT_EXPORT,
                actor_name=audit.command_actor(),
                details={
                    "format": options["format"],
                    "filters": filters.as_dict(),
                    "via": "command",
                },
            )
        summary = export.write_export(options["output"], str(options["format"]), filters)  # type: ignore[arg-type]
        self.stdout.write(
            f"{summary.rows} events written to {options['output']} "
            f"(manifest: {options['output']}.manifest.json)"
        )
        self.stdout.write(str(options["output"]))
