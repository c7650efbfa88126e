"""Limits: the four severities, the levels where they start, and the one way a figure is graded.

A figure (a temperature, a draw) is OK below *careful*, CAREFUL from there, WARNING from
*warning* and CRITICAL from *critical* (glances' four severities). The plan (the box idle, before
any load), the burn-in (the box under full load) and the governor (at run time) all grade with
`Limits.level`, and the console shows the governor's grade; what differs is only what each stage
accepts, which `PLAN` and `BURN_IN` say. Pure: no I/O, no third-party imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

Status = Literal["pass", "warn", "fail"]


class Severity(IntEnum):
    OK = 0
    CAREFUL = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def word(self) -> str:
        """The name the API, the store and the console use: ok, careful, warning, critical."""
        return self.name.lower()


SEVERITY_WORDS = tuple(severity.word for severity in Severity)
LEVELS = SEVERITY_WORDS[1:]
"""The three levels a figure's limits name: careful, warning, critical."""


@dataclass(frozen=True)
class Limits:
    careful: float
    warning: float
    critical: float

    def level(self, value: float) -> Severity:
        if value >= self.critical:
            return Severity.CRITICAL
        if value >= self.warning:
            return Severity.WARNING
        if value >= self.careful:
            return Severity.CAREFUL
        return Severity.OK


def temperature_limits(owner: Any, part: str) -> Limits | None:
    """`{part}_careful_c`, `{part}_warning_c`, `{part}_critical_c` of a firmware profile's
    [thermal] or the config's [budgets], or None when they are not set."""
    values = [getattr(owner, f"{part}_{level}_c", None) for level in LEVELS]
    if any(value is None for value in values):
        return None
    return Limits(*values)


def power_limits(budget_w: float) -> Limits:
    """A power budget: careful at 90 %, warning at the budget, critical at 110 %. Power has no
    thermal inertia, so the levels sit close together."""
    # Exact tenths: 1.1 * 100 is 110.00000000000001, and a rail can read exactly 110 W.
    return Limits(budget_w * 9 / 10, budget_w, budget_w * 11 / 10)


def gpu_power_limits(cap_w: float) -> Limits:
    """An NVIDIA power cap the card enforces: at the cap is the cap working (careful), 5 % over
    it is a warning and 10 % over it means the cap is not in force (critical)."""
    return Limits(cap_w, cap_w * 21 / 20, cap_w * 11 / 10)


GPU_SLOWDOWN_ASSUMED_C = 90.0
"""Slowdown temperature assumed for a card that reports none (below every recent card's)."""
_CARD_OFFSETS_C = (15.0, 5.0, 2.0)


def card_gpu_limits(slowdown_c: float | None) -> tuple[Limits, float, str]:
    """GPU levels for a profile that sets none, from the card's own slowdown temperature:
    careful 15 °C, warning 5 °C and critical 2 °C below it. Returns the levels, the temperature
    they are counted from, and where that temperature comes from."""
    if slowdown_c is None:
        base, source = GPU_SLOWDOWN_ASSUMED_C, (f"the card reports no slowdown temperature: "
                                                f"{GPU_SLOWDOWN_ASSUMED_C:g} °C assumed")
    else:
        base, source = slowdown_c, (f"the card's slowdown temperature {slowdown_c:g} °C (NVML "
                                    "nvmlDeviceGetTemperatureThreshold(SLOWDOWN))")
    careful, warning, critical = (base - offset for offset in _CARD_OFFSETS_C)
    return Limits(careful, warning, critical), base, source


PLAN: dict[Severity, Status] = {Severity.OK: "pass", Severity.CAREFUL: "warn",
                                Severity.WARNING: "fail", Severity.CRITICAL: "fail"}
"""What the plan accepts of a temperature read idle or a draw estimated for full load: careful
already is worth a warning, the warning level already is a refusal."""
BURN_IN: dict[Severity, Status] = {Severity.OK: "pass", Severity.CAREFUL: "pass",
                                   Severity.WARNING: "warn", Severity.CRITICAL: "fail"}
"""What the burn-in accepts of a figure measured at full speed without the governor: careful is
what a busy box reaches; at warning the governor will slow answers; at critical it would stop
them, so the box cannot run as planned."""
