from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.accounts import actions


class Command(BaseCommand):
    help = "Create a department (does nothing if it exists). Prints its id last."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--chat-retention-days",
            type=int,
            default=None,
            help="keep its members' conversations this many days (0: the organisation's "
            "setting, APPLIANCE_CHAT_RETENTION_DAYS); also changes an existing department",
        )

    def handle(self, *args: object, **options: object) -> None:
        department, created = actions.create_department(None, str(options["name"]))
        self.stdout.write(
            f"{'Created' if created else 'Already existed'}: department {department.name}"
        )
        days = options["chat_retention_days"]
        if days is not None:
            if not isinstance(days, int) or days < 0:
                raise CommandError("--chat-retention-days must be 0 or more.")
            actions.set_chat_retention(None, department, days or None)
            self.stdout.write(
                f"Chat retention: {days} days" if days else "Chat retention: the organisation's"
            )
        self.stdout.write(str(department.pk))
