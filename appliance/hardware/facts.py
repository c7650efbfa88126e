"""What a probe found: frozen dataclasses with units in the names, None for "not available".

The same objects describe this box (a live probe) and a recorded box (JSON under
tests/fixtures/hardware/), so a plan can be made for either. `to_dict`/`from_dict` round-trip.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class CpuFacts:
    model: str
    arch: str
    logical_cores: int
    physical_cores: int | None
    flags: tuple[str, ...]
    """Lower-case instruction set flags as the kernel names them (avx2, avx512f, fma, asimd…)."""
    max_freq_mhz: float | None = None

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def features(self) -> dict[str, bool]:
        """The flags that decide which llama.cpp build runs here."""
        return {
            "avx": self.has("avx"), "avx2": self.has("avx2"), "avx512": self.has("avx512f"),
            "fma": self.has("fma"), "f16c": self.has("f16c"),
            "neon": self.has("asimd") or self.has("neon"),
        }


@dataclass(frozen=True)
class MemoryFacts:
    total_bytes: int
    available_bytes: int
    swap_total_bytes: int
    swap_free_bytes: int
    cgroup_limit_bytes: int | None = None
    """Memory limit of this process's cgroup; None when unlimited or unknown."""

    @property
    def usable_bytes(self) -> int:
        """Available RAM, capped by the cgroup limit."""
        if self.cgroup_limit_bytes is None:
            return self.available_bytes
        return min(self.available_bytes, self.cgroup_limit_bytes)


@dataclass(frozen=True)
class DiskFacts:
    path: str
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class TemperatureReading:
    source: str
    """The driver (coretemp, k10temp, acpitz, a Tegra zone…)."""
    label: str
    temp_c: float
    high_c: float | None = None
    critical_c: float | None = None


@dataclass(frozen=True)
class FanReading:
    source: str
    label: str
    rpm: int


@dataclass(frozen=True)
class BatteryFacts:
    percent: float
    on_mains: bool | None
    seconds_left: int | None


@dataclass(frozen=True)
class GpuFacts:
    index: int
    name: str
    uuid: str | None = None
    memory_total_bytes: int | None = None
    memory_free_bytes: int | None = None
    power_limit_w: float | None = None
    """The enforced power limit."""
    power_limit_min_w: float | None = None
    power_limit_max_w: float | None = None
    power_draw_w: float | None = None
    temp_c: float | None = None
    temp_slowdown_c: float | None = None
    temp_shutdown_c: float | None = None
    throttle_reasons: tuple[str, ...] | None = None
    """Active clock-event reasons (sw_power_cap, hw_slowdown, sw_thermal…); () when none."""
    compute_capability: str | None = None
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def slowdown_margin_c(self) -> float | None:
        if self.temp_c is None or self.temp_slowdown_c is None:
            return None
        return self.temp_slowdown_c - self.temp_c


@dataclass(frozen=True)
class NvmlFacts:
    available: bool
    reason: str | None = None
    """Why NVML could not be used (no driver, library missing, not supported…)."""
    driver_version: str | None = None
    cuda_version: str | None = None
    gpus: tuple[GpuFacts, ...] = ()


@dataclass(frozen=True)
class PowerRail:
    name: str
    voltage_v: float | None
    current_a: float | None
    power_w: float | None


@dataclass(frozen=True)
class TegraFacts:
    model: str | None
    nvpmodel_mode: str | None
    thermal_zones: tuple[TemperatureReading, ...] = ()
    power_rails: tuple[PowerRail, ...] = ()
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HostFacts:
    """Everything `gemba install probe` reports about one box."""

    hostname: str
    os: str
    kernel: str
    cpu: CpuFacts
    memory: MemoryFacts
    disk: DiskFacts
    nvml: NvmlFacts
    tegra: TegraFacts | None = None
    temperatures: tuple[TemperatureReading, ...] = ()
    fans: tuple[FanReading, ...] = ()
    battery: BatteryFacts | None = None
    description: str = ""
    """For a recorded box: what it is and where its figures come from."""
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def gpus(self) -> tuple[GpuFacts, ...]:
        return self.nvml.gpus


def to_dict(facts: Any) -> dict[str, Any]:
    return dataclasses.asdict(facts)


def from_dict(cls: type[T], data: Any) -> T:
    """Build a facts dataclass (and everything inside it) from plain JSON data."""
    return typing.cast(T, _build(cls, data))


def _build(kind: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return _build(options[0], data)
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        names = {f.name for f in dataclasses.fields(kind)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{kind.__name__}: unknown fields {sorted(unknown)}")
        return kind(**{name: _build(hints[name], value) for name, value in data.items()})
    if origin is tuple:
        item = typing.get_args(kind)[0]
        return tuple(_build(item, value) for value in data)
    if origin is dict:
        return dict(data)
    if kind is float and isinstance(data, int):
        return float(data)
    return data
