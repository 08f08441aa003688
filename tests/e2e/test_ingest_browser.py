"""A curator uploads a whole folder in a real browser (Debian's Chromium): the files go up
in parts, keep their folders, refusals are listed with reasons, and the table follows
each file to ready."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest import actions as ingest_actions
from ingest.models import Document
from tests.conftest import DOCUMENTS, PASSWORD
from tests.support.stack import wait_for

pytestmark = [pytest.mark.services, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def page(stack: Any, monkeypatch: Any) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(base_url=stack.url)
        yield context.new_page()
        from django.db import connections

        connections.close_all()
        browser.close()


def test_a_curator_uploads_a_folder_and_watches_it_being_read(
    people: Any, live_db: Any, stack: Any, page: Any, tmp_path: Path
) -> None:
    collection = ingest_actions.create_collection(people.carol, "Folder upload", people.hr)
    folder = tmp_path / "policies"
    (folder / "2024").mkdir(parents=True)
    shutil.copy(DOCUMENTS / "pdf" / "fake-memo.pdf", folder / "2024" / "memo.pdf")
    shutil.copy(DOCUMENTS / "handbook-1p.docx", folder / "handbook.docx")
    shutil.copy(DOCUMENTS / "CantinaBand3.wav", folder / "jingle.wav")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")

    page.goto("/login/")
    page.fill("#id_username", "carol")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    page.goto(f"/collections/{collection.pk}/")
    page.set_input_files("#folder", str(folder))
    page.click("#upload-form button[type=submit]")

    summary = page.locator("#upload-summary")
    summary.wait_for(state="visible", timeout=60_000)
    assert "2 file(s) queued for reading." in summary.inner_text()
    assert "jingle.wav" in summary.inner_text() and "not supported" in summary.inner_text()
    names = sorted(
        Document.objects.filter(collection=collection).values_list("original_name", flat=True)
    )
    assert names == ["policies/2024/memo.pdf", "policies/handbook.docx"]

    # The table follows both files to the end without a reload.
    wait_for(
        lambda: page.locator("tr[data-status=ready]").count() == 2,
        timeout=180,
        message="both rows to show ready",
    )
    assert page.locator("tr[data-document-id] .chunks").first.inner_text().strip() != "0"
