"""Numbered headings in text and PDF lines ("3.2 Low pressure", "第3章 …") and section paths."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from appliance.knowledge.document import Block

_DIGITS = "0-9０-９"
_NUMBERED = re.compile(
    rf"^(?P<number>[1-9１-９][{_DIGITS}]?(?:[.．][{_DIGITS}]{{1,2}}){{0,4}})"
    rf"(?:[.．、]\s*|\s+)(?P<title>\S.*)$")
_CHAPTER = re.compile(
    r"^第[0-9０-９一二三四五六七八九十百零〇]{1,4}(?P<unit>[章节節条條部篇])(?:\s*(?P<title>.*))?$")
# 一、适用范围 / （二）操作步骤: how Chinese regulations number their parts.
_HAN_NUMBERED = re.compile(r"^(?:(?P<top>[一二三四五六七八九十]{1,3})、|[（(](?P<sub>[一二三四五六七八九十]{1,3})[)）])"
                           r"\s*(?P<title>\S.*)$")
_CHAPTER_LEVELS = {"部": 1, "篇": 1, "章": 1, "节": 2, "節": 2, "条": 3, "條": 3}
_UNITS = {"mpa", "kpa", "pa", "bar", "psi", "v", "kv", "a", "ma", "w", "kw", "hz", "rpm", "mm",
          "cm", "m", "kg", "g", "l", "min", "s", "h", "°c", "℃", "%", "x"}
_SENTENCE_END = tuple(".。:：;；,，、!！?？")
MAX_HEADING_CHARS = 80


def heading_level(line: str) -> int | None:
    """The level (1 = chapter) of a numbered heading line, or None for anything else.

    Conservative on purpose: a heading is short, does not end like a sentence, and its title
    starts with a letter (upper case if Latin) that is not a unit, so "1.5 MPa" is no heading.
    """
    line = line.strip()
    if not line or len(line) > MAX_HEADING_CHARS or line.endswith(_SENTENCE_END):
        return None
    chapter = _CHAPTER.match(line)
    if chapter:
        return _CHAPTER_LEVELS[chapter.group("unit")]
    han = _HAN_NUMBERED.match(line)
    if han and len(han.group("title")) <= 30:
        return 1 if han.group("top") else 2
    numbered = _NUMBERED.match(line)
    if not numbered or not _looks_like_title(numbered.group("title")):
        return None
    return numbered.group("number").count(".") + numbered.group("number").count("．") + 1


def _looks_like_title(title: str) -> bool:
    first = title[0]
    if not first.isalpha() or title.split()[0].lower() in _UNITS:
        return False
    return not (first.isascii() and first.islower())


class SectionPath:
    """The heading path at the current point of a document, outermost first."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> None:
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, title))

    @property
    def current(self) -> tuple[str, ...]:
        return tuple(title for _, title in self._stack)


@dataclass(frozen=True)
class Line:
    text: str
    page: int | None = None


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    page: int | None


@dataclass(frozen=True)
class Paragraph:
    text: str
    page: int | None


def walk_lines(lines: Sequence[Line]) -> Iterator[Heading | Paragraph]:
    """Headings and paragraphs in reading order.

    A paragraph ends at a blank line, a page change or a heading. A numbered line counts as a
    heading only when text follows it and it is not part of a numbered list (a neighbouring line
    numbered at the same level).
    """
    levels = [heading_level(line.text) for line in lines]
    paragraph: list[Line] = []
    for index, line in enumerate(lines):
        if paragraph and (not line.text.strip() or line.page != paragraph[-1].page):
            yield Paragraph("\n".join(part.text for part in paragraph), paragraph[0].page)
            paragraph = []
        if _is_heading(lines, levels, index):
            if paragraph:
                yield Paragraph("\n".join(part.text for part in paragraph), paragraph[0].page)
                paragraph = []
            yield Heading(levels[index] or 1, line.text.strip(), line.page)
        elif line.text.strip():
            paragraph.append(line)
    if paragraph:
        yield Paragraph("\n".join(part.text for part in paragraph), paragraph[0].page)


def _is_heading(lines: Sequence[Line], levels: list[int | None], index: int) -> bool:
    level = levels[index]
    if level is None:
        return False
    following = _neighbour(lines, index, +1)
    if following is None:
        return False
    preceding = _neighbour(lines, index, -1, same_paragraph=True)
    if following == index + 1 and levels[following] == level:
        return False
    return preceding is None or levels[preceding] != level


def _neighbour(lines: Sequence[Line], index: int, step: int,
               same_paragraph: bool = False) -> int | None:
    """The nearest non-blank line before or after `index` (None if there is none)."""
    position = index + step
    while 0 <= position < len(lines):
        if lines[position].text.strip():
            return position
        if same_paragraph:
            return None
        position += step
    return None


def sectioned_blocks(lines: Sequence[Line],
                     tidy: Callable[[str], str] = lambda text: text) -> list[Block]:
    """The paragraphs of `lines` as blocks, each under the numbered headings above it."""
    section = SectionPath()
    blocks: list[Block] = []
    for item in walk_lines(lines):
        if isinstance(item, Heading):
            section.enter(item.level, item.text)
        else:
            blocks.append(Block(tidy(item.text), section.current, item.page))
    return blocks
