"""Prompts for, and replies from, gpt-oss in OpenAI's *harmony* format.

Harmony in one paragraph: a conversation is a run of messages
``<|start|>{header}<|message|>{content}<|end|>``. The header starts with the role
(``system``, ``developer``, ``user``, ``assistant``, or a tool name) and for assistant
messages carries ``<|channel|>{analysis|commentary|final}``, optionally a recipient
``to=functions.name`` (before or after the channel) and a content type
(``<|constrain|>json`` or a bare ``json``). The model continues a prompt that ends in
``<|start|>assistant``, usually with ``<|channel|>analysis<|message|>`` (its reasoning),
then ``<|end|><|start|>assistant<|channel|>final<|message|>`` (the answer) and stops with
``<|return|>``; a tool call stops with ``<|call|>``.

The contract of this module:

* :func:`render_prompt` renders the prompt text. Everything that is the same for every
  question (system + developer message, :func:`render_prefix`) comes first, so a KV cache
  prefix can be reused across questions; the user message (sources + question) comes
  last. Text we put into the prompt can never contain a special token: any ``<|`` in it is
  rewritten to ``< |`` (see :func:`neutralize`), so a document that says ``<|end|>`` cannot
  close our message. Tokenizing with ``special=False`` would not protect us: llama.cpp
  makes ``<|start|>``, ``<|end|>``, ``<|message|>``, ``<|channel|>`` and ``<|constrain|>``
  user-defined tokens of gpt-oss GGUFs, and those are matched in any text.
* :class:`HarmonyStreamParser` turns the generated text, fed piece by piece, into
  :class:`Delta` s tagged with their channel. Only ``final`` is the answer, ``analysis`` is
  reasoning, everything else (``commentary``, tool calls, text outside any recognised
  channel, reported as channel ``""``) is neither. It understands three renderings of the
  same stream and picks one from the first characters:

  - *tokens*: special tokens arrive as text (``<|channel|>analysis<|message|>...``);
    pieces may split a special token at any character;
  - *partly stripped*: llama.cpp always renders ``<|channel|>``, ``<|message|>``,
    ``<|start|>``, ``<|constrain|>`` (and ``<|end|>`` in gpt-oss GGUFs) even when
    detokenizing with ``special=False``, but drops ``<|return|>`` / ``<|call|>``; a
    missing ``<|end|>`` is implied by the next ``<|start|>`` or ``<|channel|>``;
  - *stripped*: no markers at all (``analysis...assistantfinal...``); a message boundary
    is then ``assistant`` immediately followed by a channel name or `` to=``.

  The parser holds back only what could still turn out to be a marker or a header (a
  trailing ``<|chan`` or ``assist``), so answer text streams token by token, and it never
  emits a special token, a fragment of one, or a channel name as text. Two messages on
  the same channel are joined with a blank line. Delta text is raw (not stripped).

  Reading markers from text is the weaker mode: ordinary tokens that spell
  ``<|channel|>final<|message|>`` switch the channel as a real marker would. The local
  backend knows each token's id and uses :mod:`inference.llm.harmony_tokens` instead;
  this parser serves replies that arrive as text only (an OpenAI-compatible server).
* After :meth:`HarmonyStreamParser.close`, :attr:`HarmonyStreamParser.saw_final` says
  whether a final channel was ever opened. A reply that reasoned but never opened
  ``final`` (ran out of tokens, or stopped early) has no answer: callers must treat it as
  a failed answer, not show the reasoning.
* :data:`STOP_TOKENS` are the texts of the tokens a generation loop stops at. In a
  gpt-oss GGUF, llama.cpp's end-of-generation set is ``<|return|>``, ``<|call|>`` and
  ``<|endoftext|>`` (it removes ``<|end|>``, which only closes a message); stopping on
  ``llama_vocab_is_eog`` is therefore equivalent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "ANALYSIS",
    "CHANNELS",
    "COMMENTARY",
    "FINAL",
    "KNOWLEDGE_CUTOFF",
    "REASONING_EFFORTS",
    "SPECIAL_TOKENS",
    "STOP_TOKENS",
    "Delta",
    "HarmonyResult",
    "HarmonyStreamParser",
    "header_fields",
    "neutralize",
    "parse_completion",
    "render_prefix",
    "render_prompt",
    "render_system_message",
]

START: Final = "<|start|>"
END: Final = "<|end|>"
MESSAGE: Final = "<|message|>"
CHANNEL: Final = "<|channel|>"
CONSTRAIN: Final = "<|constrain|>"
RETURN: Final = "<|return|>"
CALL: Final = "<|call|>"
ENDOFTEXT: Final = "<|endoftext|>"

SPECIAL_TOKENS: Final[tuple[str, ...]] = (
    START,
    END,
    MESSAGE,
    CHANNEL,
    CONSTRAIN,
    RETURN,
    CALL,
    ENDOFTEXT,
)
#: Texts of the tokens that end a reply: done (``<|return|>``) or calling a tool.
STOP_TOKENS: Final[tuple[str, ...]] = (RETURN, CALL)

ANALYSIS: Final = "analysis"
COMMENTARY: Final = "commentary"
FINAL: Final = "final"
CHANNELS: Final[tuple[str, ...]] = (ANALYSIS, COMMENTARY, FINAL)

REASONING_EFFORTS: Final[tuple[str, ...]] = ("low", "medium", "high")
#: What gpt-oss was trained with; the reference chat template hard-codes it.
KNOWLEDGE_CUTOFF: Final = "2024-06"
_VALID_CHANNELS: Final = (
    "# Valid channels: analysis, commentary, final. Channel must be included for every message."
)
_ASSISTANT: Final = "assistant"
_MESSAGE_SEPARATOR: Final = "\n\n"


# --------------------------------------------------------------------------- rendering


def neutralize(text: str) -> str:
    """Make ``text`` safe to embed in a prompt that is tokenized with ``special=True``.

    Every special token of the o200k_harmony vocabulary (and its reserved ones) starts
    with ``<|``; a space between the two characters keeps the text readable for the model
    while no tokenizer can turn it into a control token.
    """
    return text.replace("<|", "< |")


def render_system_message(
    identity: str,
    *,
    reasoning_effort: str = "low",
    knowledge_cutoff: str | None = KNOWLEDGE_CUTOFF,
    current_date: str | None = None,
) -> str:
    """The content of the system message, laid out as the gpt-oss chat template does.

    The reference template always adds ``Current date:`` from the clock; we add it only
    when given, so that the prompt prefix (and its KV cache) stays identical all day.
    """
    if reasoning_effort not in REASONING_EFFORTS:
        raise ValueError(
            f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}, "
            f"not {reasoning_effort!r}"
        )
    top = [neutralize(identity.strip())]
    if knowledge_cutoff:
        top.append(f"Knowledge cutoff: {neutralize(knowledge_cutoff)}")
    if current_date:
        top.append(f"Current date: {neutralize(current_date)}")
    sections = [
        "\n".join(line for line in top if line),
        f"Reasoning: {reasoning_effort}",
        _VALID_CHANNELS,
    ]
    return "\n\n".join(section for section in sections if section)


def _message(role: str, content: str, *, channel: str | None = None) -> str:
    header = role if channel is None else f"{role}{CHANNEL}{channel}"
    return f"{START}{header}{MESSAGE}{neutralize(content)}{END}"


def render_prefix(
    system: str,
    *,
    reasoning_effort: str = "low",
    developer: str | None = None,
    knowledge_cutoff: str | None = KNOWLEDGE_CUTOFF,
    current_date: str | None = None,
) -> str:
    """The part of every prompt that does not depend on the question: system + developer.

    ``system`` is the model identity line(s); ``developer`` holds our instructions and is
    rendered under ``# Instructions`` (harmony's "system prompt"). Omitted when empty.
    """
    system_content = render_system_message(
        system,
        reasoning_effort=reasoning_effort,
        knowledge_cutoff=knowledge_cutoff,
        current_date=current_date,
    )
    # The system content is already neutralized piecewise; do not rewrite our own text.
    prefix = f"{START}system{MESSAGE}{system_content}{END}"
    if developer and developer.strip():
        prefix += _message("developer", f"# Instructions\n\n{developer.strip()}")
    return prefix


def render_prompt(
    system: str,
    user: str,
    *,
    reasoning_effort: str = "low",
    developer: str | None = None,
    history: Sequence[tuple[str, str]] = (),
    knowledge_cutoff: str | None = KNOWLEDGE_CUTOFF,
    current_date: str | None = None,
) -> str:
    """The full harmony prompt, ending with ``<|start|>assistant`` for the model to continue.

    ``history`` holds earlier ``(user, assistant_final)`` turns, oldest first. As harmony
    prescribes, earlier reasoning is not replayed and earlier answers end in ``<|end|>``
    (``<|return|>`` is only ever produced by the model).
    """
    parts = [
        render_prefix(
            system,
            reasoning_effort=reasoning_effort,
            developer=developer,
            knowledge_cutoff=knowledge_cutoff,
            current_date=current_date,
        )
    ]
    for past_user, past_answer in history:
        parts.append(_message("user", past_user))
        parts.append(_message(_ASSISTANT, past_answer, channel=FINAL))
    parts.append(_message("user", user))
    parts.append(f"{START}{_ASSISTANT}")
    return "".join(parts)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of generated text and the channel it belongs to (``""``: no channel)."""

    channel: str
    text: str


