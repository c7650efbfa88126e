"""Gemba operator console: the app around the screens. It owns the keys, the status line, the
daemon's health and who is signed in; the Ask screen (ask.py) asks and streams the answers."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual import on, work
from textual.app import App
from textual.binding import Binding, BindingsMap
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button
from textual.worker import get_current_worker

from appliance.client import ApplianceClient
from appliance.config import Paths, Settings
from appliance.console.ask import AskScreen
from appliance.console.documents import DocumentsScreen
from appliance.console.health import HealthScreen
from appliance.console.i18n import Strings
from appliance.console.login import LoginScreen, valid_operator
from appliance.console.screens import HelpScreen, HistoryScreen
from appliance.console.status import StatusLine
from appliance.console.tasks import TASKS, Task, TaskForm
from appliance.console.theme import ISA101
from appliance.errors import RequestError


class HealthChanged(Message):
    """The daemon's state as the status line shows it; a newer one replaces an unread one."""

    def __init__(self, state: str, severity: str, detail: str = "",
                 storage_low: bool = False) -> None:
        super().__init__()
        self.state = state
        self.severity = severity
        self.detail = detail
        self.storage_low = storage_low
        """The appliance's disk is nearly full: answers will soon not be stored."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, HealthChanged)


_KNOWN_STATES = {"loading", "ready", "answering", "throttled", "restarting", "offline", "failed"}


class ConsoleApp(App[None]):
    """Takes a connected client; never opens the database itself.

    `restart`, given for a local appliance, brings a lost daemon back (runs in a thread).
    """

    CSS_PATH = "console.tcss"
    TITLE = "Gemba"
    # The transcript can take focus too; the operator's first keystroke must land in the question.
    AUTO_FOCUS = "#question"
    # Operators get the keys in the footer, not a developer's command palette.
    ENABLE_COMMAND_PALETTE = False
    HEALTH_INTERVAL_S = 1.0
    RESTART_AFTER_S = 3.0
    """Offline this long, a local console starts the daemon again."""

    def __init__(self, client: ApplianceClient, model_id: str, operator: str | None = None,
                 temperature: float | None = None, max_tokens: int | None = None,
                 lang: str = "en", kiosk: bool = False,
                 restart: Callable[[], None] | None = None) -> None:
        """`temperature`/`max_tokens` None leave them to the daemon's settings."""
        super().__init__()
        self.client = client
        self.model_id = model_id
        self.operator = operator
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.kiosk = kiosk
        self.restart = restart
        self.t = Strings(lang)
        self._local_state: str | None = None
        self._engine_state, self._severity, self._detail = "ready", "ok", ""
        self._storage_low = False
        self.register_theme(ISA101)
        self.theme = ISA101.name
        self._bindings = BindingsMap(self._keys())

    def get_default_screen(self) -> Screen[None]:
        return AskScreen(self.client, self.t, self._set_state, self.operator, self.temperature,
                         self.max_tokens)

    @property
    def ask_screen(self) -> AskScreen:
        """The Ask screen, at the bottom of the stack even while another screen is in front."""
        screen = self.screen_stack[0]
        assert isinstance(screen, AskScreen)
        return screen

    @property
    def answering(self) -> bool:
        return self.ask_screen.answering

    def _keys(self) -> list[Binding]:
        """Exactly these keys, in the operator's language (Textual's defaults would hide ours)."""
        keys = [
            Binding("f1", "show_help", self.t("key.help"), key_display="F1"),
            Binding("f2", "show_ask", self.t("key.ask"), key_display="F2"),
            Binding("f3", "show_history", self.t("key.history"), key_display="F3"),
            Binding("f4", "show_health", self.t("key.health"), key_display="F4"),
            Binding("f10", "show_documents", self.t("key.documents"), key_display="F10"),
            # The task keys are on the Ask screen's buttons; the footer has no room for them.
            *(Binding(task.key, f"task('{name}')", self.t(f"key.{name}"), show=False)
              for name, task in TASKS.items()),
            Binding("f9", "sign_out", self.t("key.signout"), key_display="F9"),
            Binding("escape", "cancel", self.t("key.cancel"), key_display="Esc"),
        ]
        if not self.kiosk:
            keys.append(Binding("ctrl+q", "quit", self.t("key.quit"), priority=True,
                                key_display="Ctrl+Q"))
        return keys

    def on_mount(self) -> None:
        self.watch_health()
        if self.operator is None:
            self.push_screen(LoginScreen(self.t), self._signed_in)

    def _signed_in(self, operator: str | None) -> None:
        self.operator = self.ask_screen.operator = operator
        self.refresh_status()
        self.ask_screen.focus_question()

    def _status_model(self) -> str:
        return self.t("status", model=self.model_id)

    def _status(self) -> str:
        state = self._local_state or self._engine_state
        text = " | " + self.t.state(state)
        if self._severity != "ok":
            text += " | " + self.t("severity", severity=self.t(f"severity.{self._severity}"))
        if self._storage_low:
            text += " | " + self.t("status.storage")
        if self.operator:
            text += " | " + self.t("status.operator", operator=self.operator)
        return text

    def refresh_status(self) -> None:
        """Every screen's status line shows the same model, state, severity and operator."""
        model, state = self._status_model(), self._status()
        for screen in self.screen_stack:
            for line in screen.query(StatusLine):
                line.show(model, state, "warning" if self._storage_low and self._severity == "ok"
                          else self._severity)

    def _set_state(self, state: str | None) -> None:
        """A state of the console itself (answering, cancelling, error); None: the engine's."""
        self._local_state = None if state == "ready" else state
        self.refresh_status()

    @work(thread=True, exclusive=True, exit_on_error=False, group="health")
    def watch_health(self) -> None:
        worker = get_current_worker()
        offline_since: float | None = None
        while not worker.is_cancelled:
            health = self.client.health()
            if health is None:
                state, severity = "offline", "ok"
                offline_since = offline_since or time.monotonic()
                if self.restart and time.monotonic() - offline_since >= self.RESTART_AFTER_S:
                    self.post_message(HealthChanged(state, severity))
                    self._restart_daemon()
                    offline_since = None
                    continue
            else:
                offline_since = None
                state = health.get("state", "ready")
                # Our own answering shows from the console's state; the daemon's "answering" is
                # a second old by the time it is drawn (or another console's: it is queued).
                state = state if state in _KNOWN_STATES and state != "answering" else "ready"
                severity = (health.get("governor") or {}).get("severity", "ok")
            detail = (health or {}).get("detail") or ""
            storage_low = bool(((health or {}).get("storage") or {}).get("warning"))
            self.post_message(HealthChanged(state, severity, detail, storage_low))
            time.sleep(self.HEALTH_INTERVAL_S)

    def _restart_daemon(self) -> None:
        assert self.restart is not None
        try:
            self.restart()
        except Exception:  # noqa: BLE001 - a failed start is retried; the banner stays up
            time.sleep(self.HEALTH_INTERVAL_S)

    @on(HealthChanged)
    def health_changed(self, message: HealthChanged) -> None:
        if (message.state, message.severity, message.detail, message.storage_low) == (
                self._engine_state, self._severity, self._detail, self._storage_low):
            return  # the same news every second: nothing to redraw
        changed = message.state != self._engine_state
        self._engine_state, self._severity = message.state, message.severity
        self._storage_low = message.storage_low
        self._detail = message.detail
        if changed and self._local_state == "error":
            self._local_state = None  # the engine moved on: the old error no longer applies
        self.ask_screen.show_connection(message.state, message.detail)
        self.refresh_status()

    def action_show_help(self) -> None:
        self._show(HelpScreen(self.t))

    def action_show_history(self) -> None:
        self._show(HistoryScreen(self.client, self.t, self.operator))

    def action_show_health(self) -> None:
        self._show(HealthScreen(self.client, self.t))

    def action_show_documents(self) -> None:
        self._show(DocumentsScreen(self.client, self.t))

    def action_show_ask(self) -> None:
        self._to_ask()
        self.ask_screen.focus_question()

    def _to_ask(self) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()

    def _show(self, screen: Screen[None]) -> None:
        """One task screen at a time on top of Ask; the answer in progress keeps streaming."""
        self._to_ask()
        self.push_screen(screen)

    def action_task(self, name: str) -> None:
        if self.answering:
            self.notify(self.t("busy"), severity="warning")
            return
        self._to_ask()
        task = TASKS[name]
        self.push_screen(TaskForm(task, self.t), lambda prompt: self._task_done(task, prompt))

    def _task_done(self, task: Task, prompt: str | None) -> None:
        if prompt and not self.answering:
            # A handover note is composed from what the operator typed: the plant documents
            # have nothing to check it against, so it is not sent through their gate.
            self.ask_screen.send(prompt, knowledge=None if task.grounded else "off")

    @on(Button.Pressed, "#tasks Button")
    def task_button(self, event: Button.Pressed) -> None:
        self.action_task((event.button.id or "").removeprefix("task-"))

    def action_sign_out(self) -> None:
        self._to_ask()
        if self.answering:
            self.action_cancel()  # the answer is kept in history, marked cancelled
        self.ask_screen.clear()  # the next one starts clean
        self.operator = self.ask_screen.operator = None
        self.refresh_status()
        self.push_screen(LoginScreen(self.t), self._signed_in)

    def action_cancel(self) -> None:
        """Escape stops the answer; with none streaming, it goes back to Ask."""
        if not self.answering:
            self.action_show_ask()
            return
        self.ask_screen.cancel()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The one gate for keys: a kiosk never quits, and while someone signs in only the
        sign-in form works (the footer hides the other keys)."""
        if action == "quit":
            return not self.kiosk
        return not isinstance(self.screen, LoginScreen)


def run_console(settings: Settings, paths: Paths, url: str | None, lang: str | None,
                operator: str | None = None) -> None:
    from appliance.launcher import ensure_daemon

    def say(message: str) -> None:
        print(message, flush=True)

    def restart() -> None:
        # Quietly (the TUI owns the screen), and back as soon as it answers: "loading" shows.
        ensure_daemon(settings, paths, lambda _: None, until_ready=False)

    if operator is not None and valid_operator(operator) is None:
        raise RequestError(f"--operator {operator!r} is not a badge or name",
                           "use 1 to 64 letters, digits, spaces, '-', '_' or '.'")
    # The console opens while the model loads; its status line says "loading" until ready.
    base_url = url or ensure_daemon(settings, paths, say, until_ready=False)
    client = ApplianceClient(base_url, settings.daemon.api_key, client_kind="console")
    health = client.health() or {}
    try:
        ConsoleApp(client, health.get("model_id", settings.model.id),
                   operator=valid_operator(operator) if operator else None,
                   lang=lang or settings.console.lang, kiosk=settings.console.kiosk,
                   restart=None if url else restart).run()
    finally:
        client.close()
