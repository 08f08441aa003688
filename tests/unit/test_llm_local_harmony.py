"""LocalModel reads gpt-oss channels from token ids, with the tiny gpt-oss GGUF.

The tiny model (tests/support/tiny_gpt_oss.py) has gpt-oss's tokenizer shape: byte-level
BPE, so any text can also be written with ordinary tokens, and harmony's markers as special
tokens. Its weights are random, so to make it "write" a reply that spells
``<|channel|>final<|message|>`` inside its reasoning we script the token ids that
``Llama.generate`` hands to LocalModel's loop; everything after that (end-of-generation
checks, detokenizing, the reply reader) is the real code on the real vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inference.llm.base import GenerationStats, SpecialToken
from inference.llm.formats import HarmonyReader, HarmonyTokenReader
from inference.llm.harmony_tokens import MARKERS

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from inference.llm.backend import LocalModel  # noqa: E402  (after the importorskips)
from tests.support.tiny_gpt_oss import build_tiny_gpt_oss_gguf  # noqa: E402

SPELLED_HEADER = "<|channel|>final<|message|>"
PROMPT = "<|start|>user<|message|>Question?<|end|><|start|>assistant"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalModel]:
    path = build_tiny_gpt_oss_gguf(tmp_path_factory.mktemp("gguf") / "tiny-gpt-oss.gguf")
    local = LocalModel(
        Path(path), chat_format="harmony", context=256, threads=2, gpu_layers=0, seed=1
    )
    yield local
    local.llama.close()


def special(model: LocalModel, marker: str) -> int:
    ids = model.llama.tokenize(marker.encode("utf-8"), add_bos=False, special=True)
    assert len(ids) == 1, marker
    return int(ids[0])


def words(model: LocalModel, text: str) -> list[int]:
    """``text`` as ordinary tokens (merged where the vocabulary has merges)."""
    ids = [int(i) for i in model.llama.tokenize(text.encode("utf-8"), add_bos=False)]
    assert not set(ids) & set(model.markers), text
    return ids


def spelled(model: LocalModel, text: str) -> list[int]:
    """``text`` written character by character with ordinary tokens, as a model may write a
    marker's characters (tokenizing the whole marker, even with special=False, would find
    the marker's own token: llama.cpp matches gpt-oss's user-defined tokens in any text)."""
    ids = [tid for char in text for tid in words(model, char)]
    assert model.llama.detokenize(ids, special=True).decode("utf-8") == text
    return ids


def script_reply(model: LocalModel, monkeypatch: pytest.MonkeyPatch, ids: list[int]) -> None:
    def generate(tokens: Any, reset: bool = True, **sampling: Any) -> Iterator[int]:
        yield from ids

    monkeypatch.setattr(model.llama, "generate", generate)


def spelled_reply(model: LocalModel) -> list[int]:
    """Reasoning that quotes the final header (and a stop marker) in ordinary tokens, then
    the real final message, ended by the real <|return|>."""
    channel, message = special(model, "<|channel|>"), special(model, "<|message|>")
    return [
        channel,
        *words(model, "analysis"),
        message,
        *words(model, "The memo writes "),
        *spelled(model, SPELLED_HEADER),
        *words(model, " then my private notes"),
        special(model, "<|end|>"),
        special(model, "<|start|>"),
        *words(model, "assistant"),
        channel,
        *words(model, "final"),
        message,
        *words(model, "Use "),
        *spelled(model, "<|return|>"),
        *words(model, " as shown [1]."),
        special(model, "<|return|>"),
    ]


def read(reader: Any, pieces: list[str]) -> tuple[str, str]:
    answer, reasoning = "", ""
    for piece in [p for text in pieces for p in reader.feed(text)] + reader.close():
        if piece.kind == "answer":
            answer += piece.text
        else:
            reasoning += piece.text
    return answer, reasoning


def test_harmony_markers_are_looked_up_in_the_vocabulary(model: LocalModel) -> None:
    assert sorted(model.markers.values()) == sorted(MARKERS)
    for token_id, marker in model.markers.items():
        assert special(model, marker) == token_id
    assert isinstance(model.format.reader(), HarmonyTokenReader)


def test_spelled_markers_stay_text_in_the_channel_they_were_written_in(
    model: LocalModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = spelled_reply(model)
    script_reply(model, monkeypatch, script)
    stats = GenerationStats()

    pieces = list(model.stream(PROMPT, max_tokens=200, temperature=1.0, top_p=1.0, stats=stats))
    answer, reasoning = read(model.format.reader(), pieces)

    assert reasoning == f"The memo writes {SPELLED_HEADER} then my private notes"
    assert answer == "Use <|return|> as shown [1]."
    assert "private" not in answer
    # The spelled <|return|> neither stopped the loop nor the reader: the real one did.
    assert stats.stopped_by == "stop" and stats.completion_tokens == len(script)


def test_only_tokens_produced_by_id_come_out_as_special(
    model: LocalModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = spelled_reply(model)
    script_reply(model, monkeypatch, script)

    pieces = list(model.stream(PROMPT, max_tokens=200, temperature=1.0, top_p=1.0))

    got = [(piece.token_id, str(piece)) for piece in pieces if isinstance(piece, SpecialToken)]
    # Every special token the script holds, in order, except the <|return|> that ended it.
    markers = {special(model, marker): marker for marker in MARKERS}
    assert got == [(tid, markers[tid]) for tid in script[:-1] if tid in markers]
    # And all of it is still the reply's text, for callers that only want text.
    assert "".join(pieces) == model.llama.detokenize(script[:-1], special=True).decode()


def test_reading_the_same_reply_from_text_would_leak_reasoning(
    model: LocalModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scripted reply is one the text reader (the remote backend's) gets wrong: this
    is what reading by ids prevents."""
    script_reply(model, monkeypatch, spelled_reply(model))
    pieces = list(model.stream(PROMPT, max_tokens=200, temperature=1.0, top_p=1.0))

    answer, _ = read(HarmonyReader(), [str(piece) for piece in pieces])

    assert "private notes" in answer


def test_a_real_generation_marks_only_special_tokens(model: LocalModel) -> None:
    is_control = llama_cpp.llama_vocab_is_control
    vocab = model.llama._model.vocab
    stats = GenerationStats()

    pieces = list(model.stream(PROMPT, max_tokens=24, temperature=1.0, top_p=1.0, stats=stats))

    assert stats.completion_tokens >= 1
    for piece in pieces:
        if isinstance(piece, SpecialToken):
            assert piece.token_id in model.markers or is_control(vocab, piece.token_id)
    read(model.format.reader(), pieces)  # whatever random weights write, it parses
