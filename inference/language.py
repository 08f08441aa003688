"""The language of a question and of its answer.

An answer is written in the language the person chose for answers, or else in the
question's own language (detected), or else in the person's interface language. The model
is told so by name ("Answer in Norwegian Bokmål."): the rule "answer in the same language
as the question" alone is not enough for a small model, which drifts back to English.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from ingest import languages as ingest_languages

# Languages the model is told to answer in by name: the interface's (settings.LANGUAGES).
ANSWER_LANGUAGES = {"en": "English", "nb": "Norwegian Bokmål", "de": "German"}


def iso_code(code: str) -> str:
    # Bokmål is what Norwegian means here; "no" and "nb" must land in one group.
    return "nb" if code == "no" else code.split("-")[0]


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text``'s language, or "" when it is too short to tell (the same
    fixed-seed detection that picks a passage's stemming: ``ingest.languages.detect``)."""
    return iso_code(ingest_languages.detect(text))


def answer_language(text: str, chosen: str = "", interface: str = "") -> str:
    """The language to answer ``text`` in: ``chosen`` (the person's answer language), else
    the question's, else ``interface`` (the person's page language), else the default."""
    if chosen:
        return chosen
    detected = detect_language(text)
    if detected == "da":
        # langdetect reads short Bokmål as Danish ("Hvor mange feriedager får nye
        # ansatte?"), and the appliance speaks no Danish: Bokmål is the nearest it has.
        detected = "nb"
    return detected or interface or settings.LANGUAGE_CODE


def for_person(text: str, person: Any) -> str:
    """``answer_language`` for a question ``person`` asked (their saved choices)."""
    return answer_language(
        text,
        chosen=getattr(person, "answer_language", "") or "",
        interface=getattr(person, "language", "") or "",
    )


def instruction(code: str) -> str:
    """The line that tells the model which language to answer in; none for a language
    it is not told by name (the general rule of the instructions applies)."""
    name = ANSWER_LANGUAGES.get(code)
    return f"Answer in {name}." if name else ""
