"""The model's cache is per question: llama.cpp keeps the KV cache of the longest common
token prefix with the previous prompt, so after person A's question, person B's may reuse
only the tokens their two prompts share (the system text and instructions), and B's answer
is exactly what a freshly loaded model with the same seed writes: no trace of A.

Runs the real SmolLM2 GGUF through ``inference.llm.backend.LocalModel``.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from inference import prompts
from inference.llm.backend import LocalModel
from inference.llm.base import GenerationStats

A_SECRET = "Anna Berg's salary for 2026 is 91,250 euros; her manager notes a warning."
A_USER = f"Sources:\n\n[1] Salary letter, page 1\n{A_SECRET}\n\nQuestion: What is my salary?"
B_USER = (
    "Sources:\n\n[1] Travel policy, page 3\nTrain tickets are reimbursed in second class."
    "\n\nQuestion: Which train tickets are reimbursed?"
)
SEED = 7


def _load() -> LocalModel:
    if not settings.LLM_MODEL_PATH.is_file():
        pytest.fail(f"the test model {settings.LLM_MODEL_PATH} is missing (deploy/test fetches it)")
    return LocalModel(
        settings.LLM_MODEL_PATH,
        chat_format=settings.LLM_CHAT_FORMAT,
        context=2048,
        threads=settings.LLM_THREADS,
        gpu_layers=0,
        seed=SEED,
    )


def _prompt(model: LocalModel, user: str) -> str:
    return model.format.render(prompts.SYSTEM, prompts.INSTRUCTIONS, user, [])


def _generate(model: LocalModel, user: str) -> tuple[str, GenerationStats]:
    stats = GenerationStats()
    text = "".join(
        model.stream(_prompt(model, user), max_tokens=24, temperature=0.7, top_p=0.95, stats=stats)
    )
    return text, stats


def _tokens(model: LocalModel, user: str) -> list[int]:
    return model.llama.tokenize(_prompt(model, user).encode(), add_bos=True, special=True)


def _shared_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@pytest.fixture(scope="module")
def warm() -> Any:
    return _load()


def test_the_next_persons_prompt_reuses_only_the_shared_prefix(warm: LocalModel) -> None:
    a_tokens, b_tokens = _tokens(warm, A_USER), _tokens(warm, B_USER)
    shared = _shared_prefix(a_tokens, b_tokens)
    before_user = len(_tokens(warm, "")) - 8  # the rendered system text and instructions
    assert shared >= before_user > 50  # the instructions are reused: the cache does help

    _generate(warm, A_USER)
    _, stats = _generate(warm, B_USER)

    assert 0 < stats.reused_prefix_tokens <= shared
    reused_text = warm.llama.detokenize(b_tokens[: stats.reused_prefix_tokens]).decode()
    assert "Anna" not in reused_text and "91,250" not in reused_text
    assert prompts.INSTRUCTIONS.splitlines()[-1] in reused_text


def test_an_answer_after_someone_elses_is_the_answer_of_a_fresh_model(warm: LocalModel) -> None:
    _generate(warm, A_USER)  # person A's question warms the cache...
    after_a, _ = _generate(warm, B_USER)  # ...then person B asks.
    fresh, _ = _generate(_load(), B_USER)
    assert after_a == fresh
    assert "Anna" not in after_a and "91,250" not in after_a
    # And the other way round: B's question leaves nothing in A's next answer either.
    again_a, stats = _generate(warm, A_USER)
    assert stats.reused_prefix_tokens <= _shared_prefix(
        _tokens(warm, A_USER), _tokens(warm, B_USER)
    )
    assert again_a == _generate(_load(), A_USER)[0]
