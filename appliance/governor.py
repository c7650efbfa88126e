"""The runtime governor's policy: telemetry + budgets -> how hard the engine may work. Pure.

Modes, from calm to alarmed:
  normal   full speed
  slowed   a duty factor below 1 (pauses between tokens, fewer threads); an integral controller
           holds the hottest figure just under its warning limit, so a hot box still answers
           at nearly the best speed it can sustain
  paused   new requests wait; the answer in progress continues at the lowest duty
  refused  critical: generation stops

Escalation is immediate. Relaxing needs the figure below the threshold by a hysteresis band
and a minimum dwell in the current mode, so the mode does not flap. A sensor that goes stale
falls back to a conservative duty; a box whose profile expects sensors but shows none is
treated the same way. Memory below the reserve pauses new work.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from appliance.config import BudgetSettings
from appliance.hardware.telemetry import Sample
from appliance.limits import Limits, Severity, power_limits, temperature_limits

MODES = ("normal", "slowed", "paused", "refused")
_MODE_FOR = {Severity.OK: "normal", Severity.CAREFUL: "slowed", Severity.WARNING: "paused",
             Severity.CRITICAL: "refused"}


@dataclass(frozen=True)
class Budgets:
    """What the installer planned, as the governor enforces it."""

    cpu_temp_c: Limits
    gpu_temp_c: Limits | None = None
    box_power_w: float | None = None
    mem_reserve_bytes: int = 0
    sensors_expected: bool = True
    hysteresis_c: float = 3.0
    min_dwell_s: float = 10.0
    stale_after_s: float = 5.0
    setpoint_margin_c: float = 2.0
    """The controller aims this far below the warning limit."""
    min_duty: float = 0.2
    fallback_duty: float = 0.6
    """Duty when heat cannot be seen (stale or missing sensors)."""
    gain_per_c_s: float = 0.01
    """Integral gain: duty change per °C of error per second."""
    gain_per_c: float = 0.08
    """Proportional gain: duty change per °C of error."""
    brake_per_c_per_s: float = 0.25
    """Derivative brake: duty taken off per °C/s of rise; acts on fast-heating boxes only."""


@dataclass(frozen=True)
class Decision:
    mode: str
    duty: float
    severity: Severity
    reason: str
    since_s: float
    """When the current mode began."""
    at_s: float
    """When this decision was made."""
    figures: dict[str, float | None] = field(default_factory=dict)
    integral: float = 1.0
    """The controller's learned duty. A pause backs it off and freezes it, so the box resumes
    at a sustainable pace instead of full speed."""
    slope_c_per_s: float = 0.0
    """Smoothed rise of the hottest figure, °C per second."""
    limiting: str | None = None
    """The figure that decided the mode (e.g. gpu_temp_c, or mem_available_bytes when memory
    did), if any."""
    cause: str = "starting"
    """`reason` as a code a front end can put in its own language: starting, figure (the
    `limiting` figure against its limits), memory (below the reserve), no_limits (no sensors
    to hold), no_sensor (sensors expected, none read) or stale (no fresh sample)."""

    @property
    def accepts_new_work(self) -> bool:
        return self.mode in ("normal", "slowed")

    @property
    def generating_allowed(self) -> bool:
        return self.mode != "refused"


def initial(now_s: float) -> Decision:
    return Decision("normal", 1.0, Severity.OK, "starting", now_s, now_s)


@dataclass(frozen=True)
class _Figure:
    name: str
    value: float
    limits: Limits


def decide(previous: Decision, sample: Sample | None, budgets: Budgets, now_s: float,
           last_seen_s: float | None = None) -> Decision:
    """The next decision, from the previous one and the newest sample (None: none arrived)."""
    dt = min(max(0.0, now_s - previous.at_s), 5.0)
    stale = last_seen_s is not None and now_s - last_seen_s > budgets.stale_after_s
    if sample is None and not stale:
        return replace(previous, at_s=now_s)  # a missed tick changes nothing yet
    if sample is None or stale:
        if previous.severity >= Severity.WARNING:
            # Blind while hot: hold the alarm, never relax it on missing data.
            return replace(previous, at_s=now_s, reason=f"telemetry is stale; holding: "
                           f"{previous.reason.split('; holding: ')[-1]}", cause="stale")
        return _fallback(previous, budgets, now_s, "stale", "telemetry is stale")
    figures = _figures(sample, budgets)
    values = {f.name: f.value for f in figures}
    values["mem_available_bytes"] = float(sample.mem_available_bytes)
    if not any(f.name.endswith("temp_c") for f in figures) and budgets.sensors_expected:
        return _fallback(previous, budgets, now_s, "no_sensor",
                         "no temperature sensor can be read", values)
    severity, hottest = _worst(figures, previous.severity, budgets.hysteresis_c)
    memory_short = figure_severity("mem_available_bytes", sample.mem_available_bytes,
                                   budgets) == Severity.WARNING
    if memory_short and severity < Severity.WARNING:
        severity = Severity.WARNING
    severity = _dwell(previous, severity, budgets, now_s)
    mode = _MODE_FOR[severity]
    slope = _slope(previous, hottest, dt)
    integral, duty = _control(previous, mode, hottest, budgets, dt, slope)
    cause, reason = _reason(mode, hottest, memory_short, sample, budgets)
    since = previous.since_s if mode == previous.mode else now_s
    limiting = "mem_available_bytes" if cause == "memory" else \
        hottest.name if hottest is not None else None
    return Decision(mode, duty, severity, reason, since, now_s, values, integral, slope,
                    limiting, cause)


def _slope(previous: Decision, hottest: _Figure | None, dt: float) -> float:
    if hottest is None or dt <= 0:
        return 0.0
    last = previous.figures.get(hottest.name)
    if last is None:
        return 0.0
    raw = (hottest.value - last) / dt
    # Smoothed: 1 °C sensor steps must not jerk the engine's pace.
    return 0.7 * previous.slope_c_per_s + 0.3 * raw


def limits_for(budgets: Budgets) -> dict[str, Limits]:
    """The limits of every figure the budgets watch, by figure name."""
    limits = {"cpu_temp_c": budgets.cpu_temp_c}
    if budgets.gpu_temp_c is not None:
        limits["gpu_temp_c"] = budgets.gpu_temp_c
    if budgets.box_power_w:
        limits["box_power_w"] = power_limits(budgets.box_power_w)
    return limits


def figure_severity(name: str, value: float | None, budgets: Budgets) -> Severity | None:
    """How one figure stands against its budget; None when it has no budget or no reading."""
    if value is None:
        return None
    if name == "mem_available_bytes":
        short = bool(budgets.mem_reserve_bytes) and value < budgets.mem_reserve_bytes
        return Severity.WARNING if short else Severity.OK
    limits = limits_for(budgets).get(name)
    return limits.level(value) if limits is not None else None


def _figures(sample: Sample, budgets: Budgets) -> list[_Figure]:
    limits = limits_for(budgets)
    return [_Figure(name, value, limits[name]) for name, value in (
        ("cpu_temp_c", sample.cpu_temp_c), ("gpu_temp_c", sample.gpu_temp_c),
        ("box_power_w", sample.box_power_w)) if value is not None and name in limits]


def _worst(figures: list[_Figure], previous: Severity,
           hysteresis_c: float) -> tuple[Severity, _Figure | None]:
    worst, hottest = Severity.OK, None
    for figure in figures:
        level = figure.limits.level(figure.value)
        if level < previous:
            # Falling: only count as lower once clear of the threshold by the hysteresis band
            # (for power, 3 % of its warning level instead of degrees).
            band = 0.03 * figure.limits.warning if figure.name.endswith("_w") else hysteresis_c
            level = max(level, figure.limits.level(figure.value + band))
        if hottest is None or level > worst or (level == worst and _margin(figure)
                                                < _margin(hottest)):
            worst, hottest = max(worst, level), figure
    return worst, hottest


def _margin(figure: _Figure) -> float:
    return figure.limits.warning - figure.value


def _dwell(previous: Decision, severity: Severity, budgets: Budgets, now_s: float) -> Severity:
    if severity < previous.severity and now_s - previous.since_s < budgets.min_dwell_s:
        return previous.severity
    return severity


def _control(previous: Decision, mode: str, hottest: _Figure | None, budgets: Budgets,
             dt: float, slope: float) -> tuple[float, float]:
    """PI control of the hottest figure toward just under its warning limit: (integral, duty)."""
    if mode == "normal" or hottest is None:
        return 1.0, 1.0
    if mode in ("paused", "refused"):
        # Reaching the warning limit proves the pace was too high: resume at 80 % of it.
        learned = previous.duty * 0.8 if previous.mode == "slowed" else previous.integral
        return max(budgets.min_duty, learned), budgets.min_duty
    error = hottest.limits.warning - budgets.setpoint_margin_c - hottest.value
    integral = previous.integral + budgets.gain_per_c_s * error * dt
    integral = min(1.0, max(budgets.min_duty, integral))
    duty = integral + budgets.gain_per_c * min(error, 0.0)  # brake hard above the setpoint
    duty -= budgets.brake_per_c_per_s * max(slope, 0.0)  # and early when heating fast
    return integral, round(min(1.0, max(budgets.min_duty, duty)), 4)


def _fallback(previous: Decision, budgets: Budgets, now_s: float, cause: str, why: str,
              figures: dict[str, float | None] | None = None) -> Decision:
    duty = min(previous.duty, budgets.fallback_duty) if previous.mode == "slowed" \
        else budgets.fallback_duty
    since = previous.since_s if previous.mode == "slowed" else now_s
    return Decision("slowed", duty, Severity.CAREFUL,
                    f"{why}: running at {duty:.0%} as a precaution", since, now_s, figures or {},
                    cause=cause)


def _reason(mode: str, hottest: _Figure | None, memory_short: bool, sample: Sample,
            budgets: Budgets) -> tuple[str, str]:
    """(cause, reason): see `Decision.cause`."""
    if memory_short and (hottest is None or hottest.limits.level(hottest.value)
                         < Severity.WARNING):
        return "memory", (f"available memory {sample.mem_available_bytes / 2**30:.2f} GiB is "
                          f"below the reserve of {budgets.mem_reserve_bytes / 2**30:.2f} GiB: "
                          "new requests wait")
    if hottest is None:
        return "no_limits", "no limits apply (no sensors on this box)"
    unit = "W" if hottest.name.endswith("_w") else "°C"
    what = hottest.name.replace("_temp_c", " temperature").replace("box_power_w", "box power")
    value = f"{hottest.value:g} {unit}"
    limits = hottest.limits
    return "figure", {
        "normal": f"{what} {value}, below the careful limit {limits.careful:g} {unit}",
        "slowed": f"{what} {value} at or above careful {limits.careful:g} {unit}: slowing "
                  f"to stay under {limits.warning:g} {unit}",
        "paused": f"{what} {value} at or above warning {limits.warning:g} {unit}: new "
                  "requests wait",
        "refused": f"{what} {value} at or above critical {limits.critical:g} {unit}: "
                   "generation stopped",
    }[mode]


def budgets_from(settings: BudgetSettings) -> Budgets:
    return Budgets(
        cpu_temp_c=Limits(settings.cpu_careful_c, settings.cpu_warning_c,
                          settings.cpu_critical_c),
        gpu_temp_c=temperature_limits(settings, "gpu"),
        box_power_w=settings.box_power_w,
        mem_reserve_bytes=settings.mem_reserve_bytes,
        sensors_expected=settings.sensors_expected)


def gpu_cap_w(decision: Decision, planned_w: float, min_w: float = 0.0) -> float:
    """The GPU power limit for this decision: the planned cap, scaled by the duty while the GPU
    is what the governor is holding back (its heat or the box's power), never below `min_w`."""
    if decision.mode == "normal" or decision.limiting not in ("gpu_temp_c", "box_power_w"):
        return planned_w
    return max(min_w, round(planned_w * decision.duty, 1))
