"""The operator's common jobs as short forms (F5 alarm, F6 next step, F7 handover) that build the
question for them, in their language. `build_prompt` is pure; `TaskForm` only collects fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
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


TASKS = {
    "alarm": Task("alarm", "f5", ("code", "machine", "notes"), ("code",)),
    "step": Task("step", "f6", ("procedure", "machine", "notes"), ("procedure",)),
    "handover": Task("handover", "f7", ("machine", "notes"), ("notes",)),
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
                yield Input(id=f"task-{field}", max_length=500)
            yield Static(self.t("task.send"), id="task-hint", markup=False)

    @on(Input.Submitted)
    def next_field(self, event: Input.Submitted) -> None:
        fields = self.job.fields
        name = (event.input.id or "").removeprefix("task-")
        if name != fields[-1]:
            self.query_one(f"#task-{fields[fields.index(name) + 1]}", Input).focus()
            return
        values = {f: self.query_one(f"#task-{f}", Input).value for f in fields}
        missing = next((f for f in self.job.required if not values[f].strip()), None)
        if missing is not None:
            label = field_label(self.job, missing, self.t)
            self.query_one("#task-hint", Static).update(self.t("task.required", field=label))
            self.query_one("#task-hint", Static).add_class("error")
            self.query_one(f"#task-{missing}", Input).focus()
            return
        self.dismiss(build_prompt(self.job, values, self.t))

    def action_back(self) -> None:
        self.dismiss(None)
