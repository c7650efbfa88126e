"""Plain text and Markdown: paragraphs, with sections from ATX or numbered headings."""

from __future__ import annotations

import re

from appliance.knowledge.document import Block, ParsedDocument
from appliance.knowledge.parsers.cleaning import clean_text
from appliance.knowledge.parsers.encodings import decode_text
from appliance.knowledge.parsers.headings import Line, SectionPath, sectioned_blocks
from appliance.knowledge.parsers.names import file_stem

_ATX = re.compile(r"^ {0,3}(?P<marks>#{1,6})(?:[ \t]+(?P<title>.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
MAX_TITLE_CHARS = 80


def parse_markdown(name: str, data: bytes, locale: str) -> ParsedDocument:
    text, encoding = decode_text(data, locale, name=name)
    section = SectionPath()
    blocks: list[Block] = []
    title = ""
    paragraph: list[str] = []
    in_fence = False

    def flush() -> None:
        block_text = clean_text("\n".join(paragraph))
        if block_text:
            blocks.append(Block(block_text, section.current))
        paragraph.clear()

    for line in clean_text(text).split("\n"):
        heading = None if in_fence else _ATX.match(line)
        if _FENCE.match(line):
            in_fence = not in_fence
        if heading and heading.group("title"):
            flush()
            level, heading_text = len(heading.group("marks")), heading.group("title").strip()
            section.enter(level, heading_text)
            title = title or (heading_text if level == 1 else "")
        elif not line.strip() and not in_fence:
            flush()
        else:
            paragraph.append(line)
    flush()
    return ParsedDocument(title or file_stem(name), tuple(blocks), "markdown", encoding)


def parse_text(name: str, data: bytes, locale: str) -> ParsedDocument:
    text, encoding = decode_text(data, locale, name=name)
    lines = [Line(line) for line in clean_text(text).split("\n")]
    blocks = sectioned_blocks(lines)
    first_line = next((line.text for line in lines if line.text.strip()), "")
    title = first_line if 0 < len(first_line) <= MAX_TITLE_CHARS else file_stem(name)
    return ParsedDocument(title, tuple(blocks), "text", encoding)

