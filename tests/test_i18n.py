"""The interface in English and Norwegian Bokmål: the browser's Accept-Language picks the
language until a person chooses one, the choice follows the person to every browser (and
is audited), and the refusal is given in the language of the question."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client

from appliance.accounts.models import User
from appliance.audit.models import Action, AuditEvent
from inference import answering, prompts
from inference import language as languages
from inference.conversation import History
from inference.models import Question, QuestionStatus
from inference.pilot.engine import is_refusal
from ingest import actions as ingest_actions
from tests.conftest import ClientFor

pytestmark = pytest.mark.django_db

NB_REFUSAL = "Jeg fant ikke dette i dokumentene du har tilgang til."
DE_REFUSAL = "Ich konnte dies in den Dokumenten, auf die Sie Zugriff haben, nicht finden."


def test_the_sign_in_page_follows_the_browsers_language() -> None:
    norwegian = Client().get("/login/", HTTP_ACCEPT_LANGUAGE="nb-NO,nb;q=0.9,en;q=0.5")
    page = norwegian.content.decode()
    assert norwegian.status_code == 200
    assert '<html lang="nb">' in page
    assert "Logg inn" in page and "Brukernavn" in page and "Passord" in page
    assert "Sign in" not in page
    assert norwegian["Content-Language"] == "nb"
    assert "Accept-Language" in norwegian["Vary"]

    # No Accept-Language, or one the appliance does not speak: English, as before.
    for headers in ({}, {"HTTP_ACCEPT_LANGUAGE": "fr-FR,fr;q=0.9"}):
        page = Client().get("/login/", **headers).content.decode()
        assert '<html lang="en">' in page and "Sign in" in page and "Logg inn" not in page


def test_a_failed_sign_in_is_explained_in_norwegian() -> None:
    response = Client().post(
        "/login/",
        {"username": "nobody", "password": "wrong"},
        HTTP_ACCEPT_LANGUAGE="nb",
    )
    assert "Brukernavnet og passordet stemmer ikke" in response.content.decode()


def test_the_language_a_person_picks_follows_them_to_a_new_session(
    people: Any, signed_in: ClientFor
) -> None:
    client = signed_in(people.alice)
    assert "Ask your documents" in client.get("/").content.decode()

    response = client.post("/language/", {"language": "nb", "next": "/collections/"})
    assert response.status_code == 302 and response["Location"] == "/collections/"
    assert User.objects.get(pk=people.alice.pk).language == "nb"
    row = AuditEvent.objects.get(action=Action.SETTINGS_CHANGE, subject="alice")
    assert row.actor == "alice" and row.details == {"person": {"language": "nb"}}

    # Another browser, which asks for English: the person's choice wins once signed in.
    fresh = signed_in(people.alice, HTTP_ACCEPT_LANGUAGE="en")
    assert fresh.session.session_key != client.session.session_key
    page = fresh.get("/").content.decode()
    assert '<html lang="nb">' in page
    assert "Spør dokumentene dine" in page and "Samlinger" in page and "Logg ut" in page

    # Choosing the same language again changes nothing and audits nothing.
    client.post("/language/", {"language": "nb"})
    assert AuditEvent.objects.filter(action=Action.SETTINGS_CHANGE).count() == 1


def test_a_language_not_offered_is_refused_plainly(people: Any, signed_in: ClientFor) -> None:
    client = signed_in(people.alice)
    response = client.post("/language/", {"language": "xx", "next": "/"}, follow=True)
    assert "Choose one of the languages in the list." in response.content.decode()
    assert User.objects.get(pk=people.alice.pk).language == ""
    assert not AuditEvent.objects.filter(action=Action.SETTINGS_CHANGE).exists()
    # Somewhere else than this site is never where the picker sends a person.
    response = client.post("/language/", {"language": "en", "next": "https://elsewhere.example/"})
    assert response["Location"] == "/"


def test_someone_not_signed_in_keeps_their_choice_in_a_cookie() -> None:
    client = Client()
    response = client.post("/language/", {"language": "nb", "next": "/login/"})
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert response.cookies["django_language"].value == "nb"
    assert "Logg inn" in client.get("/login/").content.decode()
    assert not AuditEvent.objects.filter(action=Action.SETTINGS_CHANGE).exists()


def test_the_answer_language_is_saved_on_the_language_page(
    people: Any, signed_in: ClientFor
) -> None:
    client = signed_in(people.alice)
    page = client.get("/language/").content.decode()
    assert 'name="answer_language"' in page and "The language of the question" in page
    client.post("/language/", {"language": "en", "answer_language": "nb", "next": "/language/"})
    alice = User.objects.get(pk=people.alice.pk)
    assert (alice.language, alice.answer_language) == ("en", "nb")
    assert languages.for_person("How many days of annual leave do I get?", alice) == "nb"
    assert Client().get("/language/")["Location"].startswith("/login/")


def test_the_answer_follows_the_questions_language_unless_the_person_chose_one() -> None:
    assert languages.answer_language("Hvor mange feriedager får nye ansatte i kommunen?") == "nb"
    # langdetect calls this one Danish; the appliance answers it in Bokmål.
    assert languages.detect_language("Hvor mange feriedager får nye ansatte?") == "da"
    assert languages.answer_language("Hvor mange feriedager får nye ansatte?") == "nb"
    assert languages.answer_language("How many days of annual leave do new staff get?") == "en"
    assert languages.answer_language("Wie viele Urlaubstage bekommen neue Mitarbeiter?") == "de"
    assert languages.answer_language("Ferie?", interface="nb") == "nb"  # too short to tell
    assert languages.answer_language("Ferie?") == "en"
    assert languages.answer_language("How many days of leave?", chosen="nb") == "nb"

    message = prompts.user_message("Hvor mange feriedager får nye ansatte?", [], (), "nb")
    assert message.endswith(
        "Question: Hvor mange feriedager får nye ansatte?\nAnswer in Norwegian Bokmål."
    )
    assert prompts.user_message("Hva?", [], ()).endswith("Question: Hva?")


def test_the_refusal_exists_in_both_languages_and_the_pilot_counts_both() -> None:
    assert prompts.not_found("en") == "I could not find this in the documents you have access to."
    assert prompts.not_found("nb") == NB_REFUSAL
    assert prompts.not_found("de") == DE_REFUSAL
    assert prompts.not_found("fr") == prompts.not_found("en")  # no catalogue: English
    for sentence in prompts.refusal_sentences():
        assert is_refusal(sentence)
    assert {NB_REFUSAL, DE_REFUSAL} <= set(prompts.refusal_sentences())
    assert not is_refusal("Nye ansatte får 25 feriedager [1].")


@pytest.mark.services
def test_a_norwegian_question_is_refused_in_norwegian_and_stays_so(
    people: Any, signed_in: ClientFor
) -> None:
    ingest_actions.create_collection(None, "Personalhåndbok", people.hr)
    asked = {}
    for text in ("Hvor mange feriedager får nye ansatte i kommunen?", "How many days of leave?"):
        question = Question.objects.create(
            user=people.alice, text=text, status=QuestionStatus.RUNNING
        )
        answering.refuse(question, [], History(), time.monotonic())
        asked[text] = Question.objects.get(pk=question.pk)
    norwegian, english = asked.values()
    assert norwegian.answer == NB_REFUSAL and norwegian.grounded is False
    assert english.answer == prompts.NOT_FOUND

    # Shown as given, whatever the page language; the hint around it follows the page.
    client = signed_in(people.alice)
    client.post("/language/", {"language": "nb"})
    page = client.get(f"/questions/{norwegian.pk}/").content.decode()
    assert NB_REFUSAL in page
    assert "Ingen utdrag i Personalhåndbok passet" in page
    page = client.get(f"/questions/{english.pk}/").content.decode()
    assert prompts.NOT_FOUND in page


@pytest.mark.parametrize(
    "header", ["no", "nn-NO,nn;q=0.9", "no-NO,en;q=0.5", "nb-NO", "da,nb;q=0.8"]
)
def test_browsers_that_say_norwegian_otherwise_get_bokmal(header: str) -> None:
    page = Client().get("/login/", HTTP_ACCEPT_LANGUAGE=header).content.decode()
    assert '<html lang="nb">' in page and "Logg inn" in page


def test_the_auditor_and_the_operator_read_their_pages_in_norwegian(
    people: Any, signed_in: ClientFor
) -> None:
    signed_in(people.alice).post("/language/", {"language": "nb"})
    audit = signed_in(people.dave, HTTP_ACCEPT_LANGUAGE="nb").get("/audit/").content.decode()
    assert "Revisjonslogg" in audit and "Endret en innstilling" in audit
    assert "Changed a setting" not in audit
    people_page = signed_in(people.erin, HTTP_ACCEPT_LANGUAGE="nb").get("/operator/")
    page = people_page.content.decode()
    assert "Personer og avdelinger" in page and "kurator i HR" in page


def test_a_german_browser_gets_german_pages() -> None:
    page = Client().get("/login/", HTTP_ACCEPT_LANGUAGE="de-AT,de;q=0.9").content.decode()
    assert '<html lang="de">' in page and "Anmelden" in page and "Passwort" in page


def test_an_answer_that_fails_is_explained_in_the_askers_language(people: Any) -> None:
    User.objects.filter(pk=people.alice.pk).update(language="nb")
    question = Question.objects.create(
        user=User.objects.get(pk=people.alice.pk), text="Hva?", status=QuestionStatus.RUNNING
    )
    answering.finish_with_error(question, answering.NOT_PRODUCED, kind="TimeoutError")
    question.refresh_from_db()
    assert question.error == "Svaret kunne ikke lages (TimeoutError)."
    row = AuditEvent.objects.get(action=Action.ANSWER, object_id=str(question.pk))
    assert row.details["error"] == "The answer could not be produced (TimeoutError)."
