"""Gemba operator console: ask a question, read the answer as it streams, Escape cancels."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingsMap
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Footer, Input, Static
from textual.worker import get_current_worker

from appliance.client import ApplianceClient, Done, Started, Text
from appliance.config import Paths, Settings
from appliance.console.health import HealthScreen
from appliance.console.i18n import Strings
from appliance.console.login import LoginScreen, valid_operator
from appliance.console.screens import HelpScreen, HistoryScreen
from appliance.console.status import StatusLine
from appliance.console.tasks import TASKS, TaskForm
from appliance.console.text import clean
from appliance.console.theme import ISA101
from appliance.errors import GembaError, RequestError


class _AnswerMessage(Message):
    """From the worker streaming question number `ask`; a question withdrawn or replaced since
    then has a lower number, and its late messages are dropped."""

    def __init__(self, ask: int) -> None:
        super().__init__()
        self.ask = ask


class AnswerStarted(_AnswerMessage):
    """The daemon took the question: from here on Esc stops generation, not a queued wait."""


class AnswerText(_AnswerMessage):
    def __init__(self, ask: int, text: str) -> None:
        super().__init__(ask)
        self.text = text


class AnswerEnded(_AnswerMessage):
    # A plain class like its siblings: Message.__init__ calls __post_init__, so a dataclass
    # whose __post_init__ calls super().__init__() recursed and the answer never ended.
    def __init__(self, ask: int, finish_reason: str, conversation_id: int | None) -> None:
        super().__init__(ask)
        self.finish_reason = finish_reason
        self.conversation_id = conversation_id


class AnswerFailed(_AnswerMessage):
    def __init__(self, ask: int, question: str, message: str) -> None:
        super().__init__(ask)
        self.question = question
        self.message = message


class HealthChanged(Message):
    """The daemon's state as the status line shows it; a newer one replaces an unread one."""

    def __init__(self, state: str, severity: str, detail: str = "") -> None:
        super().__init__()
        self.state = state
        self.severity = severity
        self.detail = detail

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, HealthChanged)


