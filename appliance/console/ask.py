"""F2 Ask, the console's main screen: type a question, read the answer as it streams, Escape
cancels.

An answer from the plant documents lists its sources under it (F8, then Enter or the number,
opens one in full). A refusal ("no basis") is said in the operator's language, not the question's,
with the nearest documents to open instead. The app owns the status line and the keys; this
screen reports its state (answering, cancelling, error, ready) through `on_state`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Static
from textual.worker import get_current_worker

from appliance.client import ApplianceClient, Done, Started, Text
from appliance.console.i18n import Strings
from appliance.console.passage import PassageScreen
from appliance.console.sources import SourceList, Sources, nearest_line
from appliance.console.status import StatusLine
from appliance.console.tasks import TASKS
from appliance.console.text import clean
from appliance.errors import GembaError

FRAME_S = 0.1
"""The answer is redrawn at most this often while it streams: 10 frames a second read smoothly,
and each redraw wraps the whole answer (bench/console.py measures what it costs the engine)."""


class _AnswerMessage(Message):
    """From the worker streaming question number `ask`; a question withdrawn or replaced since
    then has a lower number, and its late messages are dropped."""

    def __init__(self, ask: int) -> None:
        super().__init__()
        self.ask = ask


class AnswerStarted(_AnswerMessage):
    """The daemon took the question: from here on Esc stops generation, not a queued wait.
    `basis` is documents (cited passages), none (refused: no basis) or None (plain chat)."""

    def __init__(self, ask: int, basis: str | None = None,
                 citations: Sequence[dict[str, Any]] = (),
                 nearest: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(ask)
        self.basis = basis
        self.citations = tuple(citations)
        self.nearest = tuple(nearest)


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


class AskScreen(Screen[None]):
    """The question box, the transcript of this operator's questions and answers, and the task
    buttons. Takes a connected client; `operator` is set by the app on sign-in."""

    AUTO_FOCUS = "#question"
    # Priority: handled as the app reads the key, so a digit or Enter typed right behind F8 (a
    # quick glove, a laggy line) is read after the list has the focus, not before.
    BINDINGS = [Binding("f8", "sources", show=False, priority=True)]

    def __init__(self, client: ApplianceClient, strings: Strings,
                 on_state: Callable[[str], None], operator: str | None = None,
                 temperature: float | None = None, max_tokens: int | None = None) -> None:
        """`on_state` hears answering, cancelling, error and ready; `temperature`/`max_tokens`
        None leave them to the daemon's settings."""
        super().__init__()
        self.client, self.t, self._on_state = client, strings, on_state
        self.operator = operator
        self.temperature, self.max_tokens = temperature, max_tokens
        self.answering = False
        self._asked = 0
        """Questions sent so far: the number of the one being answered."""
        self._started = False
        """Whether the daemon has taken the current question (it may wait in its queue)."""
        self._answer: Static | None = None
        self._answer_raw = ""
        """As the model wrote it: an escape sequence may be split across tokens."""
        self._refusal: str | None = None
        """The console's own words for a refusal, shown instead of the daemon's."""
        self._unchecked = False
        """Sent with the plant documents off: the answer is followed by a note saying so."""
        self._drawn_at = 0.0
        self._draw_pending = False
        self._follow = True
        """Keep the newest text in view; off once the operator scrolls up to read."""

    @property
    def answer_text(self) -> str:
        """The answer so far as the screen may show it."""
        return self._refusal if self._refusal is not None else clean(self._answer_raw)

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

    def show_connection(self, state: str, detail: str) -> None:
        """The yellow line under the status line: offline, or why the engine failed."""
        banner = self.query_one("#banner", Static)
        banner.display = state in ("offline", "failed")
        if state == "failed":  # the reason, for the engineer the operator calls
            banner.update(self.t("banner.failed", detail=detail or "?"))
        elif state == "offline":
            banner.update(self.t("banner.offline"))

    def focus_question(self) -> None:
        self.query_one("#question", Input).focus()

    def clear(self) -> None:
        """An empty transcript: the next operator starts clean."""
        self.query_one("#transcript", VerticalScroll).remove_children()

    @on(Input.Submitted, "#question")
    def ask(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if question and not self.answering:
            event.input.value = ""
            self.send(question)

    def send(self, question: str, knowledge: str | None = None) -> None:
        """Show the question, lock the input and stream the answer in. `knowledge="off"`
        answers without the plant documents (and says so under the answer)."""
        self.query_one("#question", Input).disabled = True
        self.answering = True
        transcript = self.query_one("#transcript", VerticalScroll)
        transcript.mount(Static(f"Q: {clean(question)}", classes="question", markup=False))
        self._answer_raw, self._refusal = "", None
        self._unchecked = knowledge == "off"
        self._follow = True
        self._answer = Static("…", classes="answer", markup=False)
        transcript.mount(self._answer)
        transcript.scroll_end(animate=False)
        self._on_state("answering")
        self._asked += 1
        self._started = False
        self.stream_answer(question, self._asked, knowledge)

    @work(thread=True, exclusive=True, exit_on_error=False, group="answer")
    def stream_answer(self, question: str, ask: int, knowledge: str | None) -> None:
        worker = get_current_worker()
        stream = self.client.stream_chat([{"role": "user", "content": question}],
                                         user=self.operator, temperature=self.temperature,
                                         max_tokens=self.max_tokens, knowledge=knowledge)
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
                    self.post_message(AnswerStarted(ask, event.basis, event.citations,
                                                    event.nearest))
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
        if not self._current(message) or self._answer is None:
            return
        self._started = True
        if message.basis == "none":
            self._refuse(message.nearest)
        elif message.basis == "documents" and message.citations:
            self._list_sources(Sources(message.citations, self.t("sources.title"), self.t))

    def _refuse(self, nearest: Sequence[dict[str, Any]]) -> None:
        """No basis in the plant documents: the console's own sentence in the operator's
        language, drawn as a refusal (not an error), and the nearest documents to open."""
        assert self._answer is not None
        lines = [self.t("refusal.none"), self.t("refusal.hint")]
        self._refusal = "\n".join(lines)
        self._answer.add_class("refusal")
        self._show_answer(self._refusal)
        if nearest:
            self._list_sources(Sources(nearest, self.t("sources.nearest"), self.t, nearest_line))

    def _list_sources(self, sources: Sources) -> None:
        assert self._answer is not None
        self.query_one("#transcript", VerticalScroll).mount(sources, after=self._answer)

    @on(AnswerText)
    def show_text(self, message: AnswerText) -> None:
        if self._answer is None or not self._current(message) or self._refusal is not None:
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
            self._show_answer(self.answer_text)

    def _show_answer(self, text: str) -> None:
        """Update the answer; follow it only if the operator has not scrolled up to read."""
        assert self._answer is not None
        # Decided by what the operator did, not by the scroll position: while tokens stream,
        # the position lags the layout and would drop the answer out of view.
        # (Focus says nothing: a disabled question box hands focus to the transcript.)
        self._answer.update(text)
        self._scroll_to_end()

    def _scroll_to_end(self) -> None:
        if self._follow:
            transcript = self.query_one("#transcript", VerticalScroll)
            self.call_after_refresh(transcript.scroll_end, animate=False)

    @on(AnswerEnded)
    def answer_ended(self, message: AnswerEnded) -> None:
        if not self._current(message):
            return
        notes = {"cancelled": self.t("note.cancelled"), "length": self.t("note.length")}
        text = self.answer_text + notes.get(message.finish_reason, "")
        if self._answer is not None and text:
            self._show_answer(text)
            if self._unchecked:  # composed from the operator's words, never gated
                note = Static(self.t("note.unchecked"), classes="note", markup=False)
                self.query_one("#transcript", VerticalScroll).mount(note, after=self._answer)
                self._scroll_to_end()
        self._finish("ready")

    @on(AnswerFailed)
    def answer_failed(self, message: AnswerFailed) -> None:
        if not self._current(message):
            return
        if self._answer is not None:
            # What was already written stays readable above the error.
            error = self.t("error.answer", message=message.message)
            text = self.answer_text
            self._show_answer(f"{text}\n{error}" if text else error)
            self._answer.add_class("error")
        self._finish("error")
        self.query_one("#question", Input).value = message.question

    def _finish(self, state: str) -> None:
        self.answering = False
        self._answer = None
        question = self.query_one("#question", Input)
        question.disabled = False
        question.focus()
        self._on_state(state)

    def cancel(self) -> None:
        """Stop the answer being written; what was written is kept, marked cancelled."""
        if not self.answering:
            return
        self.workers.cancel_group(self, "answer")
        if self._started:
            self._on_state("cancelling")  # the daemon's last event ends it, partial text kept
            return
        # Still waiting for its turn (a hot box, other consoles): withdraw it now rather than
        # when the turn comes. The worker stops the daemon's job once it is taken.
        if self._answer is not None:
            self._show_answer(self.t("note.withdrawn"))
        self._finish("ready")

    def action_sources(self) -> None:
        """F8: into the newest answer's list of sources (or nearest documents)."""
        lists = self.query(SourceList)
        if not lists:
            self.notify(self.t("sources.missing"))
            return
        newest = lists.last()
        if newest.highlighted is None:
            newest.highlighted = 0
        self.set_focus(newest)  # now, not after a refresh: the next key must find it focused

    @on(SourceList.OptionSelected)
    def open_source(self, event: SourceList.OptionSelected) -> None:
        if event.option.id is not None:
            self.app.push_screen(PassageScreen(self.client, self.t, int(event.option.id)))

    def on_mouse_scroll_up(self) -> None:
        self._follow = False  # the operator scrolled back to read: stop pulling the view down

    def on_key(self, event: events.Key) -> None:
        # Reading back by keyboard (gloves, no mouse) stops the view following the answer too.
        if event.key in ("pageup", "up", "home", "ctrl+home"):
            self._follow = False
        elif event.key in ("end", "ctrl+end"):
            self._follow = True
