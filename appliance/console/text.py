"""Model text is data: strip control characters before it reaches the screen."""

from __future__ import annotations

import re

# C0 and C1 controls except newline and tab; ESC sequences would otherwise drive the terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    return _CONTROL.sub("", text.replace("\r\n", "\n"))
