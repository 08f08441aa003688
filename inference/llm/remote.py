"""An OpenAI-compatible server as the model, for operators who outgrow one process per model
(llama.cpp's ``llama-server`` with parallel slots, vLLM, llama-cpp-python's own server).

It behaves like :class:`inference.llm.backend.LocalModel`: the same prompts, the same
events. gpt-oss prompts are rendered here in harmony and sent raw to ``/completions`` (the
reply comes back with or without its special tokens; the harmony reader understands both).
Other models are sent as chat messages to ``/chat/completions`` and the server applies the
model's own template. The server keeps its own prompt cache.

Reading gpt-oss replies is weaker here than in the local backend. An OpenAI-compatible
stream carries text, not token ids, so the reply's channels are found from the characters
of harmony's markers (:class:`inference.llm.formats.HarmonyReader`): if the model spells
``<|channel|>final<|message|>`` with ordinary tokens, the reader takes it for a real
marker, and reasoning may reach the person or the answer be cut short. The local backend
decides channels by token ids (:mod:`inference.llm.harmony_tokens`) and has no such hole.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from django.conf import settings

from inference.llm.base import ChatFormat, GenerationStats, ModelUnavailable, ReplyReader
from inference.llm.formats import HarmonyFormat, PlainReader

# A rough tokens-per-character figure for packing sources: the server's tokenizer is not
# at hand, so we count generously (about 3.2 characters per token for European text).
CHARS_PER_TOKEN = 3.2


class ChatMessagesFormat:
    """Renders the conversation as chat messages (JSON) for /chat/completions."""

    stop_strings: tuple[str, ...] = ()
    continue_after: tuple[str, ...] = ()

    def render(
        self, system: str, instructions: str, user: str, history: list[tuple[str, str]]
    ) -> str:
        messages = [{"role": "system", "content": f"{system}\n\n{instructions}".strip()}]
        for asked, answered in history:
            messages += [
                {"role": "user", "content": asked},
                {"role": "assistant", "content": answered},
            ]
        messages.append({"role": "user", "content": user})
        return json.dumps(messages, ensure_ascii=False)

    def reader(self) -> ReplyReader:
        return PlainReader()


class RemoteModel:
    """A model behind an OpenAI-compatible server; gpt-oss replies are read from text
    (see the module docstring for why that is the weaker mode)."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        chat_format: str,
        api_key: str = "none",
        timeout: float = 300,
        context: int = 8192,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.context = context
        self.client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout, connect=10),
        )
        self.format: ChatFormat = (
            HarmonyFormat(settings.LLM_REASONING_EFFORT, by_token_id=False)
            if chat_format == "harmony"
            else ChatMessagesFormat()
        )

    def count_tokens(self, text: str) -> int:
        return int(len(text) / CHARS_PER_TOKEN) + 1

    def stream(
        self,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float,
        top_p: float,
        should_stop: Callable[[], bool] = lambda: False,
        stats: GenerationStats | None = None,
    ) -> Iterator[str]:
        stats = stats if stats is not None else GenerationStats()
        chat = isinstance(self.format, ChatMessagesFormat)
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if chat:
            body["messages"] = json.loads(prompt)
            path = "/chat/completions"
        else:
            body["prompt"] = prompt
            body["stop"] = list(self.format.stop_strings)
            path = "/completions"
        started = time.monotonic()
        stats.stopped_by = "length"
        pieces = 0
        try:
            with self.client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ModelUnavailable(
                        f"The model server answered {response.status_code}: {response.text[:300]}"
                    )
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    usage = chunk.get("usage")
                    if usage:
                        stats.prompt_tokens = usage.get("prompt_tokens", stats.prompt_tokens)
                        stats.completion_tokens = usage.get("completion_tokens", pieces)
                    for choice in chunk.get("choices", []):
                        text = (
                            (choice.get("delta") or {}).get("content")
                            if chat
                            else choice.get("text")
                        )
                        if text:
                            if stats.first_token_s is None:
                                stats.first_token_s = time.monotonic() - started
                            pieces += 1
                            yield text
                        if choice.get("finish_reason") == "stop":
                            stats.stopped_by = "stop"
                    if should_stop():
                        stats.stopped_by = "cancelled"
                        break  # closing the connection makes the server stop generating
        except httpx.HTTPError as exc:
            raise ModelUnavailable(
                f"The model server at {self.base_url} is unreachable ({exc})."
            ) from exc
        stats.completion_tokens = stats.completion_tokens or pieces
        stats.total_s = time.monotonic() - started
