from django.core.management.base import BaseCommand, CommandParser

from appliance.accounts import actions


class Command(BaseCommand):
    help = "Create a department (does nothing if it exists). Prints its id last."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: object, **options: str) -> None:
        department, created = actions.create_department(None, options["name"])
        self.stdout.write(
            f"{'Created' if created else 'Already existed'}: department {department.name}"
        )
        self.stdout.write(str(department.pk))
