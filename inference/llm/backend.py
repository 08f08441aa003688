"""The local model: loaded once per answer-worker process, one question at a time.

We drive llama-cpp-python's token loop ourselves rather than its chat API: we need each
token's id (gpt-oss's harmony channels are special tokens, told apart from text that only
spells them by id), a check for "stop" between any two tokens, and exact prompt-prefix
reuse. ``Llama.generate`` keeps the KV cache of the longest common
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
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

from inference.llm.base import (
    ChatFormat,
    GenerationStats,
    LanguageModel,
    ModelUnavailable,
    SpecialToken,
)
from inference.llm.formats import HarmonyFormat, TemplateFormat
from inference.llm.harmony_tokens import MARKERS, REQUIRED_MARKERS
from inference.llm.remote import RemoteModel

log = logging.getLogger(__name__)


class LocalModel:
    """A GGUF model in this process. For gpt-oss (``harmony``) each special token the
    model produces comes out of :meth:`stream` as a :class:`SpecialToken`, found by its id
    in the model's vocabulary, so the reply's channels are decided by token ids, never by
    text that merely spells a marker."""

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
        # Imported here, not at the top: the web process imports this module (through
        # get_model's callers) but never loads a model, and llama_cpp loads its native
        # library on import.
        import llama_cpp

        started = time.monotonic()
        self.llama = llama_cpp.Llama(
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
        vocab = self.llama._model.vocab
        self._is_eog: Callable[[int], bool] = lambda token: bool(
            llama_cpp.llama_vocab_is_eog(vocab, token)
        )
        self._is_control: Callable[[int], bool] = lambda token: bool(
            llama_cpp.llama_vocab_is_control(vocab, token)
        )
        self.path = path
        self.context = context
        self.lock = threading.Lock()
        # harmony's special tokens by their id in this vocabulary; empty when replies are
        # read from text (a template model, or a vocabulary without harmony's tokens).
        self.markers: dict[int, str] = {}
        self.format = self._format_for(chat_format)
        log.info("loaded %s in %.1f s", path.name, time.monotonic() - started)

    def _format_for(self, chat_format: str) -> ChatFormat:
        if chat_format == "harmony":
            self.markers = self._marker_ids(MARKERS)
            missing = set(REQUIRED_MARKERS) - set(self.markers.values())
            if missing:
                # Not a harmony vocabulary: the reply can only be read from its text.
                log.warning(
                    "%s lacks harmony tokens %s; reading replies from text",
                    self.path.name,
                    ", ".join(sorted(missing)),
                )
                self.markers = {}
            return HarmonyFormat(settings.LLM_REASONING_EFFORT, by_token_id=bool(self.markers))
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

    def _marker_ids(self, markers: tuple[str, ...]) -> dict[int, str]:
        """Each marker's id in this model's vocabulary, if it is exactly one token there
        that reads back as the marker (a marker the vocabulary lacks is left out)."""
        found: dict[int, str] = {}
        for marker in markers:
            ids = self.llama.tokenize(marker.encode("utf-8"), add_bos=False, special=True)
            if len(ids) != 1:
                continue
            text = self.llama.detokenize(ids, special=True).decode("utf-8", "replace")
            if text == marker:
                found[int(ids[0])] = marker
        return found

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
        """Text pieces as the model writes them, special tokens included as text.

        With a harmony model (read by token ids) each special token is a piece of its own,
        a :class:`SpecialToken`; the stop strings then stop only as special tokens, never
        as text that spells them. Other formats stop on their stop strings in any text.
        """
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
        by_id = bool(self.markers)
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
        repeats = settings.LLM_REPETITION_STOP
        with self.lock:
            stats.stopped_by = "length"
            for token in self.llama.generate(tokens, reset=True, **sampling):
                if stats.first_token_s is None:
                    stats.first_token_s = time.monotonic() - started
                produced.append(token)
                special = self._special(token) if by_id else None
                if self._is_eog(token):
                    marker = special if special is not None else self._text_of(token)
                    if marker not in self.format.continue_after:
                        stats.stopped_by = "stop"  # end of reply: the marker is not text
                        break
                if special is not None:
                    if pending:  # a character cut off by a special token stays unfinished
                        yield pending.decode("utf-8", "replace")
                        pending = b""
                    if special in stop_strings:
                        stats.stopped_by = "stop"
                        break
                    yield special
                else:
                    pending += self.llama.detokenize([token], prev_tokens=None, special=True)
                    text, pending = _split_utf8(pending)
                    # Read by ids, text that spells a stop token is only text.
                    stop_at = -1 if by_id else _find_stop(text, stop_strings)
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
                if repeats and looping(produced, repeats):
                    stats.stopped_by = "repetition"
                    break
                if len(produced) >= max_tokens:
                    break
            stats.completion_tokens = len(produced)
            stats.total_s = time.monotonic() - started

    def _special(self, token: int) -> SpecialToken | None:
        """The token as a :class:`SpecialToken` if it is a marker or any other control
        token (a reserved one: never text); None for an ordinary token."""
        marker = self.markers.get(token)
        if marker is not None:
            return SpecialToken(marker, token)
        if self._is_control(token):
            return SpecialToken(self._text_of(token), token)
        return None

    def _text_of(self, token: int) -> str:
        return self.llama.detokenize([token], special=True).decode("utf-8", "replace")


LOOP_PERIODS = range(4, 49)


def looping(tokens: list[int], repeats: int) -> bool:
    """Whether the tokens end in one run of 4 to 48 tokens written ``repeats`` times in a
    row (a loop, not a list: a list's items differ somewhere)."""
    for period in LOOP_PERIODS:
        span = period * repeats
        if len(tokens) < span:
            return False
        tail = tokens[-span:]
        block = tail[-period:]
        if all(tail[i : i + period] == block for i in range(0, span - period, period)):
            return True
    return False


def _common_prefix(a: Any, b: list[int]) -> int:
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def _find_stop(text: str, stop_strings: tuple[str, ...]) -> int:
    """Where the first stop string in ``text`` begins; -1 when none is there."""
    return min((text.find(s) for s in stop_strings if s in text), default=-1)


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
def _load() -> LanguageModel:
    if settings.LLM_BACKEND == "openai":
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


def get_model() -> LanguageModel:
    """The model this process answers with (LocalModel or RemoteModel), loaded once."""
    with _load_lock:
        return _load()
