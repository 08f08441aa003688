from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.accounts import actions
from appliance.accounts.models import User


class Command(BaseCommand):
    help = "Create an API token for a user. The token is printed once, alone on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="a label to recognise the token by")

    def handle(self, *args: object, **options: str) -> None:
        user = User.objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        raw = actions.create_api_token(None, user, options["name"])
        self.stdout.write(f"API token for {user.username} (store it now; it is not shown again):")
        self.stdout.write(raw)
