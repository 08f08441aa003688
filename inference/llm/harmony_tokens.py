"""gpt-oss replies read from token ids: which text is structure is decided by the tokenizer.

:class:`inference.llm.harmony.HarmonyStreamParser` finds harmony's markers in text. That
is all an OpenAI-compatible server gives us, but it has a hole: gpt-oss can write the
*characters* ``<|channel|>final<|message|>`` with ordinary tokens (quoting a document
about harmony, or by chance), and a text parser then opens the final channel, showing
reasoning to the person, or cuts the answer short. In the o200k_harmony vocabulary each
marker is one special token with its own id, and llama.cpp tells us every token's id, so
the local backend can do better: it looks up the markers' ids in the loaded model's
vocabulary and passes each special token to :meth:`HarmonyTokenParser.feed_marker` and
all other text to :meth:`HarmonyTokenParser.feed_text`.

The contract:

* Only :meth:`~HarmonyTokenParser.feed_marker` changes structure. Text is the content of
  the open message, words of a header (role, channel, recipient), or, between messages,
  ignored. Whatever characters it holds, including marker spellings, it stays text: in
  the body of a message it is that message's content, verbatim.
* The deltas, :attr:`~HarmonyTokenParser.saw_final` and
  :attr:`~HarmonyTokenParser.finished` mean what they mean for ``HarmonyStreamParser``
  (one stream, same reply, same result, when the markers in that text were real tokens):
  ``final`` is the answer, ``analysis`` reasoning, other channels neither; two messages on
  one channel are joined by a blank line; a missing ``<|end|>`` is implied by the next
  ``<|start|>`` or ``<|channel|>``.
* Nothing is held back: body text comes out in the call that brings it (no marker can
  hide in text, so there is nothing to wait for).
* Special tokens that are not harmony markers (``<|startoftext|>``, the reserved ones)
  are dropped: they are not text, and they carry no structure.
"""

from __future__ import annotations

from typing import Final, Literal

from inference.llm.harmony import (
    CALL,
    CHANNEL,
    CONSTRAIN,
    END,
    ENDOFTEXT,
    FINAL,
    MESSAGE,
    RETURN,
    START,
    Delta,
    ReplyState,
    header_fields,
)

__all__ = ["MARKERS", "REQUIRED_MARKERS", "HarmonyTokenParser"]

#: The markers the parser understands, as the vocabulary spells their tokens.
MARKERS: Final[tuple[str, ...]] = (START, CHANNEL, MESSAGE, END, RETURN, CALL, CONSTRAIN, ENDOFTEXT)
#: Without these as single tokens a model cannot speak harmony by ids at all.
REQUIRED_MARKERS: Final[tuple[str, ...]] = (START, CHANNEL, MESSAGE, END, RETURN)

_STOPS: Final = frozenset({RETURN, CALL, ENDOFTEXT})
_CLOSERS: Final = frozenset({END, RETURN, CALL, ENDOFTEXT})
_MESSAGE_SEPARATOR: Final = "\n\n"

_State = Literal["header", "body", "between"]
# Which part of a header the next text belongs to: before <|channel|>, after it, or after
# <|constrain|> (the content type, which we do not need).
_HeaderPart = Literal["role", "channel", "type"]


class HarmonyTokenParser(ReplyState):
    """Incremental parser for one gpt-oss reply (what follows ``<|start|>assistant``),
    fed special tokens and ordinary text apart. See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._part: _HeaderPart = "role"
        self._role: list[str] = []
        self._channel_words: list[str] = []

    def feed_text(self, text: str) -> list[Delta]:
        """Text of ordinary tokens: content, or header words; never structure."""
        self._check_open()
        if self._state == "body":
            return self._emit(text)
        if self._state == "header":
            if self._part == "role":
                self._role.append(text)
            elif self._part == "channel":
                self._channel_words.append(text)
        return []

    def feed_marker(self, marker: str) -> list[Delta]:
        """One special token, by its text (``<|channel|>``): the only thing that moves the
        parser from header to body to the next message."""
        self._check_open()
        if marker == START:
            self._begin_header()
        elif marker == CHANNEL:
            if self._state != "header":
                # A header with no <|end|><|start|> before it: the role is the assistant's.
                self._begin_header()
            self._part = "channel"
        elif marker == CONSTRAIN:
            if self._state == "header":
                self._part = "type"
            # elsewhere a stray <|constrain|> means nothing: dropped
        elif marker == MESSAGE:
            if self._state == "header":
                self._open_message()
            # inside a body or between messages a stray <|message|> is dropped
        elif marker in _CLOSERS:
            self._state = "between"
            self._channel = None
            self._finished = self._finished or marker in _STOPS
        return []

    def close(self) -> list[Delta]:
        """End of the stream. Nothing is ever held back, so nothing is flushed; idempotent."""
        self._closed = True
        return []

    # -- internals ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("HarmonyTokenParser fed after close()")

    def _begin_header(self) -> None:
        self._state = "header"
        self._part = "role"
        self._role = []
        self._channel_words = []
        self._channel = None
        self._recipient = None

    def _open_message(self) -> None:
        channel, recipient = header_fields("".join(self._role), "".join(self._channel_words))
        self._state = "body"
        self._channel = channel
        self._recipient = recipient
        self._needs_separator = channel is not None and channel in self._channels_with_text
        if channel == FINAL:
            self._saw_final = True

    def _emit(self, text: str) -> list[Delta]:
        if not text or self._channel is None:
            return []
        if self._needs_separator:
            text = _MESSAGE_SEPARATOR + text
            self._needs_separator = False
        self._channels_with_text.add(self._channel)
        return [Delta(self._channel, text)]
