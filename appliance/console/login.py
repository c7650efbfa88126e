"""Sign-in: the operator scans a badge or types a name; it is stored with every question."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from appliance.console.i18n import Strings

MAX_OPERATOR_CHARS = 64


def valid_operator(text: str) -> str | None:
    """The name as stored, or None: letters (any script), digits, spaces and - _ . only."""
    name = " ".join(text.split())
    if not 1 <= len(name) <= MAX_OPERATOR_CHARS:
        return None
    if not all(ch.isalnum() or ch in " -_." for ch in name):
        return None
    return name


class LoginScreen(ModalScreen[str]):
    """Cannot be dismissed without a name: every question must say who asked."""

    AUTO_FOCUS = "#login-name"

    def __init__(self, strings: Strings) -> None:
        super().__init__()
        self.t = strings

    def compose(self) -> ComposeResult:
        with Vertical(id="login"):
            yield Static(self.t("login.title"), classes="screen-title", markup=False)
            yield Static(self.t("login.prompt"), markup=False)
            yield Input(placeholder=self.t("login.placeholder"), id="login-name",
                        max_length=200)
            yield Static("", id="login-hint", markup=False)

    @on(Input.Submitted, "#login-name")
    def sign_in(self, event: Input.Submitted) -> None:
        name = valid_operator(event.value)
        if name is None:
            hint = self.query_one("#login-hint", Static)
            hint.update(self.t("login.invalid"))
            hint.add_class("error")
            return
        self.dismiss(name)
