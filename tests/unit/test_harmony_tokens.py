"""The harmony reply parser driven by token ids (the local backend's), without a model.

A reply is fed as the local backend streams it: special tokens (by id, here by their
marker text) apart from ordinary text. The recorded replies of tests/fixtures/harmony must
read as they do through the text parser when their markers are real tokens; and text that
merely *spells* a marker must stay text where the text parser is fooled by it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from inference.llm.base import Piece, SpecialToken
from inference.llm.formats import HarmonyFormat, HarmonyReader, HarmonyTokenReader
from inference.llm.harmony import Delta, parse_completion
from inference.llm.harmony_tokens import MARKERS, HarmonyTokenParser

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "harmony"
EXPECTED: dict[str, dict[str, object]] = json.loads(
    (FIXTURES / "expected.json").read_text(encoding="utf-8")
)
# Replies that carry their markers (all but the ones llama.cpp rendered without any).
WITH_MARKERS = sorted(name for name in EXPECTED if not name.startswith("stripped_"))
_MARKER_RE = re.compile("|".join(re.escape(marker) for marker in MARKERS))

# What the local backend yields when the model *spells* the final header inside its
# reasoning: ordinary tokens, so plain text, however it reads.
SPELLED_HEADER = "<|channel|>final<|message|>"


def as_tokens(text: str) -> list[tuple[bool, str]]:
    """A recorded reply as (is_special, text) pieces: each marker a special token, the text
    between them split into word-sized ordinary pieces."""
    pieces: list[tuple[bool, str]] = []
    position = 0
    for match in _MARKER_RE.finditer(text):
        words = re.findall(r"\s?\S+|\s", text[position : match.start()])
        pieces += [(False, word) for word in words]
        pieces.append((True, match.group()))
        position = match.end()
    pieces += [(False, word) for word in re.findall(r"\s?\S+|\s", text[position:])]
    assert "".join(piece for _, piece in pieces) == text
    return pieces


def run(pieces: list[tuple[bool, str]]) -> tuple[dict[str, str], HarmonyTokenParser]:
    parser = HarmonyTokenParser()
    by_channel: dict[str, str] = {}
    for special, text in pieces:
        deltas = parser.feed_marker(text) if special else parser.feed_text(text)
        for delta in deltas:
            assert isinstance(delta, Delta) and delta.text
            by_channel[delta.channel] = by_channel.get(delta.channel, "") + delta.text
    assert parser.close() == []
    return by_channel, parser


def text(value: str) -> tuple[bool, str]:
    return False, value


def special(value: str) -> tuple[bool, str]:
    return True, value


# --------------------------------------------------------------------------- recorded replies


@pytest.mark.parametrize("name", WITH_MARKERS)
def test_recorded_replies_read_as_the_text_parser_reads_them(name: str) -> None:
    by_channel, parser = run(as_tokens((FIXTURES / name).read_text(encoding="utf-8")))

    expected = EXPECTED[name]
    assert by_channel.pop("final", "") == expected["final"]
    assert by_channel.pop("analysis", "") == expected["reasoning"]
    assert by_channel == expected["other"]
    assert parser.saw_final is expected["saw_final"]


# --------------------------------------------------------------------------- spelled markers


def test_spelled_final_header_inside_reasoning_stays_reasoning() -> None:
    by_channel, parser = run(
        [
            special("<|channel|>"),
            text("analysis"),
            special("<|message|>"),
            text("The user quotes "),
            text(SPELLED_HEADER),
            text(" and my private notes go on."),
            special("<|end|>"),
        ]
    )

    assert by_channel == {
        "analysis": f"The user quotes {SPELLED_HEADER} and my private notes go on."
    }
    assert parser.saw_final is False  # no answer: the caller reports a failed answer


def test_the_text_parser_is_fooled_by_the_same_reply() -> None:
    """Why the local backend reads ids: from text alone the spelling opens the answer."""
    reply = f"<|channel|>analysis<|message|>The user quotes {SPELLED_HEADER} private notes<|end|>"

    fooled = parse_completion(reply)

    assert fooled.final == " private notes" and fooled.saw_final


def test_spelled_markers_in_the_answer_stay_in_the_answer() -> None:
    by_channel, parser = run(
        [
            special("<|channel|>"),
            text("final"),
            special("<|message|>"),
            text("Write "),
            text("<|end|>"),
            text(" or "),
            text("<|return|>"),
            text(" literally [1]."),
            special("<|return|>"),
        ]
    )

    assert by_channel == {"final": "Write <|end|> or <|return|> literally [1]."}
    assert parser.saw_final and parser.finished


def test_spelled_channel_marker_in_a_header_does_not_open_the_final_channel() -> None:
    by_channel, parser = run(
        [
            special("<|channel|>"),
            text("analysis"),
            text(SPELLED_HEADER),
            special("<|message|>"),
            text("reasoning"),
            special("<|end|>"),
        ]
    )

    assert "final" not in by_channel
    assert not parser.saw_final


def test_spelled_stop_marker_does_not_finish_the_reply() -> None:
    _, parser = run(
        [special("<|channel|>"), text("final"), special("<|message|>"), text("<|call|>")]
    )

    assert not parser.finished


# --------------------------------------------------------------------------- structure


def test_answer_streams_as_it_comes_holding_nothing_back() -> None:
    parser = HarmonyTokenParser()
    parser.feed_marker("<|channel|>")
    parser.feed_text("final")

    assert parser.feed_marker("<|message|>") == []
    assert parser.feed_text("<|chan") == [Delta("final", "<|chan")]
    assert parser.feed_text("assistant") == [Delta("final", "assistant")]


def test_tool_call_recipient_and_channel_come_from_the_header() -> None:
    parser = HarmonyTokenParser()
    for marker_or_text in ("<|channel|>", "commentary to=functions.search ", "<|constrain|>"):
        if marker_or_text.startswith("<|"):
            parser.feed_marker(marker_or_text)
        else:
            parser.feed_text(marker_or_text)
    parser.feed_text("json")
    parser.feed_marker("<|message|>")

    assert (parser.channel, parser.recipient) == ("commentary", "functions.search")
    assert parser.feed_text('{"q": 1}') == [Delta("commentary", '{"q": 1}')]
    parser.feed_marker("<|call|>")
    assert parser.finished and not parser.saw_final and parser.channel is None


def test_other_special_tokens_are_neither_text_nor_structure() -> None:
    by_channel, _ = run(
        [
            special("<|channel|>"),
            text("final"),
            special("<|message|>"),
            text("Yes"),
            special("<|reserved_200013|>"),
            text(" [1]."),
        ]
    )

    assert by_channel == {"final": "Yes [1]."}


def test_messages_of_other_roles_are_not_the_answer() -> None:
    by_channel, parser = run(
        [
            special("<|start|>"),
            text("user"),
            special("<|message|>"),
            text("ignore me"),
            special("<|end|>"),
            special("<|start|>"),
            text("assistant"),
            special("<|channel|>"),
            text("final"),
            special("<|message|>"),
            text("Answer."),
        ]
    )

    assert by_channel == {"final": "Answer."}
    assert parser.saw_final


def test_feeding_after_close_is_an_error() -> None:
    parser = HarmonyTokenParser()
    parser.close()

    assert parser.close() == []
    with pytest.raises(RuntimeError):
        parser.feed_text("more")
    with pytest.raises(RuntimeError):
        parser.feed_marker("<|end|>")


# --------------------------------------------------------------------------- readers


def test_token_reader_takes_structure_only_from_special_tokens() -> None:
    reader = HarmonyFormat("low", by_token_id=True).reader()
    assert isinstance(reader, HarmonyTokenReader)
    stream = [
        SpecialToken("<|channel|>", 200005),
        "analysis",
        SpecialToken("<|message|>", 200008),
        "Thinking ",
        SPELLED_HEADER,  # a plain str: text, whatever it spells
        "still thinking",
        SpecialToken("<|end|>", 200007),
        SpecialToken("<|start|>", 200006),
        "assistant",
        SpecialToken("<|channel|>", 200005),
        "final",
        SpecialToken("<|message|>", 200008),
        "42 [1].",
    ]

    pieces = [piece for item in stream for piece in reader.feed(item)] + reader.close()

    assert pieces == [
        Piece("Thinking ", "reasoning"),
        Piece(SPELLED_HEADER, "reasoning"),
        Piece("still thinking", "reasoning"),
        Piece("42 [1].", "answer"),
    ]
    assert reader.complete


def test_text_reader_stays_the_default_for_replies_that_are_only_text() -> None:
    assert isinstance(HarmonyFormat("low").reader(), HarmonyReader)


def test_special_token_is_its_text_to_everyone_else() -> None:
    token = SpecialToken("<|end|>", 200007)

    assert token == "<|end|>" and "".join(["a", token]) == "a<|end|>"
    assert token.token_id == 200007
    assert type(str(token)) is str
