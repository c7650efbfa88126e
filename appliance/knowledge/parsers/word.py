"""DOCX: paragraphs and tables in body order, sections from heading styles and w:outlineLvl."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

from appliance.knowledge.document import Block, ParsedDocument
from appliance.knowledge.parsers.cleaning import clean_text
from appliance.knowledge.parsers.headings import SectionPath
from appliance.knowledge.parsers.names import file_stem
from appliance.knowledge.parsers.sheets import table_records

# Built-in and localized heading style names (Word stores built-ins in English; WPS and
# localized templates may carry their own names).
_HEADING_NAME = re.compile(
    r"^(?:heading|标题|標題|見出し|überschrift|titre|título|titolo|kop|rubrik|заголовок)"
    r"\s*(?P<level>[1-9])$", re.IGNORECASE)
_TITLE_NAMES = {"title", "标题", "標題", "表題", "titel", "titre", "título", "titolo"}
_BODY_TEXT_LEVEL = 9  # w:outlineLvl 9 is Word's "Body Text"
_MAX_STYLE_DEPTH = 16
TITLE = 0  # heading level of the document title


def parse_docx(name: str, data: bytes, locale: str) -> ParsedDocument:
    # Imported here so that text and PDF imports never pay for python-docx.
    from docx import Document

    document = Document(io.BytesIO(data))
    section = SectionPath()
    blocks: list[Block] = []
    first_title = ""
    for kind, item in _body_items(document):
        if kind == "table":
            blocks.extend(table_records(_table_rows(item), section.current))
            continue
        text = clean_text(item.text)
        if not text:
            continue
        level = paragraph_heading_level(item)
        if level == TITLE or (level == 1 and not first_title):
            first_title = first_title or text
        if level is None or level == TITLE:
            blocks.append(Block(text, section.current))
        else:
            section.enter(level, text)
    # core_properties.revision is Word's save counter, not the document's revision: not used.
    title = _core_title(document) or first_title or file_stem(name)
    return ParsedDocument(title, tuple(blocks), "docx")


def _core_title(document: Any) -> str:
    # python-docx invents "Word Document" when a file has no core properties part: ask first.
    from docx.opc.constants import RELATIONSHIP_TYPE

    try:
        document.part.package.part_related_by(RELATIONSHIP_TYPE.CORE_PROPERTIES)
    except KeyError:
        return ""
    return (document.core_properties.title or "").strip()


def _body_items(document: Any) -> Iterator[tuple[str, Any]]:
    """("paragraph", Paragraph) and ("table", Table) in body order, content controls opened."""
    from docx.oxml.ns import qn
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    paragraph_tag, table_tag, sdt_tag = qn("w:p"), qn("w:tbl"), qn("w:sdt")
    content_tag = qn("w:sdtContent")

    def walk(parent: Any) -> Iterator[tuple[str, Any]]:
        for element in parent.iterchildren():
            if element.tag == paragraph_tag:
                yield "paragraph", Paragraph(element, document.part)
            elif element.tag == table_tag:
                yield "table", Table(element, document.part)
            elif element.tag == sdt_tag:
                for content in element.iterchildren(content_tag):
                    yield from walk(content)

    yield from walk(document.element.body)


def _table_rows(table: Any) -> Iterator[list[str]]:
    for row in table.rows:
        seen: set[int] = set()
        values: list[str] = []
        for cell in row.cells:
            # A horizontally merged cell comes back once per grid column: keep it once.
            if id(cell._element) not in seen:
                seen.add(id(cell._element))
                values.append(cell.text)
        yield values


def paragraph_heading_level(paragraph: Any) -> int | None:
    """1-based heading level, TITLE (0) for the title style, None for body text.

    Direct w:outlineLvl on the paragraph wins, then w:outlineLvl on its style or the styles it
    is based on, then the style name ("Heading 2", "标题 2", "見出し 2", "Title").
    """
    direct = _outline_level(paragraph._p.pPr)
    if direct is not None:
        return None if direct >= _BODY_TEXT_LEVEL else direct + 1
    style = paragraph.style
    for _ in range(_MAX_STYLE_DEPTH):
        if style is None:
            return None
        outline = _outline_level(style.element.pPr)
        if outline is not None:
            return None if outline >= _BODY_TEXT_LEVEL else outline + 1
        by_name = _level_from_name(style.name or "")
        if by_name is not None:
            return by_name
        style = style.base_style
    return None


def _outline_level(paragraph_properties: Any) -> int | None:
    if paragraph_properties is None:
        return None
    from docx.oxml.ns import qn

    element = paragraph_properties.find(qn("w:outlineLvl"))
    value = element.get(qn("w:val")) if element is not None else None
    return int(value) if value is not None and value.isdigit() else None


def _level_from_name(style_name: str) -> int | None:
    name = style_name.strip()
    if name.lower() in _TITLE_NAMES:
        return TITLE
    match = _HEADING_NAME.match(name)
    return int(match.group("level")) if match else None
