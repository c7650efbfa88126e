"""A first-order RC thermal model of a box, for tuning and testing the governor.

The hottest component (CPU package or GPU) is one thermal capacitance C (J/°C) behind a thermal
resistance R (°C/W) to the cabinet air. Power is the idle draw plus the load draw times the duty
the governor allows; tokens per second scale with the same duty.

    T_steady(duty) = T_ambient + R * (P_idle + P_load * duty)
    T(t + dt)      = T_steady + (T(t) - T_steady) * exp(-dt / (R * C))
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ThermalModel:
    ambient_c: float
    r_c_per_w: float
    c_j_per_c: float
    idle_w: float
    load_w: float
    full_tok_per_s: float = 100.0

    @property
    def tau_s(self) -> float:
        return self.r_c_per_w * self.c_j_per_c

    def power_w(self, duty: float) -> float:
        return self.idle_w + self.load_w * duty

    def steady_c(self, duty: float) -> float:
        return self.ambient_c + self.r_c_per_w * self.power_w(duty)

    def step(self, temp_c: float, duty: float, dt_s: float) -> float:
        target = self.steady_c(duty)
        return target + (temp_c - target) * math.exp(-dt_s / self.tau_s)

    def best_constant_duty(self, limit_c: float) -> float:
        """The highest constant duty whose steady temperature stays at or under `limit_c`."""
        if self.steady_c(1.0) <= limit_c:
            return 1.0
        duty = (limit_c - self.ambient_c - self.r_c_per_w * self.idle_w) / \
            (self.r_c_per_w * self.load_w)
        return max(0.0, min(1.0, duty))
