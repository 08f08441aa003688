"""What every model backend offers, and the types they share.

Both backends (:mod:`inference.llm.backend`, a GGUF in this process, and
:mod:`inference.llm.remote`, an OpenAI-compatible server) import this module and nothing
of each other, so either can be read, tested and loaded alone. This module imports nothing
of the package: it is the bottom of ``inference.llm``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol


class ModelUnavailable(RuntimeError):
    """The model cannot answer (missing file, unreachable server, prompt too long)."""


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reused_prefix_tokens: int = 0
    first_token_s: float | None = None
    total_s: float = 0.0
    stopped_by: str = ""  # "stop", "length", "cancelled", "repetition"


class SpecialToken(str):
    """The text of one special (control) token that the model produced *by its id*.

    A model's stream is a run of ``str`` pieces, and most callers only want the text. A
    reader that must tell structure from prose (harmony's channels) cannot do that from
    text alone: ordinary tokens can spell ``<|channel|>`` character by character. The local
    backend therefore yields each special token as this subclass, one token per piece, and
    every other piece as a plain ``str``; a reader checks ``isinstance(piece,
    SpecialToken)``. To everyone else it is the same text as before.
    """

    token_id: int

    def __new__(cls, text: str, token_id: int) -> SpecialToken:
        self = super().__new__(cls, text)
        self.token_id = token_id
        return self

    def __repr__(self) -> str:
        return f"SpecialToken({str(self)!r}, {self.token_id})"


@dataclass(frozen=True)
class Piece:
    """Part of the reply: ``answer`` goes to the person; ``reasoning`` never does."""

    text: str
    kind: str  # "answer" or "reasoning"


class ReplyReader(Protocol):
    """Turns the pieces a model streams into :class:`Piece` s, one reply at a time."""

    def feed(self, text: str) -> list[Piece]: ...
    def close(self) -> list[Piece]: ...
    @property
    def complete(self) -> bool: ...


class ChatFormat(Protocol):
    """How a prompt is written for a model, and how its reply is read back."""

    stop_strings: tuple[str, ...]
    # End-of-generation tokens that only end a message, not the reply (harmony's <|end|>
    # closes the analysis message; the final one follows).
    continue_after: tuple[str, ...]

    def render(
        self, system: str, instructions: str, user: str, history: list[tuple[str, str]]
    ) -> str: ...
    def reader(self) -> ReplyReader: ...


class LanguageModel(Protocol):
    """A loaded model as the answer worker uses it (``LocalModel`` or ``RemoteModel``).

    ``stream`` yields the reply's text as it is written; feed every piece, unchanged, to a
    reader from ``format.reader()`` (pieces may be :class:`SpecialToken` s, which the
    format's own reader understands). ``stats`` is filled in as generation goes.
    """

    format: ChatFormat
    context: int

    def count_tokens(self, text: str) -> int: ...

    def stream(
        self,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float,
        top_p: float,
        should_stop: Callable[[], bool] = ...,
        stats: GenerationStats | None = None,
    ) -> Iterator[str]: ...
