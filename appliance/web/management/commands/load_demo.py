"""Demo data: two departments with a collection of real documents each, and one person in
each role. Safe to run again: nothing is duplicated, passwords are reset to the demo ones."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from appliance.accounts import actions as accounts
from appliance.accounts.models import Role
from ingest import actions as ingest
from ingest.models import Collection

DEMO_PEOPLE = [
    # username, password, [(department, role), ...], what they are for
    ("alice", "alice-demo-pass", [("HR", Role.EMPLOYEE)], "employee in HR"),
    ("bob", "bob-demo-pass", [("Finance", Role.EMPLOYEE)], "employee in Finance"),
    (
        "carol",
        "carol-demo-pass",
        [("HR", Role.CURATOR), ("Finance", Role.CURATOR)],
        "curator of HR and Finance",
    ),
    ("dave", "dave-demo-pass", [("HR", Role.AUDITOR)], "auditor"),
    ("erin", "erin-demo-pass", [("HR", Role.OPERATOR)], "operator"),
]

DEMO_COLLECTIONS = {
    "HR": ("HR handbook", ["handbook-1p.docx", "eml/family-day.eml", "pdf/fake-memo.pdf"]),
    "Finance": (
        "Finance reports",
        [
            "2023-half-year-analyses-by-segment.xlsx",
            "example-10k-1p.html",
            "pdf/reliance.pdf",
        ],
    ),
}


class Command(BaseCommand):
    help = "Load the demo departments, people and collections (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--documents",
            type=Path,
            default=settings.BASE_DIR.parent / "shared" / "corpus" / "documents",
            help="folder holding the demo documents",
        )

    def handle(self, *args: object, **options: object) -> None:
        folder: Path = options["documents"]  # type: ignore[assignment]
        departments = {}
        for name in DEMO_COLLECTIONS:
            departments[name], _ = accounts.create_department(None, name)
        for username, password, memberships, _purpose in DEMO_PEOPLE:
            user, _ = accounts.create_or_update_user(None, username, password)
            for department, role in memberships:
                accounts.add_membership(None, user, departments[department], role)
        for department_name, (collection_name, files) in DEMO_COLLECTIONS.items():
            department = departments[department_name]
            collection = Collection.objects.filter(
                department=department, name=collection_name
            ).first()
            if collection is None:
                collection = ingest.create_collection(None, collection_name, department)
            present = [folder / f for f in files if (folder / f).is_file()]
            if not present:
                self.stdout.write(
                    f"No demo documents found in {folder}; {collection_name} stays empty."
                )
                continue
            incoming = [ingest.IncomingFile(p.name, open(p, "rb")) for p in present]  # noqa: SIM115
            try:
                results = ingest.upload_documents(None, collection, incoming)
            finally:
                for item in incoming:
                    item.stream.close()
            fresh = sum(1 for r in results if r.document and not r.duplicate)
            old = len(results) - fresh
            self.stdout.write(
                f"{collection_name}: {fresh} new document(s) queued, {old} already there"
            )
        self.stdout.write("Demo sign-ins:")
        for username, password, _memberships, purpose in DEMO_PEOPLE:
            self.stdout.write(f"  {username:<6} / {password:<16} {purpose}")
