"""Answering golden questions under a configuration, as a chosen person would.

The steps are the answer worker's own (``inference.answering``: search within the person's
access, pack passages, compose the prompt, generate, verify citations); only the knobs come
from the configuration instead of the settings, and nothing is sent to a browser or stored
as the person's question. A judge configuration, when the run has one, scores each answer
against the expected one; its prompt and output are kept for a person to check.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

from inference import answering, prompts
from inference import language as languages
from inference.catalog import spec_for
from inference.conversation import History
from inference.llm.backend import LocalModel, get_model
from inference.llm.base import ChatFormat, GenerationStats, LanguageModel, ModelUnavailable
from inference.llm.formats import HarmonyFormat
from inference.llm.remote import RemoteModel
from inference.pilot import goldens
from inference.pilot.models import Backend, Configuration, GoldenQuestion
from inference.retrieval import Hit, Params, search
from ingest.models import Document

# The refusal, and the words by which an answer that says the same in other words is
# counted as a refusal (the model may write it itself, or in the question's language).
_REFUSAL_WORDS = (
    r"could not find this in the documents|fant ikke dette i dokumentene|"
    r"konnte dies in den dokumenten.*nicht finden"
)


@cache
def _refusals() -> re.Pattern[str]:
    """The words above, and the refusal's own wordings from the translation catalogue
    (``prompts.not_found``), read once translations can be (not at import)."""
    own = (re.escape(sentence.rstrip(".")) for sentence in prompts.refusal_sentences())
    return re.compile("|".join((_REFUSAL_WORDS, *own)), re.IGNORECASE)


def is_refusal(reply: str) -> bool:
    return bool(_refusals().search(reply))


@dataclass
class Outcome:
    """One golden question answered: the fields of a ``RunAnswer``."""

    answer: str = ""
    refused: bool = False
    language: str = ""
    retrieved: list[dict[str, Any]] | None = None
    cited: list[dict[str, Any]] | None = None
    ttft_ms: int | None = None
    total_ms: int | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: str = ""


# --- the model a configuration names ------------------------------------------------------


class _WithFormat:
    """A loaded model read and prompted with another chat format (a configuration's own
    reasoning effort), so the shared model itself is never changed."""

    def __init__(self, model: LanguageModel, chat_format: ChatFormat) -> None:
        self.model = model
        self.format = chat_format
        self.context = model.context

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def stream(self, prompt: str, **kwargs: Any) -> Any:
        return self.model.stream(prompt, **kwargs)


_extra: dict[tuple[str, ...], LanguageModel] = {}
_extra_lock = threading.Lock()


def _local_path(name: str) -> Path:
    """The GGUF a local configuration names: a catalogue name or a file in the models
    folder (never a path elsewhere)."""
    if "/" in name or "\\" in name or name.startswith("."):
        raise ModelUnavailable(f"“{name}” is not a model name or a file in the models folder.")
    filename = name if name.endswith(".gguf") else spec_for(name).filename
    return settings.MODELS_DIR / filename


def _api_key(setting: str) -> str:
    if not setting:
        return "none"
    key = os.environ.get(setting, "")
    if not key and os.environ.get(f"{setting}_FILE"):
        key = Path(os.environ[f"{setting}_FILE"]).read_text().strip()
    if not key:
        raise ModelUnavailable(f"The setting {setting} that should hold the API key is empty.")
    return key


def _load(config: Configuration) -> LanguageModel:
    chat_format = config.chat_format or spec_for(config.model).chat_format
    if config.backend == Backend.OPENAI:
        return RemoteModel(
            config.server_url,
            model=config.model,
            chat_format=chat_format,
            api_key=_api_key(config.api_key_setting),
            timeout=settings.LLM_SERVER_TIMEOUT_SECONDS,
            context=settings.LLM_CONTEXT_TOKENS,
        )
    path = _local_path(config.model)
    if settings.LLM_BACKEND != "openai" and path == settings.LLM_MODEL_PATH:
        return get_model()  # the worker's own model: loaded once, shared
    key = ("local", str(path), chat_format)
    with _extra_lock:
        if key not in _extra:
            _extra.clear()  # one other model at a time: memory, not speed, is short
            _extra[key] = LocalModel(
                path,
                chat_format=chat_format,
                context=settings.LLM_CONTEXT_TOKENS,
                threads=settings.LLM_THREADS,
                gpu_layers=settings.LLM_GPU_LAYERS,
                seed=settings.LLM_SEED,
            )
        return _extra[key]


def model_for(config: Configuration) -> LanguageModel:
    model = _load(config)
    if isinstance(model.format, HarmonyFormat):
        by_id = bool(getattr(model, "markers", None))
        return _WithFormat(model, HarmonyFormat(config.reasoning_effort, by_token_id=by_id))
    return model


def params_for(config: Configuration) -> Params:
    base = Params.from_settings()
    return replace(base, reranker=base.reranker if config.reranker else "")


# --- one golden question ------------------------------------------------------------------


def _document_json(hit: Hit, names: dict[int, str]) -> dict[str, Any]:
    return {
        "document_id": hit.document_id,
        "title": hit.title,
        "name": names.get(hit.document_id, ""),
        "page": hit.page,
        "chunk_id": hit.chunk_id,
    }


def readable_names(person: Any, scope: list[int] | None) -> dict[str, int]:
    """Lower-cased titles and file names of the documents ``person`` may read (within
    ``scope``, when given), for ``goldens.find_document``."""
    readable = Document.objects.visible_to(person)
    if scope is not None:
        readable = readable.filter(collection_id__in=scope)
    found: dict[str, int] = {}
    for pk, title, name in readable.order_by("pk").values_list("pk", "title", "original_name"):
        found.setdefault(title.lower(), pk)
        found.setdefault(name.lower(), pk)
    return found


def answerable_for(golden: GoldenQuestion, readable: dict[str, int]) -> bool:
    """Whether the documents ``golden`` expects are ones the run's person may read.

    A question only another department's documents answer is answerable in the
    organisation but not for this person: the right reply to them is the refusal, and
    the run counts it so (access control is part of what a pilot measures). A question
    with no expected sources, or one whose sources are all readable, stays as written."""
    sources = golden.expected_sources or []
    if not golden.answerable or not sources:
        return golden.answerable
    return any(goldens.find_document(s["document"], readable) is not None for s in sources)


def _file_names(hits: list[Hit]) -> dict[int, str]:
    ids = {h.document_id for h in hits}
    return dict(Document.objects.filter(pk__in=ids).values_list("pk", "original_name"))


def find(
    golden: GoldenQuestion, config: Configuration, person: Any, scope: list[int] | None
) -> list[Hit]:
    """The passages ``config``'s retrieval finds for ``golden`` as ``person``."""
    return search(
        person,
        golden.question,
        answering.QueryVectors(golden.question),
        k=config.top_k,
        narrow_to=scope,
        mode=config.retrieval_mode,
        params=params_for(config),
    )


