"""One probe of the box: host, sensors, NVIDIA GPUs and Jetson, each source injectable."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

from appliance.hardware import host, nvml, tegra
from appliance.hardware.facts import HostFacts


@dataclass(frozen=True)
class Sources:
    """Where readings come from: the real box by default, fakes in tests."""

    ps: ModuleType | Any = psutil
    nvml: ModuleType | Any | None = None
    """The pynvml module; None loads the real one (if installed)."""
    root: Path = Path("/")
    nvpmodel: str | None = None
    hostname: tuple[str, str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def proc(self) -> Path:
        return self.root / "proc"

    @property
    def sys_root(self) -> Path:
        return self.root / "sys"


def probe(data_dir: Path, sources: Sources | None = None) -> HostFacts:
    """Everything the installer needs to know about this box. Never raises for a missing part."""
    src = sources or Sources()
    unavailable: dict[str, str] = {}
    temperatures, why = host.read_temperatures(src.ps)
    if why:
        unavailable["temperatures"] = why
    fans = host.read_fans(src.ps)
    if not fans:
        unavailable["fans"] = "no fan sensors found"
    battery = host.read_battery(src.ps)
    if battery is None:
        unavailable["battery"] = "no battery or UPS reported by the OS"
    name, os_name, kernel = src.hostname or host.host_identity()
    gpus = nvml.probe_nvml(src.nvml)
    if not gpus.available:
        unavailable["nvidia"] = gpus.reason or "no NVIDIA GPU"
    return HostFacts(
        hostname=name, os=os_name, kernel=kernel,
        cpu=host.read_cpu(src.ps, src.proc),
        memory=host.read_memory(src.ps, src.sys_root, src.proc),
        disk=host.read_disk(data_dir, src.ps),
        nvml=gpus,
        tegra=tegra.probe_tegra(src.root, src.nvpmodel),
        temperatures=temperatures, fans=fans, battery=battery,
        unavailable=unavailable,
    )
