"""File names as engineers see them: the base name for messages, the stem for a fallback title."""

from __future__ import annotations


def base_name(name: str) -> str:
    """"SOP-7.pdf" from "SOP-7.pdf", "docs/SOP-7.pdf" or "C:\\docs\\SOP-7.pdf"."""
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def file_stem(name: str) -> str:
    """"SOP-7" from "docs/SOP-7.pdf"; a name without an extension stays as it is."""
    base = base_name(name)
    return base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base


def extension(name: str) -> str:
    """".pdf" from "SOP-7.PDF" (lower case); "" when there is none."""
    base = base_name(name)
    return "." + base.rsplit(".", 1)[1].lower() if "." in base.lstrip(".") else ""
