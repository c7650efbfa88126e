"""PDF: text per page with pypdfium2; pypdf detects encryption and reads when pdfium cannot."""

from __future__ import annotations

import io
import threading
import unicodedata
from typing import Any

from appliance.knowledge.document import ParsedDocument
from appliance.knowledge.parsers.cleaning import clean_text, join_cjk_lines
from appliance.knowledge.parsers.headings import Line, sectioned_blocks
from appliance.knowledge.parsers.names import file_stem
from appliance.knowledge.parsers.refusals import damaged, empty, encrypted, no_text

# PDFium is not thread-safe; the daemon may import from several threads.
_PDFIUM_LOCK = threading.Lock()
_GARBLED_SHARE = 0.10
_NOT_TITLES = {"untitled", "anonymous", "unknown", "title"}
MAX_TITLE_CHARS = 80


def parse_pdf(name: str, data: bytes, locale: str) -> ParsedDocument:
    page_texts, metadata_title, warnings = _read_pages(name, data)
    if not page_texts:
        raise empty(name)
    flagged = tuple(number for number, text in enumerate(page_texts, 1)
                    if not is_readable_page(text))
    if len(flagged) == len(page_texts):
        raise no_text(name, len(page_texts))
    lines = [Line(line, number) for number, text in enumerate(page_texts, 1)
             if number not in flagged for line in clean_text(text).split("\n")]
    blocks = sectioned_blocks(lines, join_cjk_lines)
    if flagged:
        listed = ", ".join(str(number) for number in flagged)
        warnings.append(f"{name}: page(s) {listed} of {len(page_texts)} have no readable text "
                        "(scanned images or garbled fonts) and were not indexed")
    title = metadata_title or _first_line_title(page_texts[0] if 1 not in flagged else "")
    return ParsedDocument(title or file_stem(name), tuple(blocks), "pdf", None,
                          len(page_texts), flagged, tuple(warnings))


def is_readable_page(text: str) -> bool:
    """False for a page with no text (a scan) or garbled text (a font without a text mapping).

    Garbled: more than 10 % of the visible characters are U+FFFD, private-use, unassigned or
    control characters, or there is not one letter (Latin, CJK or other) on the page.
    """
    visible = [ch for ch in text if not ch.isspace()]
    if not any(ch.isalpha() for ch in visible):
        return False
    bad = sum(1 for ch in visible
              if ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Co", "Cn"))
    return bad <= len(visible) * _GARBLED_SHARE


def _read_pages(name: str, data: bytes) -> tuple[list[str], str, list[str]]:
    """(text per page, metadata title, warnings); refuses encrypted and unreadable files."""
    locked = _pypdf_says_encrypted(data)
    try:
        texts, title = _pdfium_pages(data)
        return texts, title, []
    except Exception as error:
        if locked or "password" in str(error).lower():
            raise encrypted(name) from error
        pdfium_error = error
    try:
        texts, title = _pypdf_pages(data)
    except Exception as error:
        raise damaged(name, "pdf", pdfium_error) from error
    return texts, title, [f"{name}: read with the fallback PDF reader because PDFium could "
                          f"not open it ({type(pdfium_error).__name__}: {pdfium_error})"]


def _pypdf_says_encrypted(data: bytes) -> bool:
    from pypdf import PdfReader

    try:
        return bool(PdfReader(io.BytesIO(data)).is_encrypted)
    except Exception:  # a file pypdf cannot open still gets its chance with PDFium
        return False


def _pdfium_pages(data: bytes) -> tuple[list[str], str]:
    import pypdfium2 as pdfium

    with _PDFIUM_LOCK:
        document = pdfium.PdfDocument(data)
        try:
            texts = [_pdfium_page_text(document, index) for index in range(len(document))]
            title = _usable_title(document.get_metadata_dict().get("Title", ""))
        finally:
            document.close()
    return texts, title


def _pdfium_page_text(document: Any, index: int) -> str:
    page = document[index]
    try:
        text_page = page.get_textpage()
        try:
            return text_page.get_text_range()
        finally:
            text_page.close()
    finally:
        page.close()


def _pypdf_pages(data: bytes) -> tuple[list[str], str]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    texts = [page.extract_text() or "" for page in reader.pages]
    metadata = reader.metadata
    return texts, _usable_title((metadata.title if metadata else None) or "")


def _usable_title(title: str) -> str:
    title = clean_text(title)
    # Word's "Microsoft Word - file.docx" and generators' "untitled" name no document.
    if title.lower() in _NOT_TITLES or title.startswith("Microsoft Word - "):
        return ""
    return title


def _first_line_title(page_text: str) -> str:
    first = next((line for line in clean_text(page_text).split("\n") if line), "")
    return first if len(first) <= MAX_TITLE_CHARS else ""
