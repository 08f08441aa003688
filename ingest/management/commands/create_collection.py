from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.accounts.models import Department
from ingest import actions
from ingest.models import Collection, Language


class Command(BaseCommand):
    help = "Create a collection owned by a department (idempotent). Prints its id last."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--department", required=True)
        parser.add_argument(
            "--language",
            default=Language.ENGLISH,
            choices=Language.values,
            help="picks the full-text search configuration (auto: each passage its own)",
        )

    def handle(self, *args: object, **options: str) -> None:
        department = Department.objects.filter(name=options["department"]).first()
        if department is None:
            raise CommandError(f"No department named {options['department']!r}.")
        existing = Collection.objects.filter(department=department, name=options["name"]).first()
        if existing is not None:
            self.stdout.write(f"Already existed: collection {existing.name} of {department.name}")
            self.stdout.write(str(existing.pk))
            return
        collection = actions.create_collection(
            None, options["name"], department, options["language"]
        )
        self.stdout.write(f"Created collection {collection.name} of {department.name}")
        self.stdout.write(str(collection.pk))
