"""The demo organisation (deploy/demo/): its golden set reads cleanly and names real
documents, its facts agree between documents and with the golden answers, every document
parses with the real parsers (the scanned minutes page through OCR), and ``load_demo``
loads departments, people, collections and the golden set once, however often it runs."""

from __future__ import annotations

import io
import re
import shutil
import tomllib
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest
from django.core.management import call_command
from openpyxl import load_workbook

from appliance.accounts.models import Department, Membership, User
from appliance.web.management.commands import load_demo
from inference.pilot import engine, goldens, workbench
from inference.pilot.models import GoldenSet, GoldenSetVersion
from ingest.models import Collection, Document, Status
from ingest.parsing import kind_for_name, parse

DEMO = Path(__file__).resolve().parents[1] / "deploy" / "demo"
DOCUMENTS = DEMO / "documents"
GOLDEN = DEMO / "golden.csv"
MINUTES = "executive-committee-minutes-2025-03-12.pdf"
SCANNED_PAGE = 2


def organisation() -> dict[str, Any]:
    return tomllib.loads((DEMO / "organisation.toml").read_text(encoding="utf-8"))


def collection_documents(department: str) -> set[str]:
    return {
        name
        for c in organisation()["collections"]
        if c["department"] == department
        for name in c["documents"]
    }


def golden_rows() -> goldens.ParsedGoldens:
    return goldens.parse_file(GOLDEN.name, GOLDEN.read_bytes())


# A number as people write it: "1,045", "1 045", "4.35", "4,35", "09:00" (two numbers).
_NUMBER = re.compile(r"\d+(?:[ \u00a0.,]\d{3})*(?:[.,]\d+)?")


def numbers(text: str) -> set[str]:
    """The numbers in a text as bare digits, so "NOK 1,045" and "1 045 kr" are the same."""
    return {re.sub(r"\D", "", found) for found in _NUMBER.findall(text)}


# --- the golden set file ---------------------------------------------------------------


def test_golden_file_parses_without_a_single_error() -> None:
    parsed = golden_rows()

    assert parsed.fatal is None
    assert parsed.errors == []
    assert len(parsed.rows) == 60
    assert sum(1 for r in parsed.rows if not r.answerable) == 10
    assert Counter(r.language for r in parsed.rows) == {"en": 50, "nb": 10}
    tags = Counter(tag for r in parsed.rows for tag in r.tags)
    assert tags["document"] == 5
    assert tags["other-department"] == 5
    # Every row says which department's documents it is about.
    assert all({"hr", "finance", "it"} & set(r.tags) for r in parsed.rows)


def test_unanswerable_questions_name_no_sources_and_answerable_ones_do() -> None:
    for row in golden_rows().rows:
        if row.answerable:
            assert row.expected_sources, row.question
            assert row.expected_answer, row.question
        else:
            assert row.expected_sources == [], row.question


def test_every_expected_source_is_a_demo_document_with_that_page() -> None:
    page_counts = {p.name: len(pdfium.PdfDocument(str(p))) for p in DOCUMENTS.glob("*.pdf")}
    for row in golden_rows().rows:
        for source in row.expected_sources:
            name, page = source["document"], source["page"]
            assert (DOCUMENTS / name).is_file(), f"{row.question}: no {name}"
            if page is not None:
                assert name in page_counts, f"{row.question}: a page of a non-PDF {name}"
                assert 1 <= page <= page_counts[name], f"{row.question}: {name} p{page}"


def test_other_department_questions_name_only_documents_hr_cannot_read() -> None:
    hr = collection_documents("HR")
    for row in golden_rows().rows:
        names = {s["document"] for s in row.expected_sources}
        if "other-department" in row.tags:
            assert names and not names & hr, row.question
        elif row.answerable:
            # alice (HR) can answer every other answerable question.
            assert names <= hr, row.question


