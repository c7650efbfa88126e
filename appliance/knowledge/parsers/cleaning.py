"""Minimal text cleaning shared by every parser: citations must stay verbatim."""

from __future__ import annotations

import re

# C0/C1 controls except \t and \n, the BOM used as a zero-width space, and the two noncharacters.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x84\x86-\x9f\ufeff\ufffe\uffff]")
# Line and page separators that some exporters use in place of \n.
_LINE_BREAKS = re.compile(r"\r\n|[\r\x0c\x85\u2028\u2029]")
_SPACE_RUN = re.compile(r" {2,}")
_CELL_SPACE = re.compile(r"[ \t\r\n]+")

CJK_CHARS = (
    "\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003134f"
)
_BREAK_BETWEEN_CJK = re.compile(f"(?<=[{CJK_CHARS}])\n(?=[{CJK_CHARS}])")


def clean_text(text: str) -> str:
    """Text as written, minus what no reader sees.

    Line endings become \\n, control characters (other than \\t and \\n) go, runs of spaces inside
    a line become one space, and each line loses its leading and trailing blanks. Nothing else
    changes: no Unicode normalization, no case folding, no dehyphenation.
    """
    text = _CONTROL.sub("", _LINE_BREAKS.sub("\n", text))
    lines = (_SPACE_RUN.sub(" ", line).strip(" \t") for line in text.split("\n"))
    return "\n".join(lines).strip("\n")


def clean_cell(value: str) -> str:
    """One table or spreadsheet value on one line: breaks and space runs become one space."""
    return _CELL_SPACE.sub(" ", _CONTROL.sub("", value)).strip()


def join_cjk_lines(text: str) -> str:
    """Remove a single line break between two CJK characters (PDF layout, not the author's)."""
    return _BREAK_BETWEEN_CJK.sub("", text)
