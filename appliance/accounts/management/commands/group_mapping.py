"""List, add and remove directory group mappings (the operator page's twin)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from appliance.accounts import directory
from appliance.accounts.models import Department, GroupMapping, Role
from appliance.audit.actions import command_actor


class Command(BaseCommand):
    help = (
        "Map directory groups (LDAP group DNs, OIDC groups claim values) to department "
        "memberships: `list`, `add GROUP DEPARTMENT ROLE`, `remove GROUP DEPARTMENT ROLE`. "
        "Each change is audited and applies at once to people the directory last reported "
        "in the group."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="command", required=True)
        commands.add_parser("list", help="show every mapping")
        for name in ("add", "remove"):
            sub = commands.add_parser(name)
            sub.add_argument("group", help="the LDAP group DN or OIDC group value")
            sub.add_argument("department", help="the department's name")
            sub.add_argument("role", choices=Role.values)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["command"] == "list":
            for mapping in GroupMapping.objects.select_related("department"):
                self.stdout.write(f"{mapping.group}\t{mapping.department.name}\t{mapping.role}")
            return
        department = Department.objects.filter(name=options["department"]).first()
        if department is None:
            raise CommandError(
                f"There is no department called {options['department']!r} "
                "(create it with `manage.py create_department`)."
            )
        if options["command"] == "add":
            try:
                _, created = directory.add_mapping(
                    command_actor(), options["group"], department, options["role"]
                )
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write("Added." if created else "That mapping exists already.")
            return
        key = directory.normalise(options["group"])
        found = [
            m
            for m in GroupMapping.objects.filter(department=department, role=options["role"])
            if directory.normalise(m.group) == key
        ]
        if not found:
            raise CommandError("There is no such mapping (see `group_mapping list`).")
        directory.remove_mapping(command_actor(), found[0])
        self.stdout.write("Removed.")
