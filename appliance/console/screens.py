"""The console's other screens, one task each: Help (F1) and History (F3). Ask, the main one, is
in ask.py; Health (F4) in health.py, Documents (F10) in documents.py, one passage in full in
passage.py, the task forms in tasks.py, sign-in in login.py.

They are clients too: history comes from the daemon's API, never from SQLite.
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from appliance.client import ApplianceClient
from appliance.console.i18n import Strings
from appliance.console.status import StatusLine
from appliance.console.text import clean
from appliance.errors import GembaError
from appliance.store.conversations import local_time


class HelpScreen(Screen[None]):
    def __init__(self, strings: Strings) -> None:
        super().__init__()
        self.t = strings

    def compose(self) -> ComposeResult:
        yield StatusLine(classes="status")
        yield Static(self.t("help.title"), classes="screen-title", markup=False)
        yield Static(self.t("help.text"), id="help-text", markup=False)
        yield Footer()


class Listed(Message):
    def __init__(self, rows: list[dict[str, Any]] | None, error: str | None = None) -> None:
        super().__init__()
        self.rows, self.error = rows, error


class Opened(Message):
    def __init__(self, conversation: dict[str, Any] | None, error: str | None = None) -> None:
        super().__init__()
        self.conversation, self.error = conversation, error


class HistoryScreen(Screen[None]):
    """The operator's past questions, newest first (F8: everyone's); type to search, Enter on
    one to read it again."""

    AUTO_FOCUS = "#history-search"  # the operator can type a search at once
    BINDINGS = [Binding("f8", "everyone", show=False)]

    def __init__(self, client: ApplianceClient, strings: Strings,
                 operator: str | None = None) -> None:
        super().__init__()
        self.client, self.t, self.operator = client, strings, operator
        self.everyone = operator is None
        self.query_text = ""

    def compose(self) -> ComposeResult:
        yield StatusLine(classes="status")
        yield Static(self.t("history.title"), classes="screen-title", markup=False)
        yield Static(self._whose(), id="history-whose", markup=False)
        yield Input(placeholder=self.t("history.search"), id="history-search")
        yield OptionList(id="history-list", markup=False)
        with VerticalScroll(id="history-detail"):
            yield Static("", id="history-text", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.load("")

    def _whose(self) -> str:
        if self.operator is None:
            return ""
        return self.t("history.everyone" if self.everyone else "history.mine",
                      operator=self.operator)

    def action_everyone(self) -> None:
        if self.operator is None:
            return
        self.everyone = not self.everyone
        self.query_one("#history-whose", Static).update(self._whose())
        self.load(self.query_text)

    @on(Input.Submitted, "#history-search")
    def search(self, event: Input.Submitted) -> None:
        self.query_text = event.value.strip()
        self.load(self.query_text)
        self.query_one("#history-list", OptionList).focus()

    @work(thread=True, exclusive=True, exit_on_error=False, group="history")
    def load(self, query: str) -> None:
        operator = None if self.everyone else self.operator
        try:
            self.post_message(Listed(self.client.conversations(50, query or None, operator)))
        except GembaError as error:
            self.post_message(Listed(None, error.message))

    @on(Listed)
    def show_list(self, message: Listed) -> None:
        options = self.query_one("#history-list", OptionList)
        options.clear_options()
        if message.rows is None:
            self._detail(self.t("history.failed", message=message.error or ""))
            return
        if not message.rows:
            self._detail(self.t("history.empty"))
            return
        options.add_options([Option(row_text(row, self.everyone), id=str(row["id"]))
                             for row in message.rows])
        options.highlighted = 0

    @on(OptionList.OptionSelected, "#history-list")
    def open_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.open(int(event.option.id))

    @work(thread=True, exclusive=True, exit_on_error=False, group="history-open")
    def open(self, conversation_id: int) -> None:
        try:
            self.post_message(Opened(self.client.conversation(conversation_id)))
        except GembaError as error:
            self.post_message(Opened(None, error.message))

    @on(Opened)
    def show_conversation(self, message: Opened) -> None:
        if message.conversation is None:
            self._detail(self.t("history.failed", message=message.error or ""))
            return
        lines = []
        for item in message.conversation["messages"]:
            label = "Q" if item["role"] == "user" else "A"
            lines.append(f"{label}: {clean(item['content'])}")
        self._detail("\n\n".join(lines))

    def _detail(self, text: str) -> None:
        self.query_one("#history-text", Static).update(text)


def row_text(row: dict[str, Any], with_operator: bool) -> str:
    when = clean(local_time(row["updated_at"], "%m-%d %H:%M"))[:11]  # the console's clock
    mark = {"cancelled": " ✕", "length": " …", "error": " !"}.get(row["last_finish_reason"], "")
    who = f"  [{clean(row['operator'])}]" if with_operator and row.get("operator") else ""
    return f"{when}  {clean(row['title'])}{mark}{who}"
