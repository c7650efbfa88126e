"""The status line at the top of every screen: model, engine state, worst budget severity and who
is signed in. The app pushes its text to every status line it has (attributes down)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from appliance.limits import LEVELS

SEVERE = LEVELS


class StatusLine(Horizontal):
    def compose(self) -> ComposeResult:
        yield Static("", classes="status-model", markup=False)
        yield Static("", classes="status-state", markup=False)

    def on_mount(self) -> None:
        refresh = getattr(self.app, "refresh_status", None)
        if refresh is not None:
            refresh()  # a screen opened later shows the current state at once

    def show(self, model: str, state: str, severity: str) -> None:
        """`model` may be cut short with an ellipsis; `state` is never cut."""
        self.query_one(".status-model", Static).update(model)
        status = self.query_one(".status-state", Static)
        status.update(state)
        for level in SEVERE:
            status.set_class(severity == level, level)
