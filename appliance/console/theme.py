"""The ISA-101 look: a calm grey screen, black text, colour only for what is abnormal.

Every colour is chosen so that it still reads on a 16-colour terminal (serial consoles, old
SSH clients): each pair of foreground and background lands on two different ANSI colours
when Rich downgrades it (tests/test_console_theme.py checks every cell).
"""

from __future__ import annotations

from textual.theme import Theme

CAREFUL = "#00afaf"  # ANSI cyan: worth a look
WARNING = "#ffff00"  # ANSI bright yellow: act soon
CRITICAL = "#c00000"  # ANSI red: act now

ISA101 = Theme(
    name="isa101",
    primary="#000080",  # focus and selection: navy, white text
    secondary="#404040",
    accent="#000080",
    warning=WARNING,
    error=CRITICAL,
    success="#404040",  # "normal" is not green on an ISA-101 screen: it is just not coloured
    foreground="#000000",
    background="#c0c0c0",
    surface="#c0c0c0",
    panel="#404040",
    dark=False,
    variables={
        "severity-careful": CAREFUL,
        "severity-warning": WARNING,
        "severity-critical": CRITICAL,
        "footer-background": "#404040",
        "footer-foreground": "#ffffff",
        "footer-key-foreground": "#ffff00",
        "footer-key-background": "#404040",
        "footer-description-foreground": "#ffffff",
        "footer-description-background": "#404040",
        "footer-item-background": "#404040",
        "input-cursor-background": "#000000",
        "input-cursor-foreground": "#ffffff",
        "input-selection-background": "#000080",
        "block-cursor-background": "#000080",
        "block-cursor-foreground": "#ffffff",
        "block-cursor-text-style": "none",
        "block-cursor-blurred-background": "#404040",
        "block-cursor-blurred-foreground": "#ffffff",
        "block-hover-background": "#e4e4e4",
        "border": "#000080",
        "border-blurred": "#404040",
        "scrollbar": "#404040",
        "scrollbar-hover": "#000080",
        "scrollbar-active": "#000080",
        "scrollbar-background": "#c0c0c0",
        "scrollbar-background-hover": "#c0c0c0",
        "scrollbar-background-active": "#c0c0c0",
        "scrollbar-corner-color": "#c0c0c0",
    },
)
