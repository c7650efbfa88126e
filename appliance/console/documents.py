"""F10 Documents: search the plant documents directly and open a passage in full.

Type a word, a code or a single character (E-104, lockout, 泵) and press Enter: each result shows
where it stands (document · rev · section · page) and the first lines of its passage. Enter on
one opens it (passage.py). The search is the daemon's (`GET /v1/appliance/search`), never SQLite.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from appliance.client import ApplianceClient
from appliance.console.i18n import Strings
from appliance.console.passage import PassageScreen
from appliance.console.sources import snippet, where
from appliance.console.status import StatusLine
from appliance.console.text import clean
from appliance.errors import GembaError

RESULTS = 20
SNIPPET_CELLS = 150
"""The first lines of a passage: two rows of an 80-column screen."""


class Found(Message):
    def __init__(self, query: str, hits: list[dict[str, Any]] | None,
                 error: str | None = None) -> None:
        super().__init__()
        self.query, self.hits, self.error = query, hits, error


def result(hit: dict[str, Any], t: Strings) -> Text:
    """One result: where the passage stands (bold), then its first lines."""
    return Text.assemble((where(hit, t), "bold"), "\n", snippet(hit.get("text") or "",
                                                                  SNIPPET_CELLS))


class DocumentsScreen(Screen[None]):
    AUTO_FOCUS = "#documents-search"  # the operator types at once

    def __init__(self, client: ApplianceClient, strings: Strings) -> None:
        super().__init__()
        self.client, self.t = client, strings

    def compose(self) -> ComposeResult:
        yield StatusLine(classes="status")
        yield Static(self.t("documents.title"), classes="screen-title", markup=False)
        yield Input(placeholder=self.t("documents.search"), id="documents-search",
                    max_length=200)
        yield Static(self.t("documents.hint"), id="documents-note", markup=False)
        yield OptionList(id="documents-list", markup=False)
        yield Footer()

    @on(Input.Submitted, "#documents-search")
    def search(self, event: Input.Submitted) -> None:
        query = event.value.strip()
        if not query:
            self._note(self.t("documents.hint"))
            return
        self._note(self.t("documents.searching"))
        self.find(query)
        self.set_focus(self.query_one("#documents-list", OptionList))  # now: Enter typed ahead

    @work(thread=True, exclusive=True, exit_on_error=False, group="documents")
    def find(self, query: str) -> None:
        try:
            self.post_message(Found(query, self.client.search(query, RESULTS)))
        except GembaError as error:
            self.post_message(Found(query, None, error.message))

    @on(Found)
    def show_results(self, message: Found) -> None:
        options = self.query_one("#documents-list", OptionList)
        options.clear_options()
        if message.hits is None:
            self._note(self.t("documents.failed", message=message.error or ""), error=True)
            return
        if not message.hits:
            self._note(self.t("documents.empty", query=clean(message.query)))
            return
        self._note(self.t("documents.count", count=len(message.hits)))
        options.add_options([Option(result(hit, self.t), id=str(hit["passage_id"]))
                             for hit in message.hits])
        options.highlighted = 0

    @on(OptionList.OptionSelected, "#documents-list")
    def open_passage(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.app.push_screen(PassageScreen(self.client, self.t, int(event.option.id)))

    def _note(self, text: str, error: bool = False) -> None:
        note = self.query_one("#documents-note", Static)
        note.update(text)
        note.set_class(error, "error")
