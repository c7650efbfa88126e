"""Plant files to `ParsedDocument`: one `parse()` for PDF, DOCX, XLSX, CSV, Markdown and text.

    parse(name, data, locale="en", max_file_bytes=None) -> ParsedDocument
    decode_text(data, locale) -> (text, encoding)          (see `encodings` for the cascade)

The type comes from the extension (case-insensitive). Every failure is an `ImportRefused` whose
reason is one of encrypted, empty, unknown_type, too_large, no_text, undecodable or damaged, and
whose message names the file; an exception from a parsing library never escapes `parse()`: it
becomes "damaged".

Text stays verbatim so that citations can be checked against the file: no Unicode
normalization, no case folding, no dehyphenation. The only changes are line endings to \\n,
control characters removed, runs of spaces in a line collapsed, blanks trimmed at line ends, a
single line break between two CJK characters in PDFs removed (layout, not the author's), and
table/spreadsheet values put on one line.

Headings are not blocks of their own: they become the `section` path of the blocks under them.
Table and spreadsheet rows become `kind="record"` blocks, "Header: value | Header: value".
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.knowledge.document import ImportRefused, ParsedDocument
from appliance.knowledge.parsers.encodings import decode_text
from appliance.knowledge.parsers.names import base_name, extension
from appliance.knowledge.parsers.pdf import parse_pdf
from appliance.knowledge.parsers.refusals import (
    ACCEPTED_EXTENSIONS,
    damaged,
    empty,
    too_large,
    unknown_type,
)
from appliance.knowledge.parsers.sheets import parse_csv, parse_xlsx
from appliance.knowledge.parsers.text import parse_markdown, parse_text
from appliance.knowledge.parsers.word import parse_docx

__all__ = ["ACCEPTED_EXTENSIONS", "decode_text", "format_for", "parse"]

Parser = Callable[[str, bytes, str], ParsedDocument]
_FORMATS = {".pdf": "pdf", ".docx": "docx", ".xlsx": "xlsx", ".csv": "csv",
            ".md": "markdown", ".markdown": "markdown",
            ".txt": "text", ".text": "text", ".log": "text"}
_PARSERS: dict[str, Parser] = {"pdf": parse_pdf, "docx": parse_docx, "xlsx": parse_xlsx,
                               "csv": parse_csv, "markdown": parse_markdown, "text": parse_text}


def format_for(name: str) -> str:
    """pdf, docx, xlsx, csv, markdown or text from a file name; refuses any other type."""
    suffix = extension(name)
    if suffix not in _FORMATS:
        raise unknown_type(base_name(name), suffix)
    return _FORMATS[suffix]


def parse(name: str, data: bytes, locale: str = "en",
          max_file_bytes: int | None = None) -> ParsedDocument:
    """The blocks of one file, or ImportRefused saying why not and what to do.

    `name` is the file's name (a path is fine: only its last part is used); `locale` (en, zh,
    ja) orders the legacy encodings tried for text files; `max_file_bytes` None means no limit.
    """
    shown_name = base_name(name)
    file_format = format_for(name)
    if max_file_bytes is not None and len(data) > max_file_bytes:
        raise too_large(shown_name, len(data), max_file_bytes)
    if not data or data.isspace():
        raise empty(shown_name)
    try:
        document = _PARSERS[file_format](shown_name, data, locale)
    except ImportRefused:
        raise
    except Exception as error:  # a library's exception must not reach the engineer raw
        raise damaged(shown_name, file_format, error) from error
    if not document.blocks:
        raise empty(shown_name)
    return document