@dataclass(frozen=True, slots=True)
class HarmonyResult:
    """A whole reply, split by channel. ``final`` is the only text meant for people."""

    final: str
    reasoning: str
    other: dict[str, str] = field(default_factory=dict)
    saw_final: bool = False


_MARKERS: Final[tuple[str, ...]] = SPECIAL_TOKENS
_MARKER_RE: Final = re.compile("|".join(re.escape(marker) for marker in _MARKERS))
_STOPS: Final = frozenset({RETURN, CALL, ENDOFTEXT})
# In stripped mode a new message announces itself as "assistant" + channel or " to=".
_BOUNDARIES: Final[tuple[str, ...]] = tuple(_ASSISTANT + tail for tail in (*CHANNELS, " to="))
_BOUNDARY_RE: Final = re.compile("|".join(re.escape(boundary) for boundary in _BOUNDARIES))
_RECIPIENT_RE: Final = re.compile(r"[A-Za-z0-9_.:\-]*")
_RECIPIENT_CHAR_RE: Final = re.compile(r"[A-Za-z0-9_.:\-]")
_CONTENT_TYPES: Final[tuple[str, ...]] = ("json", "code")

_Mode = Literal["tokens", "stripped"]
_State = Literal["header", "body", "between"]


def _held_suffix(buf: str, patterns: Iterable[str], longest: int) -> int:
    """Length of the longest suffix of ``buf`` that is a proper prefix of a pattern."""
    for start in range(max(0, len(buf) - longest + 1), len(buf)):
        tail = buf[start:]
        if any(pattern.startswith(tail) for pattern in patterns):
            return len(buf) - start
    return 0


