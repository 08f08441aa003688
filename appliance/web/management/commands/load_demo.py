"""Demo data: Fjordvik kommune, a municipality written for this project (deploy/demo/),
with departments HR, Finance and IT, a collection of documents each, one person in each
role, and a golden set of questions for the pilot workbench.

Safe to run again: nothing is duplicated, passwords are reset to the demo ones, a
document already in its collection is not queued again, and the golden set gets a new
version only when golden.csv has changed."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from appliance.accounts import actions as accounts
from appliance.accounts.models import Department, Role
from inference.pilot import actions as pilot
from inference.pilot import goldens
from inference.pilot.models import GoldenSet
from ingest import actions as ingest
from ingest.models import Collection

DEMO_FOLDER = Path(settings.BASE_DIR) / "deploy" / "demo"

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
    ("frank", "frank-demo-pass", [("IT", Role.EMPLOYEE)], "employee in IT"),
]


@dataclass(frozen=True)
class DemoCollection:
    department: str
    name: str
    language: str
    description: str
    suggested_questions: tuple[str, ...]
    documents: tuple[str, ...]


@dataclass(frozen=True)
class DemoOrganisation:
    folder: Path
    collections: tuple[DemoCollection, ...]
    golden_department: str
    golden_name: str
    golden_file: Path

    @property
    def departments(self) -> list[str]:
        return list(dict.fromkeys(c.department for c in self.collections))


def read_organisation(folder: Path | None = None) -> DemoOrganisation:
    """deploy/demo/organisation.toml: which collection holds which documents."""
    folder = folder or DEMO_FOLDER
    path = folder / "organisation.toml"
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CommandError(f"Cannot read the demo organisation ({path}): {exc}") from None
    collections = tuple(
        DemoCollection(
            department=c["department"],
            name=c["name"],
            language=c.get("language", "english"),
            description=" ".join(c.get("description", "").split()),
            suggested_questions=tuple(c.get("suggested_questions", ())),
            documents=tuple(c["documents"]),
        )
        for c in data["collections"]
    )
    golden = data["golden_set"]
    return DemoOrganisation(
        folder=folder,
        collections=collections,
        golden_department=golden["department"],
        golden_name=golden["name"],
        golden_file=folder / golden["file"],
    )


class Command(BaseCommand):
    help = (
        "Load the demo organisation (Fjordvik kommune): departments, people, collections "
        "with their documents, and the golden set (idempotent)."
    )

    def handle(self, *args: object, **options: object) -> None:
        organisation = read_organisation()
        departments: dict[str, Department] = {}
        for name in organisation.departments:
            departments[name], _ = accounts.create_department(None, name)
        for username, password, memberships, _purpose in DEMO_PEOPLE:
            user, _ = accounts.create_or_update_user(None, username, password)
            for department, role in memberships:
                accounts.add_membership(None, user, departments[department], role)
        for spec in organisation.collections:
            self._load_collection(spec, departments[spec.department], organisation.folder)
        self._load_golden_set(organisation, departments[organisation.golden_department])
        self.stdout.write("Demo sign-ins:")
        for username, password, _memberships, purpose in DEMO_PEOPLE:
            self.stdout.write(f"  {username:<6} / {password:<16} {purpose}")

    def _load_collection(self, spec: DemoCollection, department: Department, folder: Path) -> None:
        collection = Collection.objects.filter(department=department, name=spec.name).first()
        if collection is None:
            collection = ingest.create_collection(None, spec.name, department, spec.language)
        ingest.describe_collection(
            None,
            collection,
            description=spec.description,
            suggested_questions=spec.suggested_questions,
        )
        paths = [folder / "documents" / name for name in spec.documents]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise CommandError(
                f"{spec.name}: missing demo documents {', '.join(missing)} in "
                f"{folder / 'documents'}; run deploy/demo/build.py"
            )
        incoming = [ingest.IncomingFile(p.name, open(p, "rb")) for p in paths]  # noqa: SIM115
        try:
            results = ingest.upload_documents(None, collection, incoming)
        finally:
            for item in incoming:
                item.stream.close()
        refused = [f"{r.name} ({r.error})" for r in results if r.error]
        if refused:
            raise CommandError(f"{spec.name}: refused {'; '.join(refused)}")
        fresh = sum(1 for r in results if r.document and not r.duplicate)
        old = len(results) - fresh
        self.stdout.write(f"{spec.name}: {fresh} new document(s) queued, {old} already there")

    def _load_golden_set(self, organisation: DemoOrganisation, department: Department) -> None:
        path = organisation.golden_file
        parsed = goldens.parse_file(path.name, path.read_bytes())
        if not parsed.ok:
            problems = parsed.fatal or "; ".join(str(e) for e in parsed.errors)
            raise CommandError(f"{path} cannot be read: {problems}")
        rows = [row.as_dict() for row in parsed.rows]
        existing = GoldenSet.objects.filter(
            department=department, name=organisation.golden_name
        ).first()
        latest = existing.latest if existing else None
        if latest is not None and [q.as_row() for q in latest.questions.all()] == rows:
            self.stdout.write(
                f"Golden set “{organisation.golden_name}” v{latest.number} "
                f"(version id {latest.pk}): unchanged ({len(rows)} questions)"
            )
            return
        version = pilot.create_golden_set(
            None, organisation.golden_name, department, parsed.rows, note=f"deploy/demo/{path.name}"
        )
        self.stdout.write(
            f"Golden set “{organisation.golden_name}” v{version.number} "
            f"(version id {version.pk}): {len(rows)} questions"
        )
