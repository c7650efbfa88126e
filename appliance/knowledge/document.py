"""What a parser makes of one file: plain, frozen data that the chunker and the store take.

A parser turns the bytes of one file into `ParsedDocument` or raises `ImportRefused` with the
reason a field engineer can act on. Parsers never touch the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import GembaError


@dataclass(frozen=True)
class Block:
    """One run of text in reading order: a paragraph, a list item or a table row."""

    text: str
    section: tuple[str, ...] = ()
    """Heading path above this block, outermost first (e.g. ("5 Alarms", "5.2 Low pressure"))."""
    page: int | None = None
    """1-based page for formats that have pages (PDF); None for the others."""
    kind: str = "text"
    """`text` (prose, list item) or `record` (a table or spreadsheet row, headers included)."""


@dataclass(frozen=True)
class ParsedDocument:
    title: str
    """The document's own title (first heading, PDF/DOCX metadata title), else the file stem."""
    blocks: tuple[Block, ...]
    format: str
    """pdf, docx, xlsx, csv, markdown or text."""
    encoding: str | None = None
    """The text encoding chosen (text, Markdown, CSV); None for binary formats."""
    pages: int | None = None
    """Page count for paged formats."""
    flagged_pages: tuple[int, ...] = ()
    """Pages with no text layer or garbled text: reported to the engineer, not indexed."""
    warnings: tuple[str, ...] = ()
    """Things the engineer should know that did not stop the import."""


class ImportRefused(GembaError):
    """One file that cannot be imported; the others go on."""

    exit_code = 65
    http_status = 422
    kind = "import_refused"

    def __init__(self, reason: str, message: str, hint: str) -> None:
        super().__init__(message, hint)
        self.reason = reason
        """A closed set: encrypted, empty, unknown_type, too_large, no_text, undecodable,
        damaged."""

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "reason": self.reason}