_LONGEST_MARKER: Final = max(len(marker) for marker in _MARKERS)
_LONGEST_BOUNDARY: Final = max(len(boundary) for boundary in _BOUNDARIES)


def _could_lead_token_header(text: str) -> bool:
    """Whether ``text`` can be (the start of) what precedes the first marker in token mode.

    After our ``<|start|>assistant`` the model writes ``<|channel|>`` straight away, or a
    recipient first (`` to=functions.x<|channel|>``); a caller may also pass
    ``assistant`` itself or a leading newline.
    """
    rest = text.lstrip("\n")
    if rest.startswith(_ASSISTANT):
        rest = rest[len(_ASSISTANT) :]
    elif _ASSISTANT.startswith(rest):
        return True
    if rest.startswith(" to="):
        return _RECIPIENT_RE.fullmatch(rest[4:]) is not None
    return " to=".startswith(rest)


def _parse_token_header(header: str) -> tuple[str | None, str | None]:
    """(channel, recipient) of a token-mode header; channel None: not an assistant message."""
    role_part, _, rest = header.partition(CHANNEL)
    return header_fields(role_part, rest.partition(CONSTRAIN)[0])


def header_fields(role_part: str, channel_part: str) -> tuple[str | None, str | None]:
    """(channel, recipient) from a header's two parts: the text before ``<|channel|>`` and
    the text between it and ``<|constrain|>`` / ``<|message|>``, markers left out.

    The channel is None when the message is not the assistant's (another role speaking);
    a recipient (``to=functions.x``) may stand in either part.
    """
    recipient: str | None = None
    roles: list[str] = []
    for word in role_part.split():
        if word.startswith("to="):
            recipient = word[3:]
        else:
            roles.append(word)
    if roles and roles[0] != _ASSISTANT:
        return None, recipient
    channel = ""
    for word in channel_part.split():
        if word.startswith("to="):
            recipient = word[3:]
        elif not channel:
            channel = word
    return channel, recipient


def _starts_with_prefix_of(text: str, options: Iterable[str]) -> bool:
    """Whether ``text`` is a proper prefix of one of ``options`` (so more text may decide)."""
    return any(option.startswith(text) and option != text for option in options)


def _take_recipient(text: str) -> tuple[str, str]:
    """Split ``" to=functions.x rest"`` into the recipient and what follows it."""
    end = 4
    while end < len(text) and _RECIPIENT_CHAR_RE.match(text[end]):
        end += 1
    return text[4:end], text[end:]