def test_every_document_belongs_to_a_collection_and_every_listed_one_exists() -> None:
    listed = {name for c in organisation()["collections"] for name in c["documents"]}
    built = {p.name for p in DOCUMENTS.iterdir() if p.is_file()}

    assert listed == built
    assert 15 <= len(built) <= 30
    assert {p.suffix for p in DOCUMENTS.iterdir()} >= {
        ".pdf", ".docx", ".pptx", ".xlsx", ".eml", ".html", ".md", ".txt"
    }  # fmt: skip
    # Some documents are only in Finance or only in IT.
    assert collection_documents("Finance") - collection_documents("HR")
    assert collection_documents("IT") - collection_documents("HR")
    # bob (Finance) must not find the handbook.
    assert "employee-handbook.pdf" not in collection_documents("Finance")


def test_the_demo_folder_stays_small() -> None:
    size = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert size < 1_500_000


def test_budget_figures_add_up() -> None:
    workbook = load_workbook(DOCUMENTS / "budget-2025.xlsx", read_only=True)
    assert workbook.sheetnames == ["Summary", "Departments", "Investments", "Assumptions"]
    rows = [r for r in workbook["Departments"].iter_rows(values_only=True) if r[0]]
    lines = {r[0]: r for r in rows if isinstance(r[1], int)}
    total = lines.pop("Total")
    assert sum(r[1] for r in lines.values()) == total[1]
    assert sum(r[2] for r in lines.values()) == total[2]
    summary = {r[0]: r for r in workbook["Summary"].iter_rows(values_only=True) if r[0]}
    assert summary["Operating expenditure"][1:] == total[1:3]
    income, spending, finance = (
        summary[k][2]
        for k in ("Operating income", "Operating expenditure", "Net financial expenses")
    )
    assert income - spending - finance == summary["Net operating result"][2]
    investments = [r for r in workbook["Investments"].iter_rows(values_only=True) if r[0]]
    assert sum(r[2] for r in investments[1:-1] if r[1] == "IT") == 4800  # the roadmap's 4.8


# --- the documents, read by the real parsers -------------------------------------------


@cache
def blocks_of(name: str) -> tuple[tuple[str, int | None], ...]:
    path = DOCUMENTS / name
    return tuple((b.text, b.page) for b in parse(path, kind_for_name(name)))


def text_of(name: str, page: int | None = None) -> str:
    return "\n".join(text for text, p in blocks_of(name) if page is None or p == page)


def test_every_demo_document_parses_and_the_scanned_page_is_read_by_ocr() -> None:
    for path in sorted(DOCUMENTS.iterdir()):
        assert len(text_of(path.name)) > 300, path.name

    pdf = pdfium.PdfDocument(str(DOCUMENTS / MINUTES))
    textpage = pdf[SCANNED_PAGE - 1].get_textpage()
    assert textpage.get_text_bounded().strip() == ""  # no text layer: only OCR can read it
    scanned = text_of(MINUTES, SCANNED_PAGE)
    assert "Electric cars for home care" in scanned
    assert "6 electric cars" in scanned
    assert "1.9 million" in scanned
    assert "comes into force on 1 April 2025" in " ".join(scanned.split())

    mail = text_of("remote-work-announcement.eml")
    assert "home-office checklist" in mail
    assert "120 \N{MULTIPLICATION SIGN} 70 cm" in mail  # from the attached Word file
    assert "4.8 million" in text_of("it-roadmap-2025.pptx")
    assert "26900" in text_of("budget-2025.xlsx")


def test_numbers_in_expected_answers_occur_in_their_sources() -> None:
    for row in golden_rows().rows:
        if not row.answerable:
            continue
        found: set[str] = set()
        for source in row.expected_sources:
            found |= numbers(text_of(source["document"], source["page"]))
        missing = numbers(row.expected_answer) - found
        assert not missing, f"{row.question}: {sorted(missing)} not in {row.expected_sources}"


