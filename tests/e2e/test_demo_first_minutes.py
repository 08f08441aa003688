"""The first ten minutes, as a new user tries them: the demo organisation loaded the way
``deploy/up`` loads it, ingested by the real worker, then alice and bob in a real browser.

alice (HR) sees what she can ask, asks a suggested question and the annual-leave question
and gets the handbook's number with its page; bob (Finance) asking the same is refused
without any hint of HR's documents."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.core.management import call_command

from appliance.web.management.commands import load_demo
from ingest.models import Document
from tests.support.browser import save_screenshots
from tests.support.stack import wait_for

pytestmark = [pytest.mark.services, pytest.mark.browser]

PASSWORDS = {username: password for username, password, *_ in load_demo.DEMO_PEOPLE}
LEAVE = "How many days of annual leave do employees get?"


def sign_in(page: Any, username: str) -> None:
    page.context.clear_cookies()
    page.goto("/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORDS[username])
    page.click("main button[type=submit]")
    page.wait_for_selector("#question")


def ask(page: Any, question: str) -> tuple[str, list[str]]:
    """The finished answer's text and its source links."""
    page.goto("/")
    page.fill("#question", question)
    page.click("#ask-button")
    # answer.js adds the follow-up link when the answer has ended.
    page.wait_for_selector("#live-answer a.followup", timeout=600_000)
    text = page.locator("#live-text").text_content() or ""
    sources = [a.text_content() or "" for a in page.locator("#live-sources li a").all()]
    return text, sources


def repeated_sentence(text: str) -> str | None:
    """A sentence the answer says twice or more: what a looping small model does."""
    seen: set[str] = set()
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        key = " ".join(sentence.lower().split())
        if len(key) > 20 and key in seen:
            return sentence
        seen.add(key)
    return None


def test_alice_and_bob_in_the_demo_organisation(live_db: Any, stack: Any, page: Any) -> None:
    call_command("load_demo", stdout=io.StringIO())
    wait_for(
        lambda: not Document.objects.exclude(status__in=["ready", "failed"]).exists(),
        timeout=900,
        message="the demo documents to be ingested",
    )
    assert not Document.objects.filter(status="failed").exists()

    sign_in(page, "alice")
    searched = page.locator("#searched").text_content() or ""
    assert "Staff handbook and policies" in searched
    suggestions = page.locator("#suggestions button")
    assert suggestions.count() == 3
    save_screenshots(page, "demo-ask-alice")

    text, sources = ask(page, LEAVE)
    assert re.search(r"\b27\b", text), text
    assert repeated_sentence(text) is None, text
    assert any("employee-handbook" in s.lower() and "page 3" in s for s in sources), sources
    save_screenshots(page, "demo-answer-alice")

    # Another suggested question, and one only the scanned page of the minutes answers
    # (read by OCR): each answered with a source, neither looping.
    for question in (
        "What are the flexitime core hours?",
        "How many electric cars will the home care service lease?",
    ):
        text, sources = ask(page, question)
        assert sources and repeated_sentence(text) is None, (question, text)

    sign_in(page, "bob")
    assert "Staff handbook" not in (page.locator("#searched").text_content() or "")
    text, sources = ask(page, LEAVE)
    assert text.startswith("I could not find this"), text
    assert sources == []
    hint = page.locator("#refusal-hint").text_content() or ""
    assert "Finance and travel" in hint
    for hidden in ("Staff handbook", "HR", "handbook", "IT services"):
        assert hidden not in hint and hidden not in text, hidden
    save_screenshots(page, "demo-refusal-bob")