def _parse_stripped_header(
    buf: str, *, at_stream_start: bool, at_end: bool
) -> tuple[int, str, str | None] | None:
    """Where the body starts, the channel and recipient of a stripped header; None: wait.

    The forms seen without markers are ``final``, ``analysis``, ``commentary json``,
    ``commentary to=functions.x json`` and ``assistant to=functions.xcommentary json``
    (recipient in the role position, glued to the channel).
    """
    rest = buf
    if at_stream_start:
        if rest.startswith(_ASSISTANT):
            rest = rest[len(_ASSISTANT) :]
        elif not at_end and _starts_with_prefix_of(rest, (_ASSISTANT, *CHANNELS)):
            return None
    recipient: str | None = None
    channel: str | None = None
    if rest.startswith(" to="):
        recipient, rest = _take_recipient(rest)
        if not rest and not at_end:
            return None
        for name in CHANNELS:
            if not rest.startswith(name) and recipient.endswith(name):
                recipient, channel = recipient[: -len(name)], name
                break
    elif not at_end and rest and " to=".startswith(rest) and at_stream_start:
        return None
    if channel is None:
        for name in CHANNELS:
            if rest.startswith(name):
                channel, rest = name, rest[len(name) :]
                break
        else:
            if not at_end and _starts_with_prefix_of(rest, CHANNELS):
                return None
            if not at_end and not rest:
                return None
            return 0, "", recipient
    if channel != FINAL:
        if rest.startswith(" to="):
            recipient, rest = _take_recipient(rest)
            if not rest and not at_end:
                return None
        elif not at_end and " to=".startswith(rest):
            return None
        if recipient is not None:
            types = [prefix + name for name in _CONTENT_TYPES for prefix in (" ", "")]
            for content_type in types:
                if rest.startswith(content_type):
                    rest = rest[len(content_type) :]
                    break
            else:
                if not at_end and _starts_with_prefix_of(rest, types):
                    return None
    return len(buf) - len(rest), channel, recipient


class ReplyState:
    """Where a harmony reply stands, as both parsers track it: the text parser here and the
    token-id parser (``inference.llm.harmony_tokens``)."""

    def __init__(self) -> None:
        self._state: _State = "header"
        self._channel: str | None = None
        self._recipient: str | None = None
        self._channels_with_text: set[str] = set()
        self._needs_separator = False
        self._saw_final = False
        self._finished = False
        self._closed = False

    @property
    def saw_final(self) -> bool:
        """Whether the reply opened the final channel (the answer) at any point."""
        return self._saw_final

    @property
    def finished(self) -> bool:
        """Whether a ``<|return|>``, ``<|call|>`` or ``<|endoftext|>`` marker was seen."""
        return self._finished

    @property
    def channel(self) -> str | None:
        """Channel of the message being read (None between messages or in a header)."""
        return self._channel if self._state == "body" else None

    @property
    def recipient(self) -> str | None:
        """Recipient (``functions.x``) of the message being read, if it is a tool call."""
        return self._recipient if self._state == "body" else None


