from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.audit import actions as audit
from appliance.audit import maintenance


class Command(BaseCommand):
    help = (
        "GDPR erasure: replace a person's name, addresses and user agents in the audit log "
        "with a pseudonym (the log still verifies) and anonymise their account. Run as the "
        "database owner role. The erasure is itself an audit event, naming only the pseudonym."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--keep-account",
            action="store_true",
            help="leave the user account as it is (only the log is pseudonymised)",
        )

    def handle(self, *args: object, **options: object) -> None:
        try:
            result = maintenance.erase_person(
                str(options["username"]),
                actor_name=audit.command_actor(),
                keep_account=bool(options["keep_account"]),
            )
        except maintenance.MaintenanceRefused as exc:
            raise CommandError(f"Nothing erased: {exc}") from None
        account = {
            "anonymised": "their account is anonymised and deactivated",
            "kept": "their account was left as it is",
            "none": "no account by that name exists",
        }[result.account]
        self.stdout.write(
            f"Replaced the identity in {result.rows} audit events with {result.pseudonym}; "
            f"{account}."
        )
        self.stdout.write(result.pseudonym)
