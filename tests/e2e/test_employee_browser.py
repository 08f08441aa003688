"""The employee's experience in a real browser, against the real server and workers:
sign in, ask, copy the answer with its sources, rate it and delete the conversation with
the keyboard alone (Tab, typing, Space and Enter; no clicks); the curator reads the
feedback; a past answer's link opens for its asker only. On the way, axe-core checks the
Ask, question, collection, audit and feedback pages (no serious or critical violation),
and each is photographed at phone and desktop width without sideways scrolling."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.audit.models import Action, AuditEvent
from inference.models import Feedback, Question
from ingest import actions as ingest_actions
from tests.conftest import DOCUMENTS, PASSWORD
from tests.support.browser import assert_accessible, browser_context, save_screenshots, tab_to
from tests.support.stack import wait_for

pytestmark = [pytest.mark.services, pytest.mark.browser]

QUESTION = "How many laptops were delivered, and when?"


@pytest.fixture
def allow_orm_in_playwright(monkeypatch: Any) -> None:
    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls
    # are still plain synchronous ones.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def _sign_in_with_form(context: Any, username: str) -> Any:
    page = context.new_page()
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(lambda url: "/login/" not in url)
    return page


def test_employee_asks_rates_copies_and_deletes_by_keyboard_and_the_pages_pass_axe(
    people: Any, live_db: Any, stack: Any, allow_orm_in_playwright: Any
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

    with browser_context(stack.url, permissions=["clipboard-read", "clipboard-write"]) as ctx:
        page = ctx.new_page()
        # Sign in by keyboard: the username field has the focus when the page opens.
        page.goto("/")
        tab_to(page, "#id_username")
        page.keyboard.type("alice")
        tab_to(page, "#id_password")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_selector("#question")
        assert_accessible(page, "the Ask page")
        save_screenshots(page, "employee-ask")

        tab_to(page, "#question")
        page.keyboard.type(QUESTION)
        tab_to(page, "#ask-button")
        page.keyboard.press("Enter")
        page.wait_for_selector("#live-answer .answer-tools form.feedback", timeout=300_000)
        question = Question.objects.filter(user=people.alice).latest("created_at")
        assert question.status == "done"

        # Copy: the answer and its numbered sources as plain text.
        tab_to(page, "#live-answer .copy-answer")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "document.querySelector('#live-answer .copy-status').textContent.length > 0"
        )
        copied = page.evaluate("navigator.clipboard.readText()")
        assert QUESTION in copied
        assert question.answer.split("[")[0].strip()[:30] in copied
        assert "[1] fake-memo" in copied and "/documents/" in copied, copied

        # Feedback without reloading the page: a comment, share the question, thumbs up.
        tab_to(page, "#live-answer textarea[name=comment]")
        page.keyboard.type("Right, but say the date first")
        tab_to(page, "#live-answer input[name=share_question]")
        page.keyboard.press("Space")
        tab_to(page, "#live-answer button.thumb[value=yes]")
        url_before = page.url
        page.keyboard.press("Enter")
        page.wait_for_selector("#live-answer button.thumb[value=yes][aria-pressed=true]")
        assert page.url == url_before  # no reload
        feedback = Feedback.objects.get(question=question)
        assert (feedback.helpful, feedback.share_question) == (True, True)
        assert feedback.comment == "Right, but say the date first"
        assert_accessible(page, "the Ask page with an answer")

        # The answer's own link: the question page, which passes axe as well.
        tab_to(page, "#live-answer .permalink", backwards=True)
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/questions/{question.pk}/")
        page.wait_for_selector(".answer-tools form.feedback button[aria-pressed=true]")
        assert_accessible(page, "the question page")
        save_screenshots(page, "employee-question")
        permalink = page.url

    # The curator reads the feedback, with the question alice shared.
    with browser_context(stack.url) as ctx:
        carol = _sign_in_with_form(ctx, "carol")
        carol.goto("/feedback/")
        item = carol.locator(f"#feedback-{feedback.pk}")
        assert "Right, but say the date first" in item.text_content()
        assert QUESTION in item.text_content()
        assert_accessible(carol, "the curators' feedback page")
        save_screenshots(carol, "curator-feedback")
        carol.goto(f"/collections/{collection.pk}/")
        assert_accessible(carol, "the collection page")
        save_screenshots(carol, "collection")

    with browser_context(stack.url) as ctx:
        dave = _sign_in_with_form(ctx, "dave")
        dave.goto("/audit/")
        assert_accessible(dave, "the audit page")
        save_screenshots(dave, "audit")

    # A past answer's link opens for its asker only: bob gets the 404 of a missing id.
    with browser_context(stack.url) as ctx:
        bob = _sign_in_with_form(ctx, "bob")
        theirs = bob.goto(permalink)
        theirs_body = theirs.text()
        missing = bob.goto("/questions/987654321/")
        assert theirs.status == missing.status == 404
        assert theirs_body == missing.text()

    # alice deletes the conversation, by keyboard, after confirming.
    with browser_context(stack.url) as ctx:
        page = _sign_in_with_form(ctx, "alice")
        page.goto(permalink)
        page.once("dialog", lambda dialog: dialog.accept())
        tab_to(page, "#conversation-delete button")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{stack.url}/")
        assert page.goto(permalink).status == 404
    assert not Question.objects.filter(pk=question.pk).exists()
    (row,) = AuditEvent.objects.filter(action=Action.CONVERSATION_DELETE)
    assert row.details["questions"] == 1 and QUESTION not in str(row.details)
