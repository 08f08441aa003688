"""Why a document failed, in one word, for metrics (``appliance_parse_failures_total``).

The reason a curator reads is a sentence written for them (it names the file type, the
limit, what to do); a dashboard needs a handful of fixed labels instead. The sentences are
matched by the words they are built around, in order, so a new message falls into
``other`` until it is given a rule here (``tests/unit/test_failure_reasons.py``).
"""

from __future__ import annotations

# (label, words: the first label with a word in the lower-cased reason wins)
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("encrypted", ("password", "encrypt", "drm")),
    ("time_limit", ("took longer", "too long")),
    ("worker_lost", ("stopped the ingestion worker", "crashed", "stopped without a reason")),
    ("too_large", ("of memory", "bomb", "far larger", "more than")),
    ("no_text", ("no text could be found", "file is empty")),
    ("cancelled", ("reading of this file was stopped",)),
    ("missing_file", ("missing from the appliance",)),
    ("unexpected", ("unexpected error",)),
    ("unsupported", ("not supported", "not available", "needs libreoffice", "needs pandoc")),
    ("wrong_type", ("rename it", "is named .", "cannot be read as a document")),
    ("refused", ("refused", "nested too deeply", "xml")),
    ("damaged", ("damaged", "malformed", "could not be", "cannot be", "encoding")),
)
LABELS = (*(label for label, _ in RULES), "other")


def reason_label(reason: str) -> str:
    text = reason.lower()
    for label, words in RULES:
        if any(word in text for word in words):
            return label
    return "other"
