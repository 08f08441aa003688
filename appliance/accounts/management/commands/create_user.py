from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.accounts import actions
from appliance.accounts.models import Department, Role


class Command(BaseCommand):
    help = (
        "Create a user, or update one, and give them a role in departments. Idempotent. "
        "Prints the user's id last."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", help="set (or reset) the password")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--department",
            action="append",
            default=[],
            help="department name; repeat for several (each gets the role(s) given)",
        )
        parser.add_argument(
            "--role",
            action="append",
            default=[],
            choices=Role.values,
            help="role in those departments; repeat for several",
        )

    def handle(self, *args: object, **options: object) -> None:
        departments = []
        for name in options["department"]:  # type: ignore[attr-defined]
            department = Department.objects.filter(name=name).first()
            if department is None:
                raise CommandError(
                    f"No department named {name!r}. Create it first: "
                    f"python manage.py create_department {name!r}"
                )
            departments.append(department)
        roles = options["role"] or ([Role.EMPLOYEE] if departments else [])
        if roles and not departments:
            raise CommandError("--role needs at least one --department.")
        user, created = actions.create_or_update_user(
            None,
            str(options["username"]),
            options["password"] or None,  # type: ignore[arg-type]
            email=str(options["email"]),
        )
        self.stdout.write(f"{'Created' if created else 'Updated'} user {user.username}")
        for department in departments:
            for role in roles:  # type: ignore[attr-defined]
                if actions.add_membership(None, user, department, role):
                    self.stdout.write(f"  {role} in {department.name}")
        self.stdout.write(str(user.pk))