def answer(
    golden: GoldenQuestion,
    config: Configuration,
    person: Any,
    scope: list[int] | None,
    stop: threading.Event | None = None,
) -> Outcome:
    """Answer one golden question under ``config`` as ``person`` would be answered, within
    ``scope`` (see ``appliance.access.pilot_run_scope``)."""
    started = time.monotonic()
    model = model_for(config)
    text = golden.question
    hits = find(golden, config, person, scope)
    names = _file_names(hits)
    outcome = Outcome(retrieved=[_document_json(h, names) for h in hits], cited=[])
    relevant = [h for h in hits if h.score >= settings.RELEVANCE_FLOOR]
    if not relevant:
        outcome.answer = prompts.not_found(languages.answer_language(text))
        outcome.refused = True
        outcome.total_ms = int((time.monotonic() - started) * 1000)
        outcome.language = goldens.detect_language(outcome.answer)
        return outcome
    packed = prompts.pack_sources(relevant, model.count_tokens, config.context_budget)
    sources, listed, again = History().number(packed)
    language = languages.answer_language(text)
    prompt = answering.compose_prompt(model, History(), text, listed, again, language)
    relay = answering.AnswerRelay(started)
    stats: GenerationStats = answering.generate(
        model, prompt, relay, stop or threading.Event(), max_tokens=config.max_answer_tokens
    )
    reply, cited = answering.verify_citations(relay.answer.strip(), {s.n for s in sources})
    by_number = {s.n: s for s in sources}
    outcome.answer = reply
    outcome.refused = is_refusal(reply) or not reply
    outcome.cited = [
        {"n": n, **_document_json(by_number[n].hit, names)} for n in cited if n in by_number
    ]
    outcome.ttft_ms = relay.ttft_ms
    outcome.total_ms = int((time.monotonic() - started) * 1000)
    outcome.prompt_tokens = stats.prompt_tokens
    outcome.output_tokens = stats.completion_tokens
    outcome.language = goldens.detect_language(reply)
    return outcome


# --- the judge ----------------------------------------------------------------------------

JUDGE_PROMPT = """\
You grade an assistant's answer against the expected answer to a question.
Question: {question}
Expected answer: {expected}
Assistant's answer: {answer}
Does the assistant's answer state the expected answer's facts, without contradicting them?
Reply with one line: "SCORE: n" where n is a whole number from 0 (wrong or missing) to 10
(fully correct), then one short sentence saying why."""

_SCORE = re.compile(r"SCORE\s*[:=]?\s*(\d{1,2})", re.IGNORECASE)


def judge(
    golden: GoldenQuestion, reply: str, config: Configuration
) -> tuple[float | None, str, str]:
    """(score from 0 to 1 or None when the judge gave none, the prompt, its output)."""
    if not golden.expected_answer or not golden.answerable:
        return None, "", ""
    text = JUDGE_PROMPT.format(
        question=golden.question, expected=golden.expected_answer, answer=reply or "(nothing)"
    )
    model = model_for(config)
    prompt = model.format.render("You are a careful grader.", "", text, [])
    relay = answering.AnswerRelay(time.monotonic())
    answering.generate(model, prompt, relay, threading.Event(), max_tokens=64)
    output = relay.answer.strip()
    found = _SCORE.search(output)
    score = min(int(found.group(1)), 10) / 10 if found else None
    return score, prompt, output
