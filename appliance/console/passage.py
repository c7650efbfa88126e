"""One passage of the plant documents in full: which document, title, revision, section and page,
then the whole text, scrollable. Opened from an answer's sources (F8) or the Documents screen
(F10); Esc goes back there.

The passage comes from the daemon (`GET /v1/appliance/passages/{id}`), read in a thread worker.
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingsMap
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static

from appliance.client import ApplianceClient
from appliance.console.i18n import Strings
from appliance.console.status import StatusLine
from appliance.console.text import clean
from appliance.errors import GembaError


class PassageLoaded(Message):
    def __init__(self, passage: dict[str, Any] | None, error: str | None = None) -> None:
        super().__init__()
        self.passage, self.error = passage, error


def passage_heading(passage: dict[str, Any], t: Strings) -> str:
    """The lines above the text: document, title, revision, section, page and file (those it
    has)."""
    fields = ("document", "title", "revision", "section", "page", "file")
    return "\n".join(t(f"passage.{name}", value=" ".join(clean(str(passage[name])).split()))
                     for name in fields if passage.get(name) not in (None, ""))


class PassageScreen(Screen[None]):
    AUTO_FOCUS = "#passage-body"  # arrows and Page Up/Down scroll the text at once

    def __init__(self, client: ApplianceClient, strings: Strings, passage_id: int) -> None:
        super().__init__()
        self.client, self.t, self.passage_id = client, strings, passage_id
        self.shown: dict[str, Any] | None = None
        """The passage on the screen, once it has come."""
        # Esc goes back to where the passage was opened, in the operator's words.
        self._bindings = BindingsMap([Binding("escape", "back", self.t("key.back"),
                                              key_display="Esc")])

    def compose(self) -> ComposeResult:
        yield StatusLine(classes="status")
        yield Static(self.t("passage.heading"), classes="screen-title", markup=False)
        yield Static("", id="passage-meta", markup=False)
        yield Static(self.t("passage.superseded"), id="passage-superseded", markup=False)
        with VerticalScroll(id="passage-body"):
            yield Static(self.t("passage.loading"), id="passage-text", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#passage-superseded").display = False
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="passage")
    def load(self) -> None:
        try:
            self.post_message(PassageLoaded(self.client.passage(self.passage_id)))
        except GembaError as error:
            self.post_message(PassageLoaded(None, error.message))

    @on(PassageLoaded)
    def show(self, message: PassageLoaded) -> None:
        text = self.query_one("#passage-text", Static)
        if message.passage is None:
            text.update(self.t("passage.failed", message=message.error or ""))
            text.add_class("error")
            return
        self.shown = message.passage
        text.remove_class("error")
        self.query_one("#passage-meta", Static).update(passage_heading(message.passage, self.t))
        # A passage of a revision replaced since (an old answer): say so before it is read.
        self.query_one("#passage-superseded").display = not message.passage.get("current", True)
        text.update(clean(message.passage.get("text") or ""))

    def action_back(self) -> None:
        self.dismiss()
