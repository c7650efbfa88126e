"""A simulated temperature sensor for boxes without one: an RC model heated by the real engine.

For tuning and testing the governor on machines that cannot measure heat (VMs, CI). The model's
power follows the engine's measured decode rate, so when the governor slows the engine the
simulated box really cools. Enabled only by the GEMBA_SIMULATED_THERMAL environment variable,
e.g. "ambient_c=40,r_c_per_w=4,c_j_per_c=3,idle_w=2,load_w=12,full_tok_per_s=95".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import fields, replace

from appliance.hardware.telemetry import Sample, take_sample
from appliance.thermal_model import ThermalModel

ENV = "GEMBA_SIMULATED_THERMAL"


def parse(spec: str) -> ThermalModel:
    names = {f.name for f in fields(ThermalModel)}
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.partition("=")
        if key not in names:
            raise ValueError(f"{ENV}: unknown parameter '{key}' (known: {sorted(names)})")
        values[key] = float(value)
    return ThermalModel(**values)


class SimulatedSensor:
    def __init__(self, model: ThermalModel, rate: Callable[[], float | None],
                 pid: Callable[[], int | None]) -> None:
        self.model, self.rate, self.pid = model, rate, pid
        self.temp_c = model.ambient_c
        self.at = time.monotonic()

    def __call__(self) -> Sample:
        now = time.monotonic()
        duty = min(1.0, (self.rate() or 0.0) / self.model.full_tok_per_s)
        self.temp_c = self.model.step(self.temp_c, duty, now - self.at)
        self.at = now
        return replace(take_sample(pid=self.pid()), cpu_temp_c=round(self.temp_c, 1))
