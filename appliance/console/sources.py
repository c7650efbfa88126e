"""Where an answer comes from: the compact list of cited passages under an answer ("[1] SOP-PR-012
· rev 3 · 4 Die change · p. 3"), or a refusal's nearest documents. Enter on one, or its number,
opens the passage in full (passage.py).

Document text is data: every line is cleaned of control characters and shown without markup.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.cells import cell_len
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from appliance.console.i18n import Strings
from appliance.console.text import clean


def where(passage: dict[str, Any], t: Strings, titled: bool = False) -> str:
    """document · rev R · section · page; `titled` names the document by its title too."""
    document, title = clean(str(passage.get("document") or "")), clean(passage.get("title") or "")
    name = document
    if titled and title:
        name = title if document.lower() in title.lower() else f"{document} {title}"
    parts = [name, t("cite.rev", revision=clean(str(passage.get("revision") or "?")))]
    if passage.get("section"):
        parts.append(clean(str(passage["section"])))
    if passage.get("page") is not None:
        parts.append(t("cite.page", page=passage["page"]))
    return " · ".join(" ".join(part.split()) for part in parts)


def cite_line(citation: dict[str, Any], t: Strings) -> str:
    """A cited passage as the list under an answer shows it: "[1] SOP-PR-012 · rev 3 · …"."""
    return f"[{citation.get('n', '?')}] {where(citation, t)}"


def nearest_line(passage: dict[str, Any], t: Strings) -> str:
    """A refusal's nearest document: its title, revision and section."""
    return f"[{passage.get('n', '?')}] {where(passage, t, titled=True)}"


def snippet(text: str, cells: int) -> str:
    """The start of a passage, whitespace folded, at most `cells` terminal cells wide (a CJK
    character takes two), with "…" when it was cut."""
    folded = " ".join(clean(text).split())
    if cell_len(folded) <= cells:
        return folded
    kept, width = [], 0
    for char in folded:
        width += cell_len(char)
        if width > cells - 1:
            break
        kept.append(char)
    return "".join(kept).rstrip() + "…"


class SourceList(OptionList):
    """Enter opens the highlighted source; a digit opens that number at once (gloves)."""

    BINDINGS = [Binding(str(n), f"number({n})", show=False) for n in range(1, 10)]

    def action_number(self, number: int) -> None:
        if number <= self.option_count:
            self.highlighted = number - 1
            self.action_select()


class Sources(Vertical):
    """A heading that says how to open a source, and the list itself; option ids are the
    passages' ids."""

    def __init__(self, passages: Sequence[dict[str, Any]], heading: str, t: Strings,
                 line: Callable[[dict[str, Any], Strings], str] = cite_line) -> None:
        super().__init__(classes="sources")
        self.passages, self.heading, self.t, self.line = tuple(passages), heading, t, line

    def compose(self) -> ComposeResult:
        yield Static(self.heading, classes="sources-title", markup=False)
        yield SourceList(*[Option(self.line(p, self.t), id=str(p["passage_id"]))
                           for p in self.passages if p.get("passage_id") is not None],
                         markup=False, compact=True)
