"""How a prompt is written for a model, and how its reply is read back.

``harmony`` is gpt-oss (reasoning in an ``analysis`` channel, the answer in ``final``);
``template`` is any GGUF that carries its own chat template, whose reply is all answer.
"""

from __future__ import annotations

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from inference.llm import harmony
from inference.llm.base import Piece, ReplyReader, SpecialToken
from inference.llm.harmony_tokens import HarmonyTokenParser

__all__ = [
    "HarmonyFormat",
    "HarmonyReader",
    "HarmonyTokenReader",
    "PlainReader",
    "TemplateFormat",
]


def _pieces(deltas: list[harmony.Delta]) -> list[Piece]:
    out = []
    for delta in deltas:
        if delta.channel == harmony.FINAL:
            out.append(Piece(delta.text, "answer"))
        elif delta.channel == harmony.ANALYSIS:
            out.append(Piece(delta.text, "reasoning"))
    return out


class HarmonyReader:
    """Reads a gpt-oss reply from text alone (the remote backend's mode): a marker is
    recognised by its characters, so ordinary tokens that spell one count as one."""

    def __init__(self) -> None:
        self._parser = harmony.HarmonyStreamParser()

    def feed(self, text: str) -> list[Piece]:
        return _pieces(self._parser.feed(text))

    def close(self) -> list[Piece]:
        return _pieces(self._parser.close())

    @property
    def complete(self) -> bool:
        return self._parser.saw_final


class HarmonyTokenReader:
    """Reads a gpt-oss reply as the local backend streams it: structure only from
    :class:`SpecialToken` pieces (special tokens the model produced by id); every plain
    ``str`` is text, whatever characters it holds."""

    def __init__(self) -> None:
        self._parser = HarmonyTokenParser()

    def feed(self, text: str) -> list[Piece]:
        if isinstance(text, SpecialToken):
            return _pieces(self._parser.feed_marker(str(text)))
        return _pieces(self._parser.feed_text(text))

    def close(self) -> list[Piece]:
        return _pieces(self._parser.close())

    @property
    def complete(self) -> bool:
        return self._parser.saw_final


class HarmonyFormat:
    """gpt-oss's harmony prompts and replies.

    ``by_token_id``: the model's stream marks its special tokens (:class:`SpecialToken`),
    so the reply is read by token ids (:class:`HarmonyTokenReader`); otherwise it is read
    from text (:class:`HarmonyReader`). The stop strings are then special tokens only.
    """

    stop_strings = tuple(harmony.STOP_TOKENS)
    continue_after = (harmony.END,)

    def __init__(self, reasoning_effort: str, *, by_token_id: bool = False) -> None:
        self.reasoning_effort = reasoning_effort
        self.by_token_id = by_token_id

    def render(
        self, system: str, instructions: str, user: str, history: list[tuple[str, str]]
    ) -> str:
        return harmony.render_prompt(
            system,
            user,
            reasoning_effort=self.reasoning_effort,
            developer=instructions,
            history=history,
        )

    def reader(self) -> ReplyReader:
        return HarmonyTokenReader() if self.by_token_id else HarmonyReader()


class PlainReader:
    complete = True

    def feed(self, text: str) -> list[Piece]:
        return [Piece(text, "answer")] if text else []

    def close(self) -> list[Piece]:
        return []


class TemplateFormat:
    """The model's own Jinja chat template, read from its GGUF metadata.

    Templates of the common families (Qwen, Llama, Mistral, Gemma, Granite, SmolLM2) expect a
    few helpers from the Hugging Face renderer (``raise_exception``, ``strftime_now``); some
    (Gemma, older Mistral) refuse a system role, in which case our system text opens the
    first user message instead.
    """

    def __init__(
        self, template: str, bos_token: str, eos_token: str, extra_stops: tuple[str, ...] = ()
    ) -> None:
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.globals["raise_exception"] = _raise_template_error
        # A fixed date keeps prompts (and so the reusable KV prefix) the same all day long.
        env.globals["strftime_now"] = lambda fmt: "2026-01-01"
        self._template = env.from_string(template)
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.stop_strings = tuple(s for s in (eos_token, *extra_stops) if s)
        self.continue_after: tuple[str, ...] = ()

    def render(
        self, system: str, instructions: str, user: str, history: list[tuple[str, str]]
    ) -> str:
        preamble = f"{system}\n\n{instructions}".strip()
        turns: list[dict[str, str]] = []
        for asked, answered in history:
            turns += [
                {"role": "user", "content": asked},
                {"role": "assistant", "content": answered},
            ]
        turns.append({"role": "user", "content": user})
        try:
            return self._render([{"role": "system", "content": preamble}, *turns])
        except TemplateError:
            first = {"role": "user", "content": f"{preamble}\n\n{turns[0]['content']}"}
            return self._render([first, *turns[1:]])

    def _render(self, messages: list[dict[str, str]]) -> str:
        return self._template.render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )

    def reader(self) -> ReplyReader:
        return PlainReader()


def _raise_template_error(message: str) -> None:
    raise TemplateError(message)
