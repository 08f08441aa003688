"""A real browser whose language is Norwegian (Debian's Chromium with the nb-NO locale, so
it sends Accept-Language: nb-NO) against the real server and workers: the sign-in page,
the Ask page, the answer's status lines from the page script, and a refusal are all in
Norwegian Bokmål; picking English in the header turns the pages English."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ingest import actions as ingest_actions
from tests.conftest import PASSWORD
from tests.support.browser import browser_context, save_screenshots

pytestmark = [pytest.mark.services, pytest.mark.browser]


@pytest.fixture
def norwegian_page(stack: Any, monkeypatch: Any) -> Iterator[Any]:
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with browser_context(stack.url, locale="nb-NO") as context:
        yield context.new_page()


def test_a_norwegian_browser_gets_norwegian_pages_and_a_norwegian_refusal(
    people: Any, live_db: Any, stack: Any, norwegian_page: Any
) -> None:
    page = norwegian_page
    ingest_actions.create_collection(people.carol, "Personalhåndbok", people.hr)

    page.goto("/")
    assert "/login/" in page.url
    assert page.locator("html").get_attribute("lang") == "nb"
    assert page.locator("main h1").text_content() == "Logg inn"
    assert page.locator("label[for=id_password]").text_content() == "Passord"
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_selector("#question")
    assert page.locator("main h1").text_content() == "Spør dokumentene dine"
    assert page.locator("#ask-button").text_content() == "Spør"
    assert "Samlinger" in page.locator("header nav").text_content()
    assert "Personalhåndbok" in page.locator("#searched").text_content()
    save_screenshots(page, "ask-nb")

    page.fill("#question", "Hvor mange feriedager får nye ansatte i kommunen?")
    page.click("#ask-button")
    page.wait_for_selector("#live-answer a.followup", timeout=120_000)
    assert (
        page.locator("#live-text").text_content()
        == "Jeg fant ikke dette i dokumentene du har tilgang til."
    )
    # The page script's own words come from the Norwegian JavaScript catalogue.
    assert page.locator("a.followup").text_content() == "Still et oppfølgingsspørsmål"
    hint = page.locator("#refusal-hint").text_content()
    assert hint.startswith("Ingen utdrag i Personalhåndbok passet"), hint

    # The picker in the header: English from now on, on every page.
    page.select_option("#language-pick", "en")
    page.click("form.language button")
    page.wait_for_selector("#question")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("main h1").first.text_content() == "Ask your documents"
