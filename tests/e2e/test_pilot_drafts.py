"""Drafting golden questions on real parts: a curator in a real browser starts an empty
golden set, asks for drafts from a collection, the real answer worker writes them with the
small real model while the page follows its progress, and the accepted draft becomes the
set's next version."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from inference.pilot.models import Draft, DraftBatch, DraftBatchStatus, GoldenSet
from ingest import actions as ingest_actions
from ingest.models import Document
from tests.conftest import PASSWORD
from tests.support.stack import wait_for

pytestmark = [pytest.mark.services, pytest.mark.browser]

PASSAGES = {
    "oslo-office.txt": "Our office in Oslo opened in 2015. It has 120 employees and is led by "
    "Kari Nordmann, the country manager. The office is on the fourth floor.",
    "eiffel.txt": "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in "
    "Paris. It is named after the engineer Gustave Eiffel, whose company built it from 1887 "
    "to 1889.",
    "company-history.txt": "The company was founded in 1998 by Ingrid Berg in Bergen. Its "
    "first product was a weather station for fishing boats, sold to 300 customers.",
    "onboarding.txt": "New employees receive a laptop and a security badge on their first "
    "day. The IT helpdesk can be reached at extension 4455.",
}


@pytest.mark.browser
def test_a_curator_drafts_questions_and_accepts_one_in_the_browser(
    people: Any,
    live_db: Any,
    stack: Any,
    page: Any,
    tmp_path: Path,
) -> None:
    collection = ingest_actions.create_collection(people.carol, "HR handbook", people.hr)
    ingest_actions.upload_documents(
        people.carol,
        collection,
        [
            ingest_actions.IncomingFile(name, io.BytesIO(text.encode()))
            for name, text in PASSAGES.items()
        ],
    )
    wait_for(
        lambda: not Document.objects.exclude(status="ready").exists(),
        timeout=180,
        message="documents to be ready",
    )

    page.goto("/login/")
    page.fill("#id_username", "carol")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.goto("/pilot/")
    page.click("text=Start an empty set")
    page.fill("#gs-new-name", "Drafted HR")
    page.click("text=Create empty golden set")
    page.wait_for_selector("#drafts")
    golden = GoldenSet.objects.get(name="Drafted HR")

    page.select_option("#d-collection", label="HR handbook (HR)")
    page.fill("#d-count", str(len(PASSAGES)))
    page.click("#drafts form button.primary >> nth=0")
    page.wait_for_selector("#draft-batches progress")
    # The answer worker drafts one passage per step; the page reloads when it is done.
    wait_for(
        lambda: DraftBatch.objects.get(golden_set=golden).is_final,
        timeout=600,
        message="the drafts to be written",
    )
    batch = DraftBatch.objects.get(golden_set=golden)
    assert (batch.status, batch.done, batch.error) == (DraftBatchStatus.DONE, len(PASSAGES), "")
    page.wait_for_selector(f"text={batch.done} of {batch.total}", timeout=30_000)
    assert batch.drafted == Draft.objects.filter(golden_set=golden).count()
    assert batch.drafted >= 1, "the small model drafted nothing usable from four passages"
    page.wait_for_selector("#draft-review")
    page.screenshot(path=str(tmp_path / "pilot-drafts.png"), full_page=True)

    first = Draft.objects.filter(golden_set=golden).order_by("created_at", "id").first()
    assert first is not None
    page.fill(f"#a-{first.pk}", "edited by carol")
    page.select_option(f"#dec-{first.pk}", "accept")
    page.click("text=Apply decisions")
    page.wait_for_selector("text=1 question accepted into version 2")
    latest = golden.latest
    assert latest is not None and latest.number == 2
    (accepted,) = latest.questions.all()
    assert (accepted.question, accepted.expected_answer) == (first.question, "edited by carol")
    assert accepted.expected_sources[0]["document"] in PASSAGES
