"""Blocks to chunks sized in the embedding model's own word pieces.

A chunk never exceeds what the model reads (all-MiniLM-L6-v2 stops at 256 word pieces and
would silently ignore the rest), follows the document's sections (a new heading starts a
new chunk), keeps table rows whole, and repeats a little of the previous chunk's end so a
sentence cut at the boundary is still found.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ingest.parsing import Block

_SENTENCE_BREAK = re.compile(r"(?<=[.!?;])\s+(?=\S)|\n+")

Counter = Callable[[list[str]], list[int]]


@dataclass
class ChunkDraft:
    text: str
    page: int | None
    section: str
    token_count: int

    def embedding_text(self) -> str:
        """What the model reads: the section heading gives the passage its context."""
        if self.section and not self.text.startswith(self.section):
            return f"{self.section}\n{self.text}"
        return self.text


@dataclass
class _Unit:
    text: str
    tokens: int
    page: int | None
    title: bool = False  # a heading kept as text (it had no body of its own)


@dataclass
class _Open:
    section: str = ""
    section_tokens: int = 0
    units: list[_Unit] = field(default_factory=list)
    # The section comes from a heading that no text has followed yet: if another heading
    # comes first, this one is kept as text, not lost (cover pages, slide titles, ...).
    pending_page: int | None = None
    pending: bool = False

    @property
    def tokens(self) -> int:
        return sum(u.tokens for u in self.units)


def chunk_blocks(
    blocks: Iterable[Block],
    count: Counter,
    *,
    target_tokens: int,
    overlap_tokens: int,
    limit_tokens: int,
) -> Iterator[ChunkDraft]:
    """``target_tokens``: the usual size; ``limit_tokens``: what the model reads, minus its
    special tokens, which no chunk (heading included) may exceed."""
    target = min(target_tokens, limit_tokens)
    current = _Open()

    def emit(carry_overlap: bool) -> Iterator[ChunkDraft]:
        nonlocal current
        if not current.units:
            return
        text = (
            "\n".join(u.text for u in current.units)
            if _is_table(current)
            else " ".join(u.text for u in current.units)
        )
        heading_cost = (
            current.section_tokens + 1
            if current.section and not text.startswith(current.section)
            else 0
        )
        yield ChunkDraft(
            text=text,
            page=current.units[0].page,
            section=current.section,
            token_count=current.tokens + heading_cost,
        )
        tail: list[_Unit] = []
        if carry_overlap and overlap_tokens:
            for unit in reversed(current.units):
                if sum(u.tokens for u in tail) + unit.tokens > overlap_tokens:
                    break
                tail.insert(0, unit)
        current = _Open(current.section, current.section_tokens, tail)

    def add(unit: _Unit, table: bool) -> Iterator[ChunkDraft]:
        room = limit_tokens - (current.section_tokens + 1 if current.section else 0)
        if current.units and current.tokens + unit.tokens > min(target, room):
            yield from emit(carry_overlap=not table)
            while current.units and current.tokens + unit.tokens > room:
                current.units.pop(0)
        current.units.append(unit)

    def keep_pending_heading() -> Iterator[ChunkDraft]:
        if current.pending and current.section:
            unit = _Unit(current.section, current.section_tokens, current.pending_page, True)
            current.pending = False
            yield from add(unit, table=False)

    for block in blocks:
        if block.kind == "title":
            section = block.heading or block.text
            (section_tokens,) = count([section])
            if len(section) <= 300 and section_tokens <= limit_tokens // 3:
                if any(not u.title for u in current.units):
                    yield from emit(carry_overlap=False)
                else:
                    yield from keep_pending_heading()
                current.section, current.section_tokens = section, section_tokens
                current.pending, current.pending_page = True, block.page
                continue
            # A "heading" that is really a paragraph: read as text under the current one.
            block = Block(block.text, block.page, current.section)
        if block.heading != current.section and not current.units:
            section = block.heading[:300]
            current.section = section
            (current.section_tokens,) = count([section]) if section else (0,)
        room = limit_tokens - (current.section_tokens + 1 if current.section else 0)
        for unit in _units(block, count, room):
            current.pending = False
            yield from add(unit, table=block.kind == "table")
    yield from keep_pending_heading()
    yield from emit(carry_overlap=False)


def _is_table(open_chunk: _Open) -> bool:
    return any("\n" in u.text or " | " in u.text for u in open_chunk.units)


def _units(block: Block, count: Counter, room: int) -> Iterator[_Unit]:
    """The block, or its rows or sentences when it is too long; nothing above ``room``."""
    text = block.text.strip()
    if not text:
        return
    (tokens,) = count([text])
    if tokens <= room:
        yield _Unit(text, tokens, block.page)
        return
    pieces = text.split("\n") if block.kind == "table" else _SENTENCE_BREAK.split(text)
    pieces = [p.strip() for p in pieces if p and p.strip()]
    for piece, piece_tokens in zip(pieces, count(pieces), strict=True):
        if piece_tokens <= room:
            yield _Unit(piece, piece_tokens, block.page)
        else:
            yield from _split_words(piece, count, room, block.page)


def _split_words(text: str, count: Counter, room: int, page: int | None) -> Iterator[_Unit]:
    """Last resort for a sentence longer than the model reads: cut between words."""
    words = text.split()
    word_tokens = count(words)
    start, total = 0, 0
    for index, tokens in enumerate(word_tokens):
        if total + tokens > room and index > start:
            yield _Unit(" ".join(words[start:index]), total, page)
            start, total = index, 0
        total += min(tokens, room)
    if start < len(words):
        yield _Unit(" ".join(words[start:]), total, page)