# Facts stated in more than one document, as each one writes them.
TRAVEL, REISE = "travel-and-expenses-policy.pdf", "reiseregulativ.docx"
SECURITY, SHORT = "it-security-policy.pdf", "informasjonssikkerhet-kortversjon.md"
HANDBOOK, SICKNESS = "employee-handbook.pdf", "oppfolging-ved-sykefravaer.md"
MAIL, V2, V3 = (
    "remote-work-announcement.eml",
    "remote-work-policy-v2.pdf",
    "remote-work-policy-v3.docx",
)
BUDGET, ROADMAP = "budget-2025.xlsx", "it-roadmap-2025.pptx"
ONBOARDING, DESK = "onboarding-new-employees.pptx", "it-service-desk.html"
SHARED_FACTS = [
    ("mileage per km", {TRAVEL: "4.35", REISE: "4,35"}),
    ("overnight per diem", {TRAVEL: "1,045", REISE: "1 045"}),
    ("Oslo hotel", {TRAVEL: "2,100", REISE: "2 100"}),
    ("claim limit", {TRAVEL: "50,000", REISE: "50 000"}),
    ("password length", {SECURITY: "14", SHORT: "14"}),
    ("service desk", {SECURITY: "4000", SHORT: "4000", DESK: "4000", ONBOARDING: "4000"}),
    ("e-learning deadline", {SECURITY: "31 October", SHORT: "31. oktober"}),
    ("self-certified days", {HANDBOOK: "20", SICKNESS: "20"}),
    ("sick child days", {HANDBOOK: "12", "personalhandbok-permisjoner.docx": "12"}),
    ("home-office allowance", {V3: "4,000", MAIL: "4,000"}),
    ("broadband allowance", {V2: "300", MAIL: "300"}),
    ("policy 3.0 case", {V3: "14/25", MAIL: "14/25", MINUTES: "14/25"}),
    ("policy 3.0 start", {V3: "1 April 2025", MAIL: "1 April 2025", MINUTES: "1 April 2025"}),
    ("IT operating budget", {BUDGET: "26900", ROADMAP: "26.9"}),
    ("Windows 11 investment", {BUDGET: "3200", ROADMAP: "3.2"}),
    ("contingency reserve", {BUDGET: "38400", MINUTES: "38.4"}),
    ("reserve after revision 1", {MINUTES: "36.3", "budget-revision-request.eml": "36.3"}),
    ("travel agency", {TRAVEL: "Nordreiser AS", "innkjopsreglement.md": "Nordreiser AS"}),
    ("HR phone", {HANDBOOK: "4420", SICKNESS: "4420", MAIL: "4420", ONBOARDING: "4420"}),
    ("laptop room", {ONBOARDING: "room 112", DESK: "room 112"}),
]


@pytest.mark.parametrize(("fact", "places"), SHARED_FACTS, ids=[f for f, _ in SHARED_FACTS])
def test_documents_agree_on_shared_facts(fact: str, places: dict[str, str]) -> None:
    for name, written in places.items():
        text = " ".join(text_of(name).split())
        if re.fullmatch(r"[\d.,\s]+", written):
            assert numbers(written) <= numbers(text), f"{fact}: {written} not in {name}"
        else:
            assert written in text, f"{fact}: {written} not in {name}"


# --- load_demo -------------------------------------------------------------------------


def state() -> dict[str, Any]:
    """Everything load_demo creates, as comparable values."""
    return {
        "departments": sorted(Department.objects.values_list("name", flat=True)),
        "people": sorted(User.objects.values_list("username", flat=True)),
        "memberships": sorted(
            Membership.objects.values_list("user__username", "department__name", "role")
        ),
        "collections": sorted(
            Collection.objects.values_list("pk", "department__name", "name", "description")
        ),
        "documents": sorted(
            Document.objects.values_list(
                "pk", "collection__name", "original_name", "sha256", "version", "status"
            )
        ),
        "golden_versions": sorted(
            GoldenSetVersion.objects.values_list("pk", "golden_set__name", "number")
        ),
    }


