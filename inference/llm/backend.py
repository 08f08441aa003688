"""The local model: loaded once per answer-worker process, one question at a time.

We drive llama-cpp-python's token loop ourselves rather than its chat API: we need special
tokens as text (gpt-oss speaks harmony), a check for "stop" between any two tokens, and
exact prompt-prefix reuse. ``Llama.generate`` keeps the KV cache of the longest common
token prefix with the previous prompt; our prompts begin with the same system and
instruction text, so that part is computed once, and nothing after it (one person's
question and sources) is ever reused for another: the cache is cut where the tokens differ.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

from inference.llm.formats import ChatFormat, HarmonyFormat, TemplateFormat

log = logging.getLogger(__name__)


class ModelUnavailable(RuntimeError):
    pass


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reused_prefix_tokens: int = 0
    first_token_s: float | None = None
    total_s: float = 0.0
    stopped_by: str = ""  # "stop", "length", "cancelled"


class LocalModel:
    def __init__(
        self,
        path: Path,
        *,
        chat_format: str,
        context: int,
        threads: int,
        gpu_layers: int,
        seed: int = -1,
    ) -> None:
        if not path.is_file():
            raise ModelUnavailable(
                f"The language model file {path} is missing. Run "
                "`python manage.py fetch_model gpt-oss-20b` or set APPLIANCE_LLM_MODEL_PATH."
            )
        from llama_cpp import Llama

        started = time.monotonic()
        self.llama = Llama(
            model_path=str(path),
            n_ctx=context,
            n_threads=threads,
            n_threads_batch=threads,
            n_gpu_layers=gpu_layers,
            seed=seed if seed >= 0 else 0xFFFFFFFF,
            verbose=False,
            n_batch=512,
        )
        # Freed while the interpreter still works: llama-cpp-python's own __del__ at exit
        # runs after its C bindings are gone and prints a TypeError.
        weakref.finalize(self, self.llama.close)
        self.path = path
        self.context = context
        self.lock = threading.Lock()
        self.format = self._format_for(chat_format)
        log.info("loaded %s in %.1f s", path.name, time.monotonic() - started)

    def _format_for(self, chat_format: str) -> ChatFormat:
        if chat_format == "harmony":
            return HarmonyFormat(settings.LLM_REASONING_EFFORT)
        meta = self.llama.metadata
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise ModelUnavailable(
                f"{self.path.name} carries no chat template; set APPLIANCE_LLM_CHAT_FORMAT."
            )
        vocab = self.llama._model
        bos = vocab.token_get_text(self.llama.token_bos()) if self.llama.token_bos() >= 0 else ""
        eos = vocab.token_get_text(self.llama.token_eos()) if self.llama.token_eos() >= 0 else ""
        return TemplateFormat(template, bos, eos)

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

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
        """Text pieces as the model writes them, special tokens included as text."""
        stats = stats if stats is not None else GenerationStats()
        tokens = self.llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        if len(tokens) + max_tokens > self.context:
            max_tokens = max(0, self.context - len(tokens))
            if max_tokens < 16:
                raise ModelUnavailable(
                    "The question and its sources do not fit the model's context."
                )
        stats.prompt_tokens = len(tokens)
        stats.reused_prefix_tokens = _common_prefix(
            self.llama._input_ids[: self.llama.n_tokens], tokens
        )
        started = time.monotonic()
        import llama_cpp

        vocab = self.llama._model.vocab

        def eog(token: int) -> bool:
            return bool(llama_cpp.llama_vocab_is_eog(vocab, token))

        stop_strings = self.format.stop_strings
        produced: list[int] = []
        pending = b""
        sampling: dict[str, Any] = {
            "temp": temperature,
            "top_p": top_p,
            "repeat_penalty": settings.LLM_REPEAT_PENALTY,
        }
        if temperature >= 1.0 and top_p >= 1.0:
            sampling.update(top_k=0, min_p=0.0)  # plain sampling, as recommended for gpt-oss
        with self.lock:
            stats.stopped_by = "length"
            for token in self.llama.generate(tokens, reset=True, **sampling):
                if stats.first_token_s is None:
                    stats.first_token_s = time.monotonic() - started
                produced.append(token)
                if eog(token):
                    marker = self.llama.detokenize([token], special=True).decode("utf-8", "replace")
                    if marker not in self.format.continue_after:
                        stats.stopped_by = "stop"  # end of reply: the marker is not text
                        break
                pending += self.llama.detokenize([token], prev_tokens=None, special=True)
                text, pending = _split_utf8(pending)
                stop_at = min((text.find(s) for s in stop_strings if s in text), default=-1)
                if stop_at >= 0:
                    if text[:stop_at]:
                        yield text[:stop_at]
                    stats.stopped_by = "stop"
                    break
                if text:
                    yield text
                if should_stop():
                    stats.stopped_by = "cancelled"
                    break
                if len(produced) >= max_tokens:
                    break
            stats.completion_tokens = len(produced)
            stats.total_s = time.monotonic() - started


def _common_prefix(a: Any, b: list[int]) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def _split_utf8(data: bytes) -> tuple[str, bytes]:
    """Decode what is complete; keep a trailing partial UTF-8 sequence for the next token."""
    for cut in range(len(data), max(len(data) - 4, -1), -1):
        try:
            return data[:cut].decode("utf-8"), data[cut:]
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", "replace"), b""


_load_lock = threading.Lock()


@cache
def _load() -> Any:
    if settings.LLM_BACKEND == "openai":
        from inference.llm.remote import RemoteModel

        return RemoteModel(
            settings.LLM_SERVER_URL,
            model=settings.LLM_SERVER_MODEL,
            chat_format=settings.LLM_CHAT_FORMAT,
            api_key=settings.LLM_SERVER_API_KEY,
            timeout=settings.LLM_SERVER_TIMEOUT_SECONDS,
            context=settings.LLM_CONTEXT_TOKENS,
        )
    return local_model()


def local_model() -> LocalModel:
    """A new LocalModel exactly as the settings describe (the worker's, or a benchmark's)."""
    return LocalModel(
        settings.LLM_MODEL_PATH,
        chat_format=settings.LLM_CHAT_FORMAT,
        context=settings.LLM_CONTEXT_TOKENS,
        threads=settings.LLM_THREADS,
        gpu_layers=settings.LLM_GPU_LAYERS,
        seed=settings.LLM_SEED,
    )


def get_model() -> Any:
    """The model this process answers with (LocalModel or RemoteModel), loaded once."""
    with _load_lock:
        return _load()
