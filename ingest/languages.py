"""Which PostgreSQL text search configuration reads a text: stemming per language.

A collection names one configuration for all its passages ("english", "norwegian", …), or
``AUTO``: then each passage is stemmed in the language detected in it, and a question in
the language detected in the question (``question_configurations``). Norwegian passages
are then found by Norwegian word forms ("ferien", "feriedager" → "feri…") and English ones
by English forms, side by side in one collection.

Detection is langdetect with a fixed seed, so the same text always gets the same
configuration; a text too short to tell gets ``FALLBACK``.
"""

from __future__ import annotations

from functools import cache
from typing import Any

AUTO = "auto"
FALLBACK = "simple"  # lower-cases and nothing else: names and numbers still match

# langdetect's codes -> PostgreSQL's snowball configurations. Norwegian text is often
# taken for Danish (the written languages are close, and so are their stemmers).
CONFIGURATIONS = {
    "en": "english",
    "no": "norwegian",
    "nb": "norwegian",
    "nn": "norwegian",
    "da": "danish",
    "sv": "swedish",
    "de": "german",
    "nl": "dutch",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "fi": "finnish",
}
# Languages whose texts langdetect confuses: a question in one is read in the other too.
NEIGHBOURS = {"norwegian": ("danish",), "danish": ("norwegian",)}
# Every configuration a passage of an AUTO collection may have been stemmed with.
ALL = sorted({*CONFIGURATIONS.values(), FALLBACK})

# Fewer letters than this and langdetect guesses ("Hei?" comes out German).
MIN_LETTERS = 8
MIN_PROBABILITY = 0.5
SEED = 0
CHARS = 500  # the start tells; the rest only costs time
TRIALS = 3


@cache
def _factory() -> Any:
    # Our own factory with a fixed seed: langdetect is random by default.
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.seed = SEED
    return factory


def detect(text: str) -> str:
    """langdetect's code for ``text``'s language ("en", "no", "de"), or "" when it is too
    short or too mixed to tell."""
    from langdetect.lang_detect_exception import LangDetectException

    if sum(c.isalpha() for c in text[:CHARS]) < MIN_LETTERS:
        return ""
    detector = _factory().create()
    detector.n_trial = TRIALS
    detector.append(text[:CHARS])
    try:
        best = detector.get_probabilities()[0]
    except (LangDetectException, IndexError):
        return ""
    return best.lang if best.prob >= MIN_PROBABILITY else ""


def configuration_of(text: str) -> str:
    """The configuration that stems ``text`` in its own language (``FALLBACK`` when its
    language is not told or has no stemmer)."""
    return CONFIGURATIONS.get(detect(text), FALLBACK)


def passage_configuration(collection_language: str, text: str) -> str:
    """The configuration of one passage: its collection's, or its own when the collection
    is ``AUTO``."""
    return configuration_of(text) if collection_language == AUTO else collection_language


def question_configurations(question: str) -> list[str]:
    """The configurations a question is read with in an ``AUTO`` collection: its own
    language's (word forms of that language), and ``FALLBACK`` (names and numbers as
    written, which passages in other languages share). A question too short to tell is read
    in every language a passage may have."""
    found = CONFIGURATIONS.get(detect(question))
    if not found:
        return ALL
    return sorted({found, *NEIGHBOURS.get(found, ()), FALLBACK})
