"""How a prompt is written for a model, and how its reply is read back.

``harmony`` is gpt-oss (reasoning in an ``analysis`` channel, the answer in ``final``);
``template`` is any GGUF that carries its own chat template, whose reply is all answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from inference.llm import harmony


@dataclass(frozen=True)
class Piece:
    """Part of the reply: ``answer`` goes to the person; ``reasoning`` never does."""

    text: str
    kind: str  # "answer" or "reasoning"


class ReplyReader(Protocol):
    def feed(self, text: str) -> list[Piece]: ...
    def close(self) -> list[Piece]: ...
    @property
    def complete(self) -> bool: ...


class ChatFormat(Protocol):
    stop_strings: tuple[str, ...]
    # End-of-generation tokens that only end a message, not the reply (harmony's <|end|>
    # closes the analysis message; the final one follows).
    continue_after: tuple[str, ...]

    def render(
        self, system: str, instructions: str, user: str, history: list[tuple[str, str]]
    ) -> str: ...
    def reader(self) -> ReplyReader: ...


class HarmonyReader:
    def __init__(self) -> None:
        self._parser = harmony.HarmonyStreamParser()

    def _convert(self, deltas: list[harmony.Delta]) -> list[Piece]:
        out = []
        for delta in deltas:
            if delta.channel == "final":
                out.append(Piece(delta.text, "answer"))
            elif delta.channel == "analysis":
                out.append(Piece(delta.text, "reasoning"))
        return out

    def feed(self, text: str) -> list[Piece]:
        return self._convert(self._parser.feed(text))

    def close(self) -> list[Piece]:
        return self._convert(self._parser.close())

    @property
    def complete(self) -> bool:
        return self._parser.saw_final


class HarmonyFormat:
    stop_strings = tuple(harmony.STOP_TOKENS)
    continue_after = ("<|end|>",)

    def __init__(self, reasoning_effort: str) -> None:
        self.reasoning_effort = reasoning_effort

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
        return HarmonyReader()


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
