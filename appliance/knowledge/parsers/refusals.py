"""Every way an import is refused, worded once: the file, what was expected, what to do."""

from __future__ import annotations

from appliance.knowledge.document import ImportRefused

ACCEPTED_EXTENSIONS = (".pdf", ".docx", ".xlsx", ".csv", ".md", ".markdown", ".txt", ".text",
                       ".log")
_OLD_OFFICE = {".doc": "Word", ".xls": "Excel", ".ppt": "PowerPoint", ".wps": "WPS",
               ".et": "WPS", ".rtf": "Word", ".odt": "Writer", ".ods": "Calc"}
_RESAVE = {
    "pdf": "open it in a PDF viewer: if it opens, print it to a new PDF and import that; "
           "otherwise get a fresh copy from its source",
    "docx": "open it in Word or WPS and save it again as .docx (an old .doc renamed to .docx "
            "needs this too)",
    "xlsx": "open it in Excel or WPS and save it again as .xlsx (an old .xls renamed to .xlsx "
            "needs this too)",
}
_FORMAT_NAMES = {"pdf": "a PDF", "docx": "a Word (.docx)", "xlsx": "an Excel (.xlsx)",
                 "csv": "a CSV", "markdown": "a Markdown", "text": "a text"}


def size_text(size_bytes: int) -> str:
    """A size an engineer reads at a glance: 512 bytes, 48.2 KB, 20.0 MB."""
    if size_bytes < 1024:
        return f"{size_bytes} bytes"
    if size_bytes < 1024 * 1024:
        return f"{size_bytes / 1024:.1f} KB"
    return f"{size_bytes / (1024 * 1024):.1f} MB"


def unknown_type(name: str, extension: str) -> ImportRefused:
    accepted = ", ".join(ACCEPTED_EXTENSIONS)
    what = f"a {extension} file" if extension else "a file without an extension"
    hint = f"save or export it as one of: {accepted}"
    if extension in _OLD_OFFICE:
        hint = f"open it in {_OLD_OFFICE[extension]} and save it as .docx, .xlsx or PDF"
    return ImportRefused("unknown_type",
                         f"{name} is {what}: Gemba imports only {accepted}", hint)


def too_large(name: str, size_bytes: int, limit_bytes: int) -> ImportRefused:
    return ImportRefused(
        "too_large",
        f"{name} is {size_text(size_bytes)} ({size_bytes} bytes): the limit is "
        f"{size_text(limit_bytes)} ({limit_bytes} bytes)",
        "split the file into smaller ones, or raise `[knowledge] max_file_bytes` in config.toml")


def empty(name: str) -> ImportRefused:
    return ImportRefused("empty", f"{name} is empty: there is no text in it to import",
                         "check that this is the right file and that it was saved completely")


def encrypted(name: str) -> ImportRefused:
    return ImportRefused(
        "encrypted", f"{name} is encrypted: Gemba can only read PDFs without a password",
        "save an unprotected copy (open it with the password, then File → Print to PDF) "
        "and import that")


def no_text(name: str, pages: int) -> ImportRefused:
    return ImportRefused(
        "no_text",
        f"{name} has no text layer: none of its {pages} page(s) has readable text "
        "(scanned images, or fonts whose text cannot be extracted)",
        "import a text PDF exported from the original document, or run OCR on it elsewhere "
        "and import the result")


def undecodable(name: str, tried: tuple[str, ...]) -> ImportRefused:
    return ImportRefused(
        "undecodable",
        f"{name} is not readable text: it decodes in none of the encodings Gemba tries "
        f"({', '.join(tried)})",
        "if it is a text file, open it in an editor and save it as UTF-8; if it is not text "
        "(a program, an image), it cannot be imported")


def damaged(name: str, file_format: str, error: BaseException) -> ImportRefused:
    detail = f"{type(error).__name__}: {error}".strip()
    if len(detail) > 200:
        detail = detail[:197] + "..."
    expected = _FORMAT_NAMES.get(file_format, f"a {file_format}")
    return ImportRefused(
        "damaged",
        f"{name} could not be read as {expected} file: it is damaged or is not really "
        f"{expected} file ({detail})",
        _RESAVE.get(file_format, "get a fresh copy of the file from its source and import that"))