def run_load_demo() -> str:
    out = io.StringIO()
    call_command("load_demo", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_load_demo_creates_the_organisation() -> None:
    output = run_load_demo()

    assert set(Department.objects.values_list("name", flat=True)) == {"HR", "Finance", "IT"}
    for username, password, memberships, _ in load_demo.DEMO_PEOPLE:
        user = User.objects.get(username=username)
        assert user.check_password(password), username
        assert set(
            Membership.objects.filter(user=user).values_list("department__name", "role")
        ) == {(department, str(role)) for department, role in memberships}
    for spec in organisation()["collections"]:
        collection = Collection.objects.get(department__name=spec["department"], name=spec["name"])
        assert collection.description == " ".join(spec["description"].split())
        assert collection.language == spec["language"]
        documents = collection.documents.all()
        assert {d.original_name for d in documents} == set(spec["documents"])
        assert {d.status for d in documents} == {Status.QUEUED}
    golden_set = GoldenSet.objects.get(department__name="HR", name="Fjordvik demo questions")
    version = golden_set.latest
    assert version is not None and version.number == 1
    assert [q.as_row() for q in version.questions.all()] == [
        r.as_dict() for r in golden_rows().rows
    ]
    assert "alice  / alice-demo-pass" in output


@pytest.mark.django_db
def test_running_load_demo_twice_changes_nothing() -> None:
    run_load_demo()
    before = state()

    output = run_load_demo()

    assert state() == before
    assert "0 new document(s) queued" in output
    assert "unchanged (60 questions)" in output


@pytest.mark.django_db
def test_load_demo_adds_a_golden_set_version_only_when_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "demo"
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("sources"))
    monkeypatch.setattr(load_demo, "DEMO_FOLDER", folder)
    run_load_demo()
    golden = folder / "golden.csv"
    lines = golden.read_text(encoding="utf-8").splitlines(keepends=True)
    golden.write_text("".join(lines[:-1]), encoding="utf-8")  # drop the last question

    run_load_demo()
    run_load_demo()

    golden_set = GoldenSet.objects.get(name="Fjordvik demo questions")
    assert list(golden_set.versions.values_list("number", flat=True)) == [2, 1]
    assert golden_set.latest.questions.count() == 59  # type: ignore[union-attr]


@pytest.mark.django_db
def test_other_department_questions_are_the_ones_alice_cannot_read() -> None:
    """GIVEN the demo loaded WHEN alice's readable documents are checked against the golden
    set THEN exactly the other-department rows name documents she cannot read: the right
    result for her there is a refusal."""
    run_load_demo()
    alice = User.objects.get(username="alice")
    bob = User.objects.get(username="bob")
    parsed = golden_rows()

    errors = goldens.check_sources(parsed.rows, workbench.readable_documents(alice), parsed.lines)

    expected = {
        line
        for line, row in zip(parsed.lines, parsed.rows, strict=True)
        if "other-department" in row.tags
    }
    assert {e.line for e in errors} == expected
    assert "employee-handbook.pdf" not in workbench.readable_documents(bob)
    assert "budget-2025.xlsx" in workbench.readable_documents(bob)


@pytest.mark.django_db
def test_a_run_as_alice_counts_other_department_questions_as_ones_to_refuse() -> None:
    """GIVEN the demo golden set WHEN a run is answered as alice THEN the questions only
    another department's documents answer are out of her scope (the pilot measures her
    refusal there), and every other answerable one stays answerable."""
    run_load_demo()
    alice = User.objects.get(username="alice")
    version = GoldenSet.objects.get(name="Fjordvik demo questions").latest
    readable = engine.readable_names(alice, None)

    for golden in version.questions.all():  # type: ignore[union-attr]
        expected = golden.answerable and "other-department" not in golden.tags
        assert engine.answerable_for(golden, readable) == expected, golden.question
