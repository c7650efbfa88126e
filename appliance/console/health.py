"""F4 Health: the box as the governor sees it. One row per figure: its value now, where it stands
against the installer's budget (OK, careful, warning, critical) and a sparkline of the last
minutes. Colour only where a figure is abnormal (ISA-101); the severity is also written out.

The screen polls the daemon (`GET /v1/appliance/telemetry`) in a thread worker; the widgets
render a frozen `Telemetry` and never call anything themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from appliance.client import ApplianceClient
from appliance.console.i18n import Strings
from appliance.console.status import StatusLine
from appliance.errors import GembaError
from appliance.limits import LEVELS, SEVERITY_WORDS

FIGURES = ("cpu_temp_c", "gpu_temp_c", "gpu_power_w", "box_power_w", "mem_available_bytes",
           "tok_per_s")
SEVERITIES = SEVERITY_WORDS
_MODES = ("normal", "slowed", "paused", "refused")
TREND_S = 300


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | None
    """None: this box has no reading for it (no sensor, no GPU)."""
    severity: str | None
    """ok, careful, warning or critical against the budget; None when no budget applies."""
    history: tuple[float, ...]
    """The last minutes, oldest first, readings only."""
    high: float | None = None
    """The top of its trend: the critical limit where there is one."""


@dataclass(frozen=True)
class Telemetry:
    figures: tuple[Figure, ...]
    engine_state: str
    mode: str | None
    duty: float | None
    reason: str
    """The governor's reason in its own (English) words."""
    cause: str | None = None
    """The same reason as a code (`governor.Decision.cause`), to say in the operator's language."""
    limiting: str | None = None
    """The figure the governor holds to, with its value and limits when it decided."""
    limiting_value: float | None = None
    limiting_limits: tuple[tuple[str, float], ...] = ()


def telemetry_from(body: dict[str, Any], health: dict[str, Any] | None) -> Telemetry:
    """The daemon's telemetry and health answers as one immutable picture."""
    latest, samples = body.get("latest") or {}, body.get("samples") or []
    limits = body.get("limits") or {}
    figures = []
    for name in FIGURES:
        now = latest.get(name) or {}
        history = tuple(row[name] for row in samples if row.get(name) is not None)
        high = limits.get(name, {}).get("critical")
        figures.append(Figure(name, now.get("value"), now.get("severity"), history, high))
    governor = body.get("governor") or {}
    state = health.get("state", "ready") if health is not None else "offline"
    limiting = governor.get("limiting") or ""
    return Telemetry(tuple(figures), state, governor.get("mode"), governor.get("duty"),
                     governor.get("reason") or "", governor.get("cause"), limiting or None,
                     (governor.get("figures") or {}).get(limiting),
                     tuple(sorted(limits.get(limiting, {}).items())))


def explain(telemetry: Telemetry, t: Strings) -> str:
    """The governor's reason in the operator's language. A cause this console does not know (a
    newer or older daemon) is shown in the daemon's own words rather than not at all."""
    cause, mode, name = telemetry.cause, telemetry.mode, telemetry.limiting
    limits = {level: (f"{value:g} °C" if (name or "").endswith("_temp_c")  # limits are round
                      else format_value(name or "", value))
              for level, value in telemetry.limiting_limits}
    value = format_value(name or "", telemetry.limiting_value)
    if cause == "figure" and mode in _MODES and name and value \
            and set(LEVELS) <= set(limits):
        return t(f"reason.{mode}", figure=t(f"health.{name}"), value=value, **limits)
    if cause == "memory" and value and limits.get("reserve"):
        return t("reason.memory", value=value, reserve=limits["reserve"])
    if cause == "stale" and mode in ("paused", "refused"):
        return t("reason.stale_hold")
    if cause in ("stale", "no_sensor", "no_limits", "starting"):
        return t(f"reason.{cause}", duty=percent(telemetry.duty))
    return telemetry.reason


def percent(duty: float | None) -> str:
    return f"{duty:.0%}" if duty is not None else "-"


def format_value(name: str, value: float | None) -> str | None:
    if value is None:
        return None
    if name.endswith("_temp_c"):
        return f"{value:.1f} °C"
    if name.endswith("_w"):
        return f"{value:.0f} W"
    if name.endswith("_bytes"):
        return f"{value / 2**30:.2f} GiB"
    return f"{value:.0f} tok/s"


_BARS = "▁▂▃▄▅▆▇█"


