"""A real browser asks about one whole document: the employee picks it on the Ask page,
watches reading progress, and gets an answer whose sources are that document's pages."""

from __future__ import annotations

from typing import Any

import pytest

from ingest import actions as ingest_actions
from ingest.models import Document
from tests.conftest import DOCUMENTS, PASSWORD
from tests.support.stack import wait_for

pytestmark = [pytest.mark.services, pytest.mark.browser]


# Every text the status line shows, recorded as it changes (progress may flash by).
RECORD_STATUS = """() => {
  window.statuses = [];
  const status = document.getElementById("ask-status");
  new MutationObserver(() => window.statuses.push(status.textContent))
    .observe(status, { childList: true, characterData: true, subtree: true });
}"""


def test_employee_picks_a_document_and_sees_it_read_and_cited(
    people: Any, live_db: Any, stack: Any, page: Any
) -> None:
    collection = ingest_actions.create_collection(people.carol, "HR policies", people.hr)
    for name in ("pdf/fake-memo.pdf", "handbook-1p.docx"):
        with open(DOCUMENTS / name, "rb") as handle:
            ingest_actions.upload_documents(
                people.carol, collection, [ingest_actions.IncomingFile(name.split("/")[-1], handle)]
            )
    wait_for(
        lambda: not Document.objects.exclude(status="ready").exists(),
        timeout=120,
        message="the documents to be read",
    )
    memo = Document.objects.get(title="fake-memo")

    page.goto("/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_selector("#question")
    page.click("#document-pick summary")
    page.select_option("#document_id", str(memo.pk))
    page.fill("#question", "What is this document about?")
    page.evaluate(RECORD_STATUS)
    page.click("#ask-button")

    page.wait_for_selector("#live-sources li a", timeout=240_000)
    statuses = page.evaluate("window.statuses")
    assert any("reading part 1 of 1" in s for s in statuses), statuses
    assert page.locator("#live-progress").is_hidden()
    links = page.locator("#live-sources li a")
    assert all("fake-memo, page 1" in links.nth(i).text_content() for i in range(links.count()))
    assert "could not find" not in (page.locator("#live-text").text_content() or "")
