"""Small text helpers shared by the parsers."""

from __future__ import annotations

import re

_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b]+")
_SENTENCE_END = (".", "!", "?", ":", ";", ",", ")", "]", '"', "'", "\u201d")


def clean(text: str) -> str:
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u00ad", "").replace("\ufffe", "").replace("\uffff", "")
    return _SPACES.sub(" ", text).strip()


def looks_like_heading(line: str) -> bool:
    """A short line without closing punctuation, mostly letters: a likely section title."""
    line = line.strip()
    if not 2 <= len(line) <= 80 or line.endswith(_SENTENCE_END):
        return False
    letters = sum(ch.isalpha() for ch in line)
    if letters < 0.6 * len(line.replace(" ", "")):
        return False
    words = line.split()
    return 1 <= len(words) <= 10 and (line[0].isupper() or line[0].isdigit())
