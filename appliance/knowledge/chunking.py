"""Blocks into chunks: passages small enough to cite and to rank, that never cross a heading or
a page, so every citation names one section and one page."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from appliance.knowledge.document import Block

TARGET_CHARS = 700
"""Paragraphs are joined up to about this many characters (about 150 English words)."""
MAX_CHARS = 1000
"""A longer paragraph is cut at sentence ends."""
SECTION_SEPARATOR = " › "

_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;])\s*|\n+")


@dataclass(frozen=True)
class Chunk:
    ord: int
    section: str
    page: int | None
    kind: str
    text: str


def chunk_blocks(blocks: Iterable[Block]) -> list[Chunk]:
    chunks: list[Chunk] = []
    pending: list[str] = []
    where: tuple[tuple[str, ...], int | None] | None = None

    def flush() -> None:
        if pending and where is not None:
            chunks.append(Chunk(len(chunks), SECTION_SEPARATOR.join(where[0]), where[1], "text",
                                "\n".join(pending)))
        pending.clear()

    for block in blocks:
        text = block.text.strip()
        if not text:
            continue
        if block.kind == "record":
            flush()
            chunks.append(Chunk(len(chunks), SECTION_SEPARATOR.join(block.section), block.page,
                                "record", text))
            continue
        here = (block.section, block.page)
        if here != where or sum(map(len, pending)) + len(text) > TARGET_CHARS:
            flush()
            where = here
        for piece in _pieces(text):
            if pending and sum(map(len, pending)) + len(piece) > TARGET_CHARS:
                flush()
            pending.append(piece)
    flush()
    return chunks


def _pieces(text: str) -> Iterator[str]:
    """The text whole when it is short enough, else cut at sentence ends into parts of at most
    MAX_CHARS (a sentence longer than that is cut where it must be)."""
    if len(text) <= MAX_CHARS:
        yield text
        return
    part = ""
    for sentence in (s for s in _SENTENCE_END.split(text) if s):
        while len(sentence) > MAX_CHARS:
            if part:
                yield part
                part = ""
            yield sentence[:MAX_CHARS]
            sentence = sentence[MAX_CHARS:]
        if len(part) + len(sentence) + 1 > MAX_CHARS:
            yield part
            part = ""
        part = f"{part} {sentence}".strip() if part and not _cjk_join(part) else part + sentence
    if part:
        yield part


def _cjk_join(part: str) -> bool:
    """Chinese and Japanese sentences join without a space."""
    return bool(part) and "\u3000" <= part[-1] <= "\u9fff"
