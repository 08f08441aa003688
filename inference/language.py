"""The language of a question and of its answer.

An answer is written in the language the person chose for answers, or else in the
question's own language (detected), or else in the person's interface language. The model
is told so by name ("Answer in Norwegian Bokmål."): the rule "answer in the same language
as the question" alone is not enough for a small model, which drifts back to English.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings

# Languages the model is told to answer in by name: the interface's (settings.LANGUAGES).
ANSWER_LANGUAGES = {"en": "English", "nb": "Norwegian Bokmål", "de": "German"}

# Fewer letters than this and langdetect guesses ("Hei?" comes out German): leave it blank.
MIN_LETTERS_TO_DETECT = 8
MIN_DETECT_PROBABILITY = 0.5
DETECT_SEED = 0
DETECT_CHARS = 500
DETECT_TRIALS = 3


@cache
def _detector_factory() -> Any:
    # Our own factory with a fixed seed: langdetect is random by default, and the same
    # text must give the same language every time it is read (a conversation's earlier
    # turns are rebuilt word for word from it).
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.seed = DETECT_SEED
    return factory


def iso_code(code: str) -> str:
    # Bokmål is what Norwegian means here; "no" and "nb" must land in one group.
    return "nb" if code == "no" else code.split("-")[0]


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text``'s language, or "" when it is too short to tell."""
    from langdetect.lang_detect_exception import LangDetectException

    if sum(c.isalpha() for c in text) < MIN_LETTERS_TO_DETECT:
        return ""
    detector = _detector_factory().create()
    # Three random trials instead of langdetect's seven: as accurate on XQuAD's 2,380
    # questions (98%) and 2.5 times faster, which matters for a 5,000-row upload.
    detector.n_trial = DETECT_TRIALS
    detector.append(text[:DETECT_CHARS])  # the start tells; the rest only costs time
    try:
        best = detector.get_probabilities()[0]
    except (LangDetectException, IndexError):
        return ""
    return iso_code(best.lang) if best.prob >= MIN_DETECT_PROBABILITY else ""


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
