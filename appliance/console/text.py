"""Model text is data: strip terminal escape sequences and control characters before it
reaches the screen."""

from __future__ import annotations

import re

# Whole sequences first (CSI like ESC[31m, OSC like ESC]0;title BEL, two-byte ESC x), so no
# "[31m" is left behind; then C0 and C1 controls except newline and tab.
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]"
                     r"|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    return _CONTROL.sub("", _ESCAPE.sub("", text.replace("\r\n", "\n")))
