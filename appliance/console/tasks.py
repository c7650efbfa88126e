"""The operator's common jobs as short forms (F5 alarm, F6 next step, F7 handover) that build the
question for them, in their language. `build_prompt` is pure; `TaskForm` only collects fields.

An alarm or a procedure step is a question about the plant's documents and goes through their
gate like any question; a handover note is composed from what the operator typed, so it is sent
without them (and its answer says it was not checked against them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from appliance.console.i18n import Strings
from appliance.console.text import clean


@dataclass(frozen=True)
class Task:
    name: str
    key: str
    fields: tuple[str, ...]
    """Field names, in the order the form asks for them."""
    required: tuple[str, ...]
    grounded: bool = True
    """Answered from the plant documents (cited, or refused without a basis); False: the model
    alone, with the plant documents off."""


TASKS = {
    "alarm": Task("alarm", "f5", ("code", "machine", "notes"), ("code",)),
    "step": Task("step", "f6", ("procedure", "machine", "notes"), ("procedure",)),
    "handover": Task("handover", "f7", ("machine", "notes"), ("notes",), grounded=False),
}


def field_label(task: Task, field: str, t: Strings) -> str:
    return t("task.machine") if field == "machine" else t(f"task.{task.name}.{field}")


def build_prompt(task: Task, values: dict[str, str], t: Strings) -> str:
    """The question the model gets; optional fields that were left empty leave no trace."""
    values = {k: " ".join(clean(v).split()) for k, v in values.items()}
    machine = values.get("machine", "")
    notes = values.get("notes", "")
    parts = dict(values)
    parts["machine"] = t("task.on_machine", machine=machine) if machine else ""
    if task.name == "alarm":
        parts["notes"] = t("task.observed", notes=notes) if notes else ""
    elif task.name == "step":
        parts["notes"] = t("task.last_step", notes=notes) if notes else ""
    return t(f"task.{task.name}.prompt", **parts).strip()


class FieldInput(Input):
    """An input that keeps keys typed ahead in order, field by field.

    Textual hands each key to the widget focused when the app reads it, and resolves Enter only
    after the key has gone back up to the app. A burst of keys (a slow serial line, a laggy SSH
    link, a quick typist on a busy box) therefore all landed in the first field. Here Enter is
    handled in this input's own queue, in order with the characters before it; `on_enter` moves
    the focus at once, and the keys queued here after it are passed on to the new field.
    """

    def __init__(self, on_enter: Callable[[FieldInput], None], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._on_enter = on_enter

    async def _on_key(self, event: events.Key) -> None:
        focused = self.screen.focused
        if focused is not None and focused is not self:  # typed ahead, for a later field
            event.stop()
            event.prevent_default()
            focused._forward_event(events.Key(event.key, event.character))
        elif event.key == "enter":
            event.stop()
            event.prevent_default()  # not Input's binding, which would act too late
            self._on_enter(self)


class TaskForm(ModalScreen[str | None]):
    """Enter moves to the next field and sends from the last; Escape goes back (None)."""

    BINDINGS = [("escape", "back")]
    AUTO_FOCUS = "Input"  # the first field: the operator types at once

    def __init__(self, task: Task, strings: Strings) -> None:
        super().__init__()
        self.job, self.t = task, strings

    def compose(self) -> ComposeResult:
        with Vertical(id="task-form"):
            yield Static(self.t(f"task.{self.job.name}.title"), classes="screen-title",
                         markup=False)
            for field in self.job.fields:
                yield Label(field_label(self.job, field, self.t), markup=False)
                yield FieldInput(self.next_field, id=f"task-{field}", max_length=500)
            yield Static(self.t("task.send"), id="task-hint", markup=False)

    def _field(self, name: str) -> FieldInput:
        return self.query_one(f"#task-{name}", FieldInput)

    def next_field(self, entered: FieldInput) -> None:
        """Enter in a field: on to the next one, or send the form from the last."""
        fields = self.job.fields
        name = (entered.id or "").removeprefix("task-")
        if name != fields[-1]:
            self.set_focus(self._field(fields[fields.index(name) + 1]))  # now, not after a
            return  # refresh: the keys typed ahead must find it focused
        values = {f: self._field(f).value for f in fields}
        missing = next((f for f in self.job.required if not values[f].strip()), None)
        if missing is not None:
            label = field_label(self.job, missing, self.t)
            self.query_one("#task-hint", Static).update(self.t("task.required", field=label))
            self.query_one("#task-hint", Static).add_class("error")
            self.set_focus(self._field(missing))
            return
        self.dismiss(build_prompt(self.job, values, self.t))

    def action_back(self) -> None:
        self.dismiss(None)
