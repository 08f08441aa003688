from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.audit import actions as audit
from appliance.audit import maintenance


class Command(BaseCommand):
    help = (
        "Delete audit events older than the retention period (APPLIANCE_AUDIT_RETENTION_DAYS) "
        "and record an anchor so the remaining log still verifies. Run as the database owner "
        "role. The pruning is itself an audit event."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="keep this many days instead of the configured retention",
        )

    def handle(self, *args: object, **options: object) -> None:
        days = options["days"] if options["days"] is not None else settings.AUDIT_RETENTION_DAYS
        if not isinstance(days, int) or days < 1:
            raise CommandError("--days must be at least 1.")
        try:
            result = maintenance.prune(days, actor_name=audit.command_actor())
        except maintenance.MaintenanceRefused as exc:
            raise CommandError(f"Nothing pruned: {exc}") from None
        if result.anchor is None:
            self.stdout.write(f"Nothing older than {result.cutoff:%Y-%m-%d %H:%M} UTC to prune.")
            return
        self.stdout.write(
            f"Pruned {result.rows} events up to row {result.anchor.last_pruned_id}; the log now "
            f"verifies from anchor #{result.anchor.pk}."
        )
