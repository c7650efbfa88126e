"""Host facts through psutil and /proc: CPU, memory (with the cgroup limit), disk, sensors.

`ps` is the psutil module in production and a fake built from a recorded box in tests; `proc`
and `sys_root` point at /proc and /sys or at a fake tree. Missing pieces are None with a reason.
"""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

from appliance.hardware.facts import (
    BatteryFacts,
    CpuFacts,
    DiskFacts,
    FanReading,
    MemoryFacts,
    TemperatureReading,
)

_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as a huge number
# The flags that decide which llama.cpp kernels can run, plus `hypervisor` (a VM).
BUILD_FLAGS = frozenset({
    "sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
    "asimd", "neon", "asimddp", "asimdhp", "sve", "i8mm", "hypervisor",
})


def read_cpu(ps: ModuleType | Any = psutil, proc: Path = Path("/proc")) -> CpuFacts:
    model, flags, arm = _cpuinfo(proc)
    try:
        freq = ps.cpu_freq() if hasattr(ps, "cpu_freq") else None
    except (NotImplementedError, OSError):  # e.g. a Jetson cluster switched off by nvpmodel
        freq = None
    return CpuFacts(
        model=model or platform.processor() or "unknown",
        arch="aarch64" if arm else platform.machine(),
        logical_cores=ps.cpu_count(logical=True) or os.cpu_count() or 1,
        physical_cores=ps.cpu_count(logical=False),
        flags=tuple(sorted(flags)),
        max_freq_mhz=(freq.max or None) if freq else None,
    )


def _cpuinfo(proc: Path) -> tuple[str, set[str], bool]:
    """Model, build-relevant flags, and whether the kernel describes an ARM CPU."""
    try:
        text = (proc / "cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", set(), platform.machine() in ("aarch64", "arm64")
    model, flags, arm = "", set(), False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split()) & BUILD_FLAGS
        elif key == "cpu implementer":
            arm = True
    return model, flags, arm


def read_memory(ps: ModuleType | Any = psutil, sys_root: Path = Path("/sys"),
                proc: Path = Path("/proc")) -> MemoryFacts:
    virtual, swap = ps.virtual_memory(), ps.swap_memory()
    return MemoryFacts(total_bytes=virtual.total, available_bytes=virtual.available,
                       swap_total_bytes=swap.total, swap_free_bytes=swap.free,
                       cgroup_limit_bytes=cgroup_memory_limit(sys_root, proc))


def cgroup_memory_limit(sys_root: Path = Path("/sys"), proc: Path = Path("/proc")) -> int | None:
    """This process's cgroup memory limit (v2 memory.max or v1 limit_in_bytes), None if none."""
    v2_group, v1_group = _cgroup_paths(proc)
    candidates = [sys_root / "fs/cgroup" / v2_group.lstrip("/") / "memory.max",
                  sys_root / "fs/cgroup/memory.max",
                  sys_root / "fs/cgroup/memory" / v1_group.lstrip("/") / "memory.limit_in_bytes",
                  sys_root / "fs/cgroup/memory/memory.limit_in_bytes"]
    for candidate in candidates:
        try:
            raw = candidate.read_text().strip()
        except OSError:
            continue
        if raw == "max" or not raw.isdigit() or int(raw) >= _UNLIMITED:
            return None
        return int(raw)
    return None


def _cgroup_paths(proc: Path) -> tuple[str, str]:
    """This process's cgroup: the v2 path ("0::/…") and the v1 memory controller's path."""
    v2, v1 = "/", "/"
    try:
        for line in (proc / "self/cgroup").read_text().splitlines():
            number, controllers, path = (line.split(":", 2) + ["", ""])[:3]
            if number == "0" and controllers == "":
                v2 = path or "/"
            elif "memory" in controllers.split(","):
                v1 = path or "/"
    except OSError:
        pass
    return v2, v1


def read_disk(path: Path, ps: ModuleType | Any = psutil) -> DiskFacts:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    usage = ps.disk_usage(str(existing))
    return DiskFacts(path=str(path), total_bytes=usage.total, free_bytes=usage.free)


def read_temperatures(ps: ModuleType | Any = psutil) -> tuple[tuple[TemperatureReading, ...],
                                                              str | None]:
    """CPU and board temperatures with their labels, or () and the reason there are none."""
    if not hasattr(ps, "sensors_temperatures"):
        return (), "this platform has no temperature sensors interface"
    try:
        groups = ps.sensors_temperatures()
    except (OSError, RuntimeError) as exc:
        return (), f"sensors unreadable: {exc}"
    readings = tuple(
        TemperatureReading(source, entry.label or source, float(entry.current),
                           entry.high or None, entry.critical or None)
        for source, entries in sorted(groups.items()) for entry in entries
        if entry.current is not None)
    return readings, None if readings else "no temperature sensors found (VM or container?)"


_NOT_CPU = ("nvme", "gpu", "iwlwifi", "drivetemp", "amdgpu", "nouveau", "ath", "mt79", "bat")


def is_cpu_sensor(reading: TemperatureReading) -> bool:
    """Whether a reading describes the CPU or SoC (not a disk, radio, battery or the GPU)."""
    text = f"{reading.source} {reading.label}".lower()
    return not any(word in text for word in _NOT_CPU)


def read_fans(ps: ModuleType | Any = psutil) -> tuple[FanReading, ...]:
    if not hasattr(ps, "sensors_fans"):
        return ()
    try:
        groups = ps.sensors_fans()
    except (OSError, RuntimeError):
        return ()
    return tuple(FanReading(source, entry.label or source, int(entry.current))
                 for source, entries in sorted(groups.items()) for entry in entries)


def read_battery(ps: ModuleType | Any = psutil) -> BatteryFacts | None:
    if not hasattr(ps, "sensors_battery"):
        return None
    try:
        battery = ps.sensors_battery()
    except (OSError, RuntimeError):
        return None
    if battery is None:
        return None
    left = battery.secsleft if isinstance(battery.secsleft, int) and battery.secsleft >= 0 \
        else None
    return BatteryFacts(float(battery.percent), battery.power_plugged, left)


def host_identity() -> tuple[str, str, str]:
    return socket.gethostname(), f"{platform.system()} {platform.release()}", platform.version()
