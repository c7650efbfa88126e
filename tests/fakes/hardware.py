"""Fake psutil, NVML and /proc + /sys trees, built from the recorded boxes in
tests/fixtures/hardware/.

Every reading a fake returns comes from a recording: tests never invent numbers. A recording is
what `gemba install probe --json` prints for a box; the fakes turn it back into the raw sources the
probe reads (psutil's namedtuples, pynvml calls in milliwatts, sysfs files in millidegrees,
millivolts and milliamps), so `probe(data_dir, recorded_sources(name, tmp_path))` must give the
recording back.

NVML failures are named scenarios, as in wookayin/gpustat's tests (a fake pynvml per GPU, named
after the failure it reproduces): `driver_not_loaded`, `library_not_found`,
`power_not_supported`, `two_gpus_one_hot`, `gpu_lost`.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict, namedtuple
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil

from appliance.hardware.facts import GpuFacts, HostFacts, NvmlFacts, from_dict
from appliance.hardware.host import BUILD_FLAGS
from appliance.hardware.probe import Sources

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hardware"


def recorded_names() -> list[str]:
    """Every recorded box, by file name without .json."""
    return sorted(path.stem for path in FIXTURES.glob("*.json"))


def load_recorded(name: str) -> HostFacts:
    return from_dict(HostFacts, json.loads((FIXTURES / f"{name}.json").read_text("utf-8")))


# --- psutil -----------------------------------------------------------------------------------
# The namedtuples psutil returns on Linux (field names and order as in psutil._common).
shwtemp = namedtuple("shwtemp", ["label", "current", "high", "critical"])
sfan = namedtuple("sfan", ["label", "current"])
sbattery = namedtuple("sbattery", ["percent", "secsleft", "power_plugged"])
svmem = namedtuple("svmem", ["total", "available", "percent", "used", "free"])
sswap = namedtuple("sswap", ["total", "used", "free", "percent", "sin", "sout"])
sdiskusage = namedtuple("sdiskusage", ["total", "used", "free", "percent"])
scpufreq = namedtuple("scpufreq", ["current", "min", "max"])


def _percent(used: int, total: int) -> float:
    return round(used / total * 100, 1) if total else 0.0


class FakePsutil:
    """The part of psutil's surface that appliance/hardware/host.py reads, for one recorded box.

    `missing` names functions this "platform" lacks (hasattr is False, as psutil on Windows has
    no sensors_temperatures); `failing` maps a function name to the exception it raises.
    """

    POWER_TIME_UNKNOWN = psutil.POWER_TIME_UNKNOWN
    POWER_TIME_UNLIMITED = psutil.POWER_TIME_UNLIMITED

    def __init__(self, facts: HostFacts, *, missing: Iterable[str] = (),
                 failing: Mapping[str, BaseException] | None = None) -> None:
        self._facts = facts
        self._missing = frozenset(missing)
        self._failing = dict(failing or {})
        self.disk_paths: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_") and name in object.__getattribute__(self, "_missing"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    def _maybe_fail(self, name: str) -> None:
        if name in self._failing:
            raise self._failing[name]

    def cpu_count(self, logical: bool = True) -> int | None:
        self._maybe_fail("cpu_count")
        cpu = self._facts.cpu
        return cpu.logical_cores if logical else cpu.physical_cores

    def cpu_freq(self, percpu: bool = False) -> Any:
        self._maybe_fail("cpu_freq")
        # Only the maximum is recorded. Without cpufreq (VMs) psutil reads "cpu MHz" from
        # /proc/cpuinfo and reports min = max = 0.0; the current value is not recorded.
        top = self._facts.cpu.max_freq_mhz or 0.0
        freq = scpufreq(top, 0.0, top)
        return [freq] * self._facts.cpu.logical_cores if percpu else freq

    def virtual_memory(self) -> Any:
        self._maybe_fail("virtual_memory")
        mem = self._facts.memory
        used = mem.total_bytes - mem.available_bytes
        return svmem(mem.total_bytes, mem.available_bytes, _percent(used, mem.total_bytes), used,
                     mem.available_bytes)

    def swap_memory(self) -> Any:
        self._maybe_fail("swap_memory")
        mem = self._facts.memory
        used = mem.swap_total_bytes - mem.swap_free_bytes
        return sswap(mem.swap_total_bytes, used, mem.swap_free_bytes,
                     _percent(used, mem.swap_total_bytes), 0, 0)

    def disk_usage(self, path: str) -> Any:
        self._maybe_fail("disk_usage")
        self.disk_paths.append(path)
        disk = self._facts.disk
        used = disk.total_bytes - disk.free_bytes
        return sdiskusage(disk.total_bytes, used, disk.free_bytes, _percent(used, disk.total_bytes))

    def sensors_temperatures(self, fahrenheit: bool = False) -> dict[str, list[Any]]:
        self._maybe_fail("sensors_temperatures")
        if fahrenheit:
            raise NotImplementedError("the fake answers in Celsius only")
        groups: dict[str, list[Any]] = defaultdict(list)
        for reading in self._facts.temperatures:
            # psutil gives "" for an unlabelled hwmon channel; the probe then uses the driver name
            label = "" if reading.label == reading.source else reading.label
            groups[reading.source].append(
                shwtemp(label, reading.temp_c, reading.high_c, reading.critical_c))
        return dict(groups)

    def sensors_fans(self) -> dict[str, list[Any]]:
        self._maybe_fail("sensors_fans")
        groups: dict[str, list[Any]] = defaultdict(list)
        for fan in self._facts.fans:
            groups[fan.source].append(sfan("" if fan.label == fan.source else fan.label, fan.rpm))
        return dict(groups)

    def sensors_battery(self) -> Any:
        self._maybe_fail("sensors_battery")
        battery = self._facts.battery
        if battery is None:
            return None
        if battery.seconds_left is not None:
            left: int = battery.seconds_left
        elif battery.on_mains:
            left = self.POWER_TIME_UNLIMITED
        else:
            left = self.POWER_TIME_UNKNOWN
        return sbattery(battery.percent, left, battery.on_mains)


def fake_psutil(facts: HostFacts, **options: Any) -> FakePsutil:
    return FakePsutil(facts, **options)


# --- /proc and /sys ---------------------------------------------------------------------------
# Flags every x86-64 box of these generations has; none of them decides the llama.cpp build, so
# they only check that the probe filters the kernel's long list down to BUILD_FLAGS.
_X86_BASE_FLAGS = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 "
                   "clflush mmx fxsr sse sse2 ht syscall nx lm constant_tsc rep_good nopl "
                   "xtopology cpuid pni pclmulqdq ssse3 cx16 sse4_1 popcnt aes xsave").split()
_ARM_BASE_FEATURES = ("fp evtstrm aes pmull sha1 sha2 crc32 atomics fphp cpuid asimdrdm lrcpc "
                      "dcpop uscat ilrcpc flagm paca pacg").split()
assert not (set(_X86_BASE_FLAGS) | set(_ARM_BASE_FEATURES)) & BUILD_FLAGS
# Arm's part numbers, by the board family that uses the core (Orin: Cortex-A78AE).
_ARM_PARTS = {"orin": "0xd42"}
# Jetson Orin NX 16GB nvpmodel modes (/etc/nvpmodel/nvpmodel_p3767_0000.conf).
ORIN_NX_16GB_MODES = {"MAXN": 0, "10W": 1, "15W": 2, "25W": 3}
INA3221_SHUNT_MOHM = 5  # the module's INA3221 shunts


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _cpuinfo(facts: HostFacts) -> str:
    cpu = facts.cpu
    physical = cpu.physical_cores or cpu.logical_cores
    blocks = []
    if cpu.arch == "aarch64":
        board = (facts.tegra.model if facts.tegra and facts.tegra.model else "").lower()
        part = next((p for family, p in _ARM_PARTS.items() if family in board), None)
        revision = re.search(r"rev (\d+)", cpu.model)
        for index in range(cpu.logical_cores):
            lines = [f"processor\t: {index}", f"model name\t: {cpu.model}",
                     f"Features\t: {' '.join(_ARM_BASE_FEATURES + list(cpu.flags))}",
                     "CPU implementer\t: 0x41", "CPU architecture: 8", "CPU variant\t: 0x0"]
            if part:
                lines.append(f"CPU part\t: {part}")
            if revision:
                lines.append(f"CPU revision\t: {revision.group(1)}")
            blocks.append("\n".join(lines))
    else:
        vendor = "AuthenticAMD" if "AMD" in cpu.model else "GenuineIntel"
        for index in range(cpu.logical_cores):
            blocks.append("\n".join([
                f"processor\t: {index}", f"vendor_id\t: {vendor}", f"model name\t: {cpu.model}",
                "physical id\t: 0", f"siblings\t: {cpu.logical_cores}",
                f"core id\t\t: {index % physical}", f"cpu cores\t: {physical}",
                f"flags\t\t: {' '.join(_X86_BASE_FLAGS + list(cpu.flags))}"]))
    return "\n\n".join(blocks) + "\n\n"


def fake_proc_tree(facts: HostFacts, root: Path) -> Path:
    """Write the /proc and /sys files the probe reads for this box under `root`; return root."""
    _write(root / "proc/cpuinfo", _cpuinfo(facts))
    # cgroup v2: the appliance runs as a systemd service; "max" when it has no limit.
    group = "/system.slice/gemba.service"
    _write(root / "proc/self/cgroup", f"0::{group}\n")
    limit = facts.memory.cgroup_limit_bytes
    _write(root / "sys/fs/cgroup" / group.lstrip("/") / "memory.max",
           f"{limit}\n" if limit is not None else "max\n")
    if facts.tegra is not None:
        tegra = facts.tegra
        if tegra.model is not None:
            _write(root / "proc/device-tree/model", tegra.model + "\x00")  # NUL-terminated
        for index, zone in enumerate(tegra.thermal_zones):
            folder = root / f"sys/class/thermal/thermal_zone{index}"
            _write(folder / "type", zone.label + "\n")
            _write(folder / "temp", f"{round(zone.temp_c * 1000)}\n")
        for chip, start in enumerate(range(0, len(tegra.power_rails), 3)):
            hwmon = root / f"sys/bus/i2c/drivers/ina3221/1-004{chip}/hwmon/hwmon{3 + chip}"
            rails = tegra.power_rails[start:start + 3]
            for channel, rail in enumerate(rails, start=1):
                _write(hwmon / f"in{channel}_label", rail.name + "\n")
                if rail.voltage_v is not None:
                    _write(hwmon / f"in{channel}_input", f"{round(rail.voltage_v * 1000)}\n")
                if rail.current_a is not None:
                    _write(hwmon / f"curr{channel}_input", f"{round(rail.current_a * 1000)}\n")
            # The driver's 7th channel sums the shunt voltages; the probe must skip it.
            shunt_mv = sum((r.current_a or 0.0) * INA3221_SHUNT_MOHM for r in rails)
            _write(hwmon / "in7_label", "sum of shunt voltages\n")
            _write(hwmon / "in7_input", f"{round(shunt_mv)}\n")
    return root


def fake_nvpmodel(mode: str, folder: Path) -> Path:
    """An `nvpmodel` that answers `-q` as JetPack 5 does ("NV Power Mode: 15W" then the id)."""
    if mode not in ORIN_NX_16GB_MODES:
        raise ValueError(f"no nvpmodel id known for mode {mode!r}")
    script = folder / "nvpmodel"
    _write(script, "#!/bin/sh\n# fake nvpmodel: answers -q like JetPack 5 on an Orin NX 16GB\n"
                   f"printf 'NV Power Mode: {mode}\\n{ORIN_NX_16GB_MODES[mode]}\\n'\n")
    script.chmod(0o755)
    return script


# --- NVML -------------------------------------------------------------------------------------
class NVMLError(Exception):
    """pynvml's error: one subclass per NVML return code, str() is NVML's error string."""

    value = 999
    message = "Unknown Error"

    def __init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class NVMLError_Uninitialized(NVMLError):
    value, message = 1, "Uninitialized"


class NVMLError_InvalidArgument(NVMLError):
    value, message = 2, "Invalid Argument"


class NVMLError_NotSupported(NVMLError):
    value, message = 3, "Not Supported"


class NVMLError_NoPermission(NVMLError):
    value, message = 4, "Insufficient Permissions"


class NVMLError_DriverNotLoaded(NVMLError):
    value, message = 9, "Driver Not Loaded"


class NVMLError_LibraryNotFound(NVMLError):
    value, message = 12, "NVML Shared Library Not Found"


class NVMLError_GpuIsLost(NVMLError):
    value, message = 15, "GPU is lost"


# The reason texts a recording carries (as appliance/hardware/nvml.py words them), mapped back to
# the error NVML raised on that box.
NOT_SUPPORTED = "not supported by this GPU or driver"
NO_GPU = "no NVIDIA GPU found"
REASON_ERRORS: dict[str, type[NVMLError]] = {
    NOT_SUPPORTED: NVMLError_NotSupported,
    "no permission (run as root or adjust the driver)": NVMLError_NoPermission,
    "the NVIDIA driver is not loaded": NVMLError_DriverNotLoaded,
    "the NVML library (libnvidia-ml) is not installed": NVMLError_LibraryNotFound,
    "the GPU fell off the bus (GPU is lost)": NVMLError_GpuIsLost,
}
# NVML's clock-event reason bits (nvmlClocksEventReason*), independent of nvml.py's table.
CLOCK_EVENT_BITS = {
    "gpu_idle": 0x1, "applications_clocks_setting": 0x2, "sw_power_cap": 0x4,
    "hw_slowdown": 0x8, "sync_boost": 0x10, "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40, "hw_power_brake_slowdown": 0x80, "display_clock_setting": 0x100,
}

c_nvmlMemory_t = namedtuple("c_nvmlMemory_t", ["total", "free", "used"])


class _Handle:
    def __init__(self, owner: FakeNvml, index: int) -> None:
        self.owner, self.index = owner, index


def _milliwatts(watts: float) -> int:
    milliwatts = round(watts * 1000)
    if milliwatts / 1000 != watts:
        raise ValueError(f"recorded power {watts} W is finer than NVML's 1 mW")
    return milliwatts


def _whole_degrees(celsius: float) -> int:
    if celsius != int(celsius):
        raise ValueError(f"recorded GPU temperature {celsius} C: NVML reports whole degrees")
    return int(celsius)


def _cuda_int(version: str) -> int:
    major, minor = (int(part) for part in version.split("."))
    return major * 1000 + minor * 10


class FakeNvml:
    """A module-like pynvml answering from `NvmlFacts`; a None field raises the error its
    `unavailable` reason names (NotSupported when there is none)."""

    NVML_TEMPERATURE_GPU = 0
    NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = 0
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1
    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_InvalidArgument = NVMLError_InvalidArgument
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost

    def __init__(self, facts: NvmlFacts, *, init_error: type[NVMLError] | None = None,
                 handle_errors: Mapping[int, type[NVMLError]] | None = None) -> None:
        self.facts = facts
        self.init_error = init_error
        self.handle_errors = dict(handle_errors or {})
        self.init_count = 0
        self.shutdown_count = 0
        self.set_limits_mw: dict[int, int] = {}
        """Power limits set through nvmlDeviceSetPowerManagementLimit, by GPU index."""
        self.set_error: type[NVMLError] | None = None
        """Raised by the setter: NoPermission for a daemon not running as root."""

    @classmethod
    def from_facts(cls, facts: NvmlFacts) -> FakeNvml:
        """The NVML of a recorded box, including why it was not available."""
        if facts.available or facts.reason == NO_GPU:
            return cls(facts)
        error = REASON_ERRORS.get(facts.reason or "")
        if error is None:
            raise ValueError(f"recorded NVML reason {facts.reason!r} has no fake error")
        return cls(facts, init_error=error)

    # library
    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error()
        self.init_count += 1

    def nvmlShutdown(self) -> None:
        self._check()
        self.init_count -= 1
        self.shutdown_count += 1

    def _check(self) -> None:
        if self.init_count <= 0:
            raise NVMLError_Uninitialized()

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check()
        if self.facts.driver_version is None:
            raise NVMLError_NotSupported()
        return self.facts.driver_version

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._check()
        if self.facts.cuda_version is None:
            raise NVMLError_NotSupported()
        return _cuda_int(self.facts.cuda_version)

    def nvmlDeviceGetCount(self) -> int:
        self._check()
        return len(self.facts.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._check()
        if index in self.handle_errors:
            raise self.handle_errors[index]()
        if not 0 <= index < len(self.facts.gpus):
            raise NVMLError_InvalidArgument()
        return _Handle(self, index)

    # devices
    def _gpu(self, handle: Any) -> GpuFacts:
        self._check()
        if not isinstance(handle, _Handle) or handle.owner is not self:
            raise NVMLError_InvalidArgument()
        return self.facts.gpus[handle.index]

    @staticmethod
    def _value(gpu: GpuFacts, key: str, *values: Any) -> None:
        if any(value is None for value in values):
            raise REASON_ERRORS.get(gpu.unavailable.get(key, ""), NVMLError_NotSupported)()

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._gpu(handle).name

    def nvmlDeviceSetPowerManagementLimit(self, handle: Any, milliwatts: int) -> None:
        gpu = self._gpu(handle)
        if self.set_error is not None:
            raise self.set_error()
        self._value(gpu, "power_limit_range", gpu.power_limit_min_w, gpu.power_limit_max_w)
        assert gpu.power_limit_min_w is not None and gpu.power_limit_max_w is not None
        if not _milliwatts(gpu.power_limit_min_w) <= milliwatts <= \
                _milliwatts(gpu.power_limit_max_w):
            raise NVMLError_InvalidArgument()
        self.set_limits_mw[handle.index] = milliwatts

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        gpu = self._gpu(handle)
        self._value(gpu, "uuid", gpu.uuid)
        return str(gpu.uuid)

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        gpu = self._gpu(handle)
        self._value(gpu, "memory", gpu.memory_total_bytes, gpu.memory_free_bytes)
        total, free = int(gpu.memory_total_bytes or 0), int(gpu.memory_free_bytes or 0)
        return c_nvmlMemory_t(total, free, total - free)

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: Any) -> list[int]:
        gpu = self._gpu(handle)
        self._value(gpu, "power_limit_range", gpu.power_limit_min_w, gpu.power_limit_max_w)
        return [_milliwatts(gpu.power_limit_min_w or 0.0), _milliwatts(gpu.power_limit_max_w or 0.0)]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        gpu = self._gpu(handle)
        if handle.index in self.set_limits_mw:
            return self.set_limits_mw[handle.index]
        self._value(gpu, "power_limit_w", gpu.power_limit_w)
        return _milliwatts(gpu.power_limit_w or 0.0)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        gpu = self._gpu(handle)
        self._value(gpu, "power_draw_w", gpu.power_draw_w)
        return _milliwatts(gpu.power_draw_w or 0.0)

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        gpu = self._gpu(handle)
        if sensor != self.NVML_TEMPERATURE_GPU:
            raise NVMLError_InvalidArgument()
        self._value(gpu, "temp_c", gpu.temp_c)
        return _whole_degrees(gpu.temp_c or 0.0)

    def nvmlDeviceGetTemperatureThreshold(self, handle: Any, kind: int) -> int:
        gpu = self._gpu(handle)
        if kind == self.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN:
            key, value = "temp_slowdown_c", gpu.temp_slowdown_c
        elif kind == self.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN:
            key, value = "temp_shutdown_c", gpu.temp_shutdown_c
        else:
            raise NVMLError_InvalidArgument()
        self._value(gpu, key, value)
        return _whole_degrees(value or 0.0)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        gpu = self._gpu(handle)
        self._value(gpu, "throttle_reasons", gpu.throttle_reasons)
        mask = 0
        for reason in gpu.throttle_reasons or ():
            mask |= CLOCK_EVENT_BITS[reason]
        return mask

    def nvmlDeviceGetCudaComputeCapability(self, handle: Any) -> tuple[int, int]:
        gpu = self._gpu(handle)
        self._value(gpu, "compute_capability", gpu.compute_capability)
        major, minor = str(gpu.compute_capability).split(".")
        return int(major), int(minor)


def without_power(facts: NvmlFacts, reason: str = NOT_SUPPORTED) -> NvmlFacts:
    """The same GPUs with every power reading unavailable (Jetson, some vGPU profiles)."""
    gone = {"power_limit_range": reason, "power_limit_w": reason, "power_draw_w": reason}
    return replace(facts, gpus=tuple(
        replace(gpu, power_limit_w=None, power_limit_min_w=None, power_limit_max_w=None,
                power_draw_w=None, unavailable={**gpu.unavailable, **gone})
        for gpu in facts.gpus))


def driver_not_loaded() -> FakeNvml:
    """The A2000 box after a kernel update the NVIDIA DKMS module was not rebuilt for."""
    return FakeNvml(load_recorded("ipc-rtx-a2000-12gb").nvml, init_error=NVMLError_DriverNotLoaded)


def library_not_found() -> FakeNvml:
    """A JetPack 5 Jetson: no libnvidia-ml at all."""
    return FakeNvml.from_facts(load_recorded("jetson-orin-nx-16gb-15w").nvml)


def power_not_supported() -> FakeNvml:
    """The L4 handed to a VM as a vGPU: memory and temperature read, power calls do not."""
    return FakeNvml(without_power(load_recorded("rack-l4-24gb").nvml))


def two_gpus_one_hot() -> FakeNvml:
    return FakeNvml.from_facts(load_recorded("two-gpus-one-hot").nvml)


def gpu_lost() -> FakeNvml:
    """The two-GPU box after GPU 0 fell off the bus (Xid 79): its handle cannot be had."""
    return FakeNvml(load_recorded("two-gpus-one-hot").nvml,
                    handle_errors={0: NVMLError_GpuIsLost})


SCENARIOS: dict[str, Callable[[], FakeNvml]] = {
    "driver_not_loaded": driver_not_loaded,
    "library_not_found": library_not_found,
    "power_not_supported": power_not_supported,
    "two_gpus_one_hot": two_gpus_one_hot,
    "gpu_lost": gpu_lost,
}


# --- everything together --------------------------------------------------------------------
def recorded_sources(name: str, tmp_path: Path, *, nvml: Any = None,
                     ps: Any = None) -> Sources:
    """Probe sources for a recorded box: fake psutil, fake NVML (or `nvml`), a fake /proc and
    /sys under tmp_path/root, a fake nvpmodel for a Jetson, and the recorded host identity."""
    facts = load_recorded(name)
    root = fake_proc_tree(facts, tmp_path / "root")
    nvpmodel = None
    if facts.tegra is not None:
        if facts.tegra.nvpmodel_mode is None:
            raise ValueError(f"{name}: no nvpmodel mode recorded; the fake cannot answer -q")
        nvpmodel = str(fake_nvpmodel(facts.tegra.nvpmodel_mode, tmp_path / "bin"))
    return Sources(ps=ps if ps is not None else fake_psutil(facts),
                   nvml=nvml if nvml is not None else FakeNvml.from_facts(facts.nvml),
                   root=root, nvpmodel=nvpmodel,
                   hostname=(facts.hostname, facts.os, facts.kernel))