W = TypeVar("W", bound=Widget)
FRAME_S = 0.1
"""The answer is redrawn at most this often while it streams: 10 frames a second read smoothly,
and each redraw wraps the whole answer (bench/console.py measures what it costs the engine)."""
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
        self.answering = False
        self._asked = 0
        """Questions sent so far: the number of the one being answered."""
        self._started = False
        """Whether the daemon has taken the current question (it may wait in its queue)."""
        self._answer: Static | None = None
        self._answer_raw = ""
        """As the model wrote it: an escape sequence may be split across tokens."""
        self._drawn_at = 0.0
        self._draw_pending = False
        self._follow = True
        """Keep the newest text in view; off once the operator scrolls up to read."""
        self._local_state: str | None = None
        self._engine_state, self._severity, self._detail = "ready", "ok", ""
        self.register_theme(ISA101)
        self.theme = ISA101.name
        self._bindings = BindingsMap(self._keys())

    @property
    def _answer_text(self) -> str:
        """The answer so far as the screen may show it."""
        return clean(self._answer_raw)

    def _keys(self) -> list[Binding]:
        """Exactly these keys, in the operator's language (Textual's defaults would hide ours)."""
        keys = [
            Binding("f1", "show_help", self.t("key.help"), key_display="F1"),
            Binding("f2", "show_ask", self.t("key.ask"), key_display="F2"),
            Binding("f3", "show_history", self.t("key.history"), key_display="F3"),
            Binding("f4", "show_health", self.t("key.health"), key_display="F4"),
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

    def compose(self) -> ComposeResult:
        yield StatusLine(classes="status")
        yield Static(self.t("banner.offline"), id="banner", markup=False)
        yield VerticalScroll(id="transcript")
        with Horizontal(id="tasks"):
            for name, task in TASKS.items():
                yield Button(f"{task.key.upper()} {self.t(f'key.{name}')}", id=f"task-{name}",
                             compact=True)
        yield Input(placeholder=self.t("placeholder"), id="question")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#banner").display = False
        self.watch_health()
        if self.operator is None:
            self.push_screen(LoginScreen(self.t), self._signed_in)

    def _signed_in(self, operator: str | None) -> None:
        self.operator = operator
        self.refresh_status()
        self._ask("#question", Input).focus()

    def _status_model(self) -> str:
        return self.t("status", model=self.model_id)

    def _status(self) -> str:
        state = self._local_state or self._engine_state
        text = " | " + self.t.state(state)
        if self._severity != "ok":
            text += " | " + self.t("severity", severity=self.t(f"severity.{self._severity}"))
        if self.operator:
            text += " | " + self.t("status.operator", operator=self.operator)
        return text

    def refresh_status(self) -> None:
        """Every screen's status line shows the same model, state, severity and operator."""
        model, state = self._status_model(), self._status()
        for screen in self.screen_stack:
            for line in screen.query(StatusLine):
                line.show(model, state, self._severity)

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
            self.post_message(HealthChanged(state, severity, detail))
            time.sleep(self.HEALTH_INTERVAL_S)

    def _restart_daemon(self) -> None:
        assert self.restart is not None
        try:
            self.restart()
        except Exception:  # noqa: BLE001 - a failed start is retried; the banner stays up
            time.sleep(self.HEALTH_INTERVAL_S)

    @on(HealthChanged)
    def health_changed(self, message: HealthChanged) -> None:
        if (message.state, message.severity, message.detail) == (
                self._engine_state, self._severity, self._detail):
            return  # the same news every second: nothing to redraw
        changed = message.state != self._engine_state
        self._engine_state, self._severity = message.state, message.severity
        self._detail = message.detail
        if changed and self._local_state == "error":
            self._local_state = None  # the engine moved on: the old error no longer applies
        banner = self.screen_stack[0].query_one("#banner", Static)
        banner.display = message.state in ("offline", "failed")
        if message.state == "failed":  # the reason, for the engineer the operator calls
            banner.update(self.t("banner.failed", detail=message.detail or "?"))
        elif message.state == "offline":
            banner.update(self.t("banner.offline"))
        self.refresh_status()

    @on(Input.Submitted, "#question")
    def ask(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if question and not self.answering:
            event.input.value = ""
            self.send(question)

    def send(self, question: str) -> None:
        """Show the question, lock the input and stream the answer in."""
        self._ask("#question", Input).disabled = True
        self.answering = True
        transcript = self._ask("#transcript", VerticalScroll)
        transcript.mount(Static(f"Q: {clean(question)}", classes="question", markup=False))
        self._answer_raw = ""
        self._follow = True
        self._answer = Static("…", classes="answer", markup=False)
        transcript.mount(self._answer)
        transcript.scroll_end(animate=False)
        self._set_state("answering")
        self._asked += 1
        self._started = False
        self.stream_answer(question, self._asked)

    @work(thread=True, exclusive=True, exit_on_error=False, group="answer")
    def stream_answer(self, question: str, ask: int) -> None:
        worker = get_current_worker()
        stream = self.client.stream_chat([{"role": "user", "content": question}],
                                         user=self.operator, temperature=self.temperature,
                                         max_tokens=self.max_tokens)
        try:
            for event in stream:
                if worker.is_cancelled:
                    break
                if isinstance(event, Text):
                    self.post_message(AnswerText(ask, event.text))
                elif isinstance(event, Done):
                    self.post_message(AnswerEnded(ask, event.finish_reason,
                                                  event.gemba.get("conversation_id")))
                    return
                elif isinstance(event, Started):
                    self.post_message(AnswerStarted(ask))
            self.post_message(AnswerEnded(ask, "cancelled", None))
        except GembaError as error:
            self.post_message(AnswerFailed(ask, question,
                                           self.t.failure(error.kind, error.message)))
        except Exception as error:  # noqa: BLE001 - the console must never stay locked
            self.post_message(AnswerFailed(ask, question, self.t(
                "error.unexpected", kind=type(error).__name__)))
        finally:
            stream.close()  # closing the stream tells the daemon to stop generating

    def _current(self, message: _AnswerMessage) -> bool:
        return message.ask == self._asked and self.answering

    @on(AnswerStarted)
    def answer_started(self, message: AnswerStarted) -> None:
        if self._current(message):
            self._started = True

    @on(AnswerText)
    def show_text(self, message: AnswerText) -> None:
        if self._answer is None or not self._current(message):
            return
        self._answer_raw += message.text
        # At most one redraw per frame: each one cleans and wraps the whole answer, and on a
        # 2-core box every CPU second spent drawing is one the engine does not get.
        wait = self._drawn_at + FRAME_S - time.monotonic()
        if wait <= 0:
            self._draw_answer()
        elif not self._draw_pending:
            self._draw_pending = True
            self.set_timer(wait, self._draw_answer)

    def _draw_answer(self) -> None:
        self._draw_pending = False
        self._drawn_at = time.monotonic()
        if self._answer is not None:
            self._show_answer(self._answer_text)

    def _show_answer(self, text: str) -> None:
        """Update the answer; follow it only if the operator has not scrolled up to read."""
        assert self._answer is not None
        transcript = self._ask("#transcript", VerticalScroll)
        # Decided by what the operator did, not by the scroll position: while tokens stream,
        # the position lags the layout and would drop the answer out of view.
        # (Focus says nothing: a disabled question box hands focus to the transcript.)
        self._answer.update(text)
        if self._follow:
            self.call_after_refresh(transcript.scroll_end, animate=False)

    @on(AnswerEnded)
    def answer_ended(self, message: AnswerEnded) -> None:
        if not self._current(message):
            return
        notes = {"cancelled": self.t("note.cancelled"), "length": self.t("note.length")}
        text = self._answer_text + notes.get(message.finish_reason, "")
        if self._answer is not None and text:
            self._show_answer(text)
        self._finish("ready")

    @on(AnswerFailed)
    def answer_failed(self, message: AnswerFailed) -> None:
        if not self._current(message):
            return
        if self._answer is not None:
            # What was already written stays readable above the error.
            error = self.t("error.answer", message=message.message)
            text = self._answer_text
            self._show_answer(f"{text}\n{error}" if text else error)
            self._answer.add_class("error")
        self._finish("error")
        self._ask("#question", Input).value = message.question

    def _finish(self, state: str) -> None:
        self.answering = False
        self._answer = None
        question = self._ask("#question", Input)
        question.disabled = False
        question.focus()
        self._set_state(state)

    def on_mouse_scroll_up(self) -> None:
        self._follow = False  # the operator scrolled back to read: stop pulling the view down

    def _ask(self, selector: str, kind: type[W]) -> W:
        """A widget of the Ask screen, even while Help or History is in front of it."""
        return self.screen_stack[0].query_one(selector, kind)

    def action_show_help(self) -> None:
        self._show(HelpScreen(self.t))

    def action_show_history(self) -> None:
        self._show(HistoryScreen(self.client, self.t, self.operator))

    def action_show_health(self) -> None:
        self._show(HealthScreen(self.client, self.t))

    def action_show_ask(self) -> None:
        self._to_ask()
        self._ask("#question", Input).focus()

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
        self.push_screen(TaskForm(TASKS[name], self.t), self._task_done)

    def _task_done(self, prompt: str | None) -> None:
        if prompt and not self.answering:
            self.send(prompt)

    @on(Button.Pressed, "#tasks Button")
    def task_button(self, event: Button.Pressed) -> None:
        self.action_task((event.button.id or "").removeprefix("task-"))

    def action_sign_out(self) -> None:
        self._to_ask()
        if self.answering:
            self.action_cancel()  # the answer is kept in history, marked cancelled
        self._ask("#transcript", VerticalScroll).remove_children()  # the next one starts clean
        self.operator = None
        self.refresh_status()
        self.push_screen(LoginScreen(self.t), self._signed_in)

    def action_cancel(self) -> None:
        """Escape stops the answer; with none streaming, it goes back to Ask."""
        if not self.answering:
            self.action_show_ask()
            return
        self.workers.cancel_group(self, "answer")
        if self._started:
            self._set_state("cancelling")  # the daemon's last event ends it, partial text kept
            return
        # Still waiting for its turn (a hot box, other consoles): withdraw it now rather than
        # when the turn comes. The worker stops the daemon's job once it is taken.
        if self._answer is not None:
            self._show_answer(self.t("note.withdrawn"))
        self._finish("ready")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The one gate for keys: a kiosk never quits, and while someone signs in only the
        sign-in form works (the footer hides the other keys)."""
        if action == "quit":
            return not self.kiosk
        return not isinstance(self.screen, LoginScreen)

    def on_key(self, event: events.Key) -> None:
        # Reading back by keyboard (gloves, no mouse) stops the view following the answer too.
        if event.key in ("pageup", "up", "home", "ctrl+home"):
            self._follow = False
        elif event.key in ("end", "ctrl+end"):
            self._follow = True


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
