"""One telemetry sample: the live figures the burn-in and the governor watch, once a tick.

Uses the probe's readers, so the installer and the daemon see the box the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

from appliance.hardware import host, nvml, tegra

_BOX_RAILS = ("VDD_IN", "POM_5V_IN")  # Jetson rails that carry the whole module's input


@dataclass(frozen=True)
class Sample:
    at_s: float
    """time.monotonic() when taken."""
    cpu_temp_c: float | None
    gpu_temp_c: float | None
    gpu_power_w: float | None
    box_power_w: float | None
    """Whole-module input power where a rail measures it (Jetson VDD_IN)."""
    gpu_throttle: tuple[str, ...]
    mem_available_bytes: int
    process_rss_bytes: int | None
    cpu_percent: float


def take_sample(ps: ModuleType | Any = psutil, nvml_module: Any | None = None,
                root: Path = Path("/"), pid: int | None = None) -> Sample:
    temps, _ = host.read_temperatures(ps)
    zones = tegra.thermal_zones(root) if tegra.is_tegra(root) else ()
    cpu_temps = [t.temp_c for t in (*temps, *zones) if host.is_cpu_sensor(t)]
    gpus = nvml.probe_nvml(nvml_module).gpus
    gpu_temps = [g.temp_c for g in gpus if g.temp_c is not None] + \
        [t.temp_c for t in zones if "gpu" in t.label.lower()]
    gpu_power = [g.power_draw_w for g in gpus if g.power_draw_w is not None]
    rails = {r.name: r.power_w for r in tegra.power_rails(root)} if zones else {}
    box_power = next((rails[name] for name in _BOX_RAILS if rails.get(name) is not None), None)
    return Sample(
        at_s=time.monotonic(),
        cpu_temp_c=max(cpu_temps) if cpu_temps else None,
        gpu_temp_c=max(gpu_temps) if gpu_temps else None,
        gpu_power_w=sum(gpu_power) if gpu_power else None,
        box_power_w=box_power,
        gpu_throttle=tuple(sorted({r for g in gpus for r in (g.throttle_reasons or ())})),
        mem_available_bytes=ps.virtual_memory().available,
        process_rss_bytes=_rss(ps, pid),
        cpu_percent=ps.cpu_percent(interval=None) if hasattr(ps, "cpu_percent") else 0.0,
    )


def _rss(ps: Any, pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return ps.Process(pid).memory_info().rss
    except Exception:  # noqa: BLE001 - the process may have exited between ticks
        return None
