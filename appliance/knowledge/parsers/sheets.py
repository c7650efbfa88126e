"""CSV and XLSX: one record block per row, each value labelled with its column's header."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from itertools import zip_longest

from appliance.knowledge.document import Block, ParsedDocument
from appliance.knowledge.parsers.cleaning import clean_cell
from appliance.knowledge.parsers.encodings import decode_text
from appliance.knowledge.parsers.names import file_stem

_DELIMITERS = ",;\t"
_SNIFF_CHARS = 16_384


def record_text(header: Sequence[str], values: Sequence[str]) -> str:
    """ "Code: E-104 | Alarm: Low suction pressure"; empty values are left out."""
    parts = [f"{label}: {value}" if label else value
             for label, value in zip_longest(header, values, fillvalue="") if value]
    return " | ".join(parts)


def table_records(rows: Iterable[Sequence[str]], section: tuple[str, ...]) -> list[Block]:
    """Record blocks for rows of cell texts: the first non-empty row is the header."""
    header: list[str] | None = None
    blocks: list[Block] = []
    for row in rows:
        values = [clean_cell(value) for value in row]
        if not any(values):
            continue
        if header is None:
            header = values
            continue
        blocks.append(Block(record_text(header, values), section, kind="record"))
    return blocks


def parse_csv(name: str, data: bytes, locale: str) -> ParsedDocument:
    text, encoding = decode_text(data, locale, name=name)
    rows = csv.reader(io.StringIO(text, newline=""), _dialect(text))
    blocks = table_records(rows, ())
    return ParsedDocument(file_stem(name), tuple(blocks), "csv", encoding)


def _dialect(text: str) -> type[csv.Dialect] | str:
    try:
        return csv.Sniffer().sniff(text[:_SNIFF_CHARS], delimiters=_DELIMITERS)
    except csv.Error:
        return "excel"


def parse_xlsx(name: str, data: bytes, locale: str) -> ParsedDocument:
    # Imported here so that text and PDF imports never pay for openpyxl.
    from openpyxl import load_workbook

    workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        blocks: list[Block] = []
        for sheet in workbook.worksheets:  # hidden sheets too: they often hold the lookup data
            rows = ([cell_text(value) for value in row]
                    for row in sheet.iter_rows(values_only=True))
            blocks.extend(table_records(rows, (sheet.title,)))
        title = (workbook.properties.title or "").strip() or file_stem(name)
    finally:
        workbook.close()
    return ParsedDocument(title, tuple(blocks), "xlsx")


def cell_text(value: object) -> str:
    """A spreadsheet value as the engineer would read it; None (an empty cell) is ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return format(value, ".15g")  # Excel shows 15 significant digits
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date().isoformat()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)
