"""A real browser (Debian's Chromium through Playwright) against the real server: an
employee signs in, asks, watches the answer arrive token by token, then a citation."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ingest import actions as ingest_actions
from tests.conftest import DOCUMENTS, PASSWORD
from tests.support.browser import save_screenshots
from tests.support.stack import wait_for

pytestmark = [pytest.mark.services, pytest.mark.browser]


def test_employee_sees_tokens_stream_in_and_a_citation(
    people: Any, live_db: Any, stack: Any, page: Any
) -> None:
    collection = ingest_actions.create_collection(people.carol, "HR policies", people.hr)
    with open(DOCUMENTS / "pdf" / "fake-memo.pdf", "rb") as handle:
        (result,) = ingest_actions.upload_documents(
            people.carol, collection, [ingest_actions.IncomingFile("fake-memo.pdf", handle)]
        )
    document = result.document
    wait_for(
        lambda: document.__class__.objects.get(pk=document.pk).status == "ready",
        timeout=120,
        message="the memo to be ingested",
    )

    page.goto("/")
    assert "/login/" in page.url
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_selector("#question")
    assert page.locator(".demo-banner").is_visible()  # the small model says so
    assert "HR policies" in page.locator("#searched").text_content()
    save_screenshots(page, "ask")

    page.fill("#question", "How many laptops were delivered, and when?")
    page.click("#ask-button")

    # Sample the answer while it streams: it must grow in several steps, not appear at once.
    lengths: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = page.locator("#live-text").text_content() or ""
        if not lengths or len(text) != lengths[-1]:
            lengths.append(len(text))
        if page.locator("#live-sources li a").count():
            break
        time.sleep(0.03)
    growing = [n for n in lengths if n > 0]
    assert len(growing) >= 3, f"the answer did not stream in: lengths seen {lengths}"

    link = page.locator("#live-sources li a").first
    assert "fake-memo" in link.text_content()
    assert "page 1" in link.text_content()
    link.click()
    page.wait_for_selector(".chunk.focus")
    assert "laptops" in page.locator(".chunk.focus").text_content()