class HarmonyStreamParser(ReplyState):
    """Incremental parser for one gpt-oss reply (the text after ``<|start|>assistant``).

    ``feed`` each detokenized piece as it arrives and forward the returned deltas; call
    ``close`` once at the end. See the module docstring for the guarantees.
    """

    def __init__(self) -> None:
        super().__init__()
        self._buf = ""
        self._mode: _Mode | None = None
        self._at_stream_start = True

    def feed(self, piece: str) -> list[Delta]:
        """Take the next piece of generated text; return the deltas it completes."""
        if self._closed:
            raise RuntimeError("HarmonyStreamParser.feed() called after close()")
        self._buf += piece
        return self._drain(at_end=False)

    def close(self) -> list[Delta]:
        """End of the stream: flush held-back text. Idempotent."""
        if self._closed:
            return []
        deltas = self._drain(at_end=True)
        self._buf = ""
        self._closed = True
        return deltas

    # -- internals ---------------------------------------------------------------------

    def _drain(self, *, at_end: bool) -> list[Delta]:
        out: list[Delta] = []
        while True:
            before = (self._buf, self._mode, self._state)
            if self._mode is None:
                self._detect_mode(at_end=at_end)
            elif self._mode == "tokens":
                self._step_tokens(out, at_end=at_end)
            else:
                self._step_stripped(out, at_end=at_end)
            if (self._buf, self._mode, self._state) == before:
                break
        return _merge(out)

    def _detect_mode(self, *, at_end: bool) -> None:
        buf = self._buf
        match = _MARKER_RE.search(buf)
        if match is not None:
            lead = buf[: match.start()]
            self._mode = "tokens" if _could_lead_token_header(lead) else "stripped"
            return
        held = _held_suffix(buf, _MARKERS, _LONGEST_MARKER)
        if at_end or not _could_lead_token_header(buf[: len(buf) - held]):
            self._mode = "stripped"

    def _open_message(self, channel: str | None, recipient: str | None) -> None:
        self._state = "body"
        self._channel = channel
        self._recipient = recipient
        self._at_stream_start = False
        self._needs_separator = channel is not None and channel in self._channels_with_text
        if channel == FINAL:
            self._saw_final = True

    def _emit(self, out: list[Delta], text: str) -> None:
        if not text or self._channel is None:
            return
        if self._needs_separator:
            text = _MESSAGE_SEPARATOR + text
            self._needs_separator = False
        self._channels_with_text.add(self._channel)
        out.append(Delta(self._channel, text))

    def _step_tokens(self, out: list[Delta], *, at_end: bool) -> None:
        buf = self._buf
        match = _MARKER_RE.search(buf)
        if self._state == "header":
            # <|channel|> and <|constrain|> belong to the header; look for what ends it.
            while match is not None and match.group() in (CHANNEL, CONSTRAIN):
                match = _MARKER_RE.search(buf, match.end())
            if match is None:
                if at_end:
                    self._buf = ""
                return
            marker = match.group()
            if marker == MESSAGE:
                channel, recipient = _parse_token_header(buf[: match.start()])
                self._buf = buf[match.end() :]
                self._open_message(channel, recipient)
            else:
                self._buf = buf[match.end() :]
                self._state = "header" if marker == START else "between"
                self._finished = self._finished or marker in _STOPS
            return
        if self._state == "body":
            if match is None:
                held = 0 if at_end else _held_suffix(buf, _MARKERS, _LONGEST_MARKER)
                self._emit(out, buf[: len(buf) - held])
                self._buf = buf[len(buf) - held :]
                return
            self._emit(out, buf[: match.start()])
            marker = match.group()
            if marker in (MESSAGE, CONSTRAIN):
                self._buf = buf[match.end() :]  # stray marker inside a body: drop it
                return
            self._channel = None
            if marker == CHANNEL:
                # A header without <|end|><|start|> before it: keep the marker for it.
                self._buf = buf[match.start() :]
                self._state = "header"
            else:
                self._buf = buf[match.end() :]
                self._state = "header" if marker == START else "between"
                self._finished = self._finished or marker in _STOPS
            return
        # between messages: only a new header matters
        if match is None:
            held = 0 if at_end else _held_suffix(buf, _MARKERS, _LONGEST_MARKER)
            self._buf = buf[len(buf) - held :]
            return
        marker = match.group()
        if marker == CHANNEL:
            self._buf = buf[match.start() :]
            self._state = "header"
        else:
            self._buf = buf[match.end() :]
            self._state = "header" if marker == START else "between"
            self._finished = self._finished or marker in _STOPS

    def _step_stripped(self, out: list[Delta], *, at_end: bool) -> None:
        buf = self._buf
        if self._state != "body":
            parsed = _parse_stripped_header(
                buf, at_stream_start=self._at_stream_start, at_end=at_end
            )
            if parsed is None:
                return
            body_start, channel, recipient = parsed
            self._buf = buf[body_start:]
            self._open_message(channel, recipient)
            return
        match = _BOUNDARY_RE.search(buf)
        if match is None:
            held = 0 if at_end else _held_suffix(buf, _BOUNDARIES, _LONGEST_BOUNDARY)
            self._emit(out, buf[: len(buf) - held])
            self._buf = buf[len(buf) - held :]
            return
        self._emit(out, buf[: match.start()])
        self._buf = buf[match.start() + len(_ASSISTANT) :]
        self._channel = None
        self._state = "header"


def _merge(deltas: list[Delta]) -> list[Delta]:
    merged: list[Delta] = []
    for delta in deltas:
        if merged and merged[-1].channel == delta.channel:
            merged[-1] = Delta(delta.channel, merged[-1].text + delta.text)
        else:
            merged.append(delta)
    return merged


def parse_completion(text: str) -> HarmonyResult:
    """Split a whole reply (the text after ``<|start|>assistant``) by channel."""
    parser = HarmonyStreamParser()
    by_channel: dict[str, list[str]] = {}
    for delta in [*parser.feed(text), *parser.close()]:
        by_channel.setdefault(delta.channel, []).append(delta.text)
    joined = {channel: "".join(texts) for channel, texts in by_channel.items()}
    final = joined.pop(FINAL, "")
    reasoning = joined.pop(ANALYSIS, "")
    return HarmonyResult(final=final, reasoning=reasoning, other=joined, saw_final=parser.saw_final)