def trend(history: Sequence[float], width: int, high: float | None, worst: Callable[
        [Sequence[float]], float] = max) -> str:
    """A sparkline from 0 to `high` (or the largest value seen): a steady figure draws a flat
    line, not noise stretched to full height. Each bar is the worst value of its span."""
    if not history or width <= 0:
        return ""
    top = max(high or 0.0, max(history))
    spans = [history[i * len(history) // width:(i + 1) * len(history) // width]
             for i in range(min(width, len(history)))]
    values = [worst(span) for span in spans if span]
    if top <= 0:
        return _BARS[0] * len(values)
    return "".join(_BARS[min(len(_BARS) - 1, max(0, int(v / top * len(_BARS))))]
                   for v in values)


class Trend(Widget):
    """The last minutes of one figure, drawn to the width it is given."""

    history: reactive[tuple[float, ...]] = reactive(())

    def __init__(self, lower_is_worse: bool = False, classes: str | None = None) -> None:
        super().__init__(classes=classes)
        self.high: float | None = None
        """The top of the scale, set with each figure (its critical limit)."""
        self.worst = min if lower_is_worse else max

    def render(self) -> str:
        return trend(self.history, self.size.width, self.high, self.worst)


class FigureRow(Horizontal):
    """One figure: label, value, severity word, trend. Its class is its severity."""

    def __init__(self, name: str, strings: Strings) -> None:
        super().__init__(id=f"figure-{name}", classes="figure")
        self.figure_name, self.t = name, strings

    def compose(self) -> ComposeResult:
        yield Static(self.t(f"health.{self.figure_name}"), classes="figure-label", markup=False)
        yield Static("", classes="figure-value", markup=False)
        yield Static("", classes="figure-severity", markup=False)
        yield Trend(lower_is_worse=self.figure_name == "mem_available_bytes",
                    classes="figure-trend")

    def show(self, figure: Figure) -> None:
        value = format_value(figure.name, figure.value)
        # No answer speed is "idle", not a missing sensor.
        missing = "health.idle" if figure.name == "tok_per_s" else "health.no_reading"
        self.query_one(".figure-value", Static).update(value or self.t(missing))
        severity = self.t(f"severity.{figure.severity}") if figure.severity else \
            self.t("health.no_budget")
        self.query_one(".figure-severity", Static).update(severity)
        trend = self.query_one(Trend)
        trend.high = figure.high
        trend.history = figure.history
        for level in SEVERITIES:
            self.set_class(figure.severity == level, level)
        self.set_class(figure.value is None and figure.name != "tok_per_s", "unmeasured")


class TelemetryArrived(Message):
    def __init__(self, telemetry: Telemetry | None, error: str | None = None) -> None:
        super().__init__()
        self.telemetry, self.error = telemetry, error

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TelemetryArrived)


class HealthScreen(Screen[None]):
    POLL_S = 2.0

    def __init__(self, client: ApplianceClient, strings: Strings) -> None:
        super().__init__()
        self.client, self.t = client, strings
        self.shown: Telemetry | None = None

    def compose(self) -> ComposeResult:
        yield StatusLine(classes="status")
        yield Static(self.t("health.title"), classes="screen-title", markup=False)
        with Horizontal(classes="figure figure-header"):
            for key, kind in (("figure", "label"), ("now", "value"), ("budget", "severity"),
                              ("trend", "trend")):
                yield Static(self.t(f"health.{key}"), classes=f"figure-{kind}", markup=False)
        for name in FIGURES:
            yield FigureRow(name, self.t)
        yield Static(self.t("health.waiting"), id="health-engine", markup=False)
        yield Static("", id="health-governor", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.poll()

    @work(thread=True, exclusive=True, exit_on_error=False, group="telemetry")
    def poll(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            try:
                body = self.client.telemetry(TREND_S)
                self.post_message(TelemetryArrived(telemetry_from(body, body.get("health"))))
            except GembaError as error:
                self.post_message(TelemetryArrived(None, error.message))
            deadline = time.monotonic() + self.POLL_S
            while time.monotonic() < deadline and not worker.is_cancelled:
                time.sleep(0.05)

    def stop_polling(self) -> None:
        """Freeze the screen on what it shows (a picture for the operator's guide)."""
        self.workers.cancel_group(self, "telemetry")

    @on(TelemetryArrived)
    def show(self, message: TelemetryArrived) -> None:
        engine = self.query_one("#health-engine", Static)
        if message.telemetry is None:
            engine.update(self.t("health.failed", message=message.error or ""))
            return
        telemetry = self.shown = message.telemetry
        for figure in telemetry.figures:
            self.query_one(f"#figure-{figure.name}", FigureRow).show(figure)
        engine.update(self.t("health.engine", state=self.t.state(telemetry.engine_state)))
        if telemetry.mode is not None:
            self.query_one("#health-governor", Static).update(self.t(
                "health.governor", mode=self.t(f"health.mode.{telemetry.mode}"),
                duty=percent(telemetry.duty), reason=explain(telemetry, self.t)))
