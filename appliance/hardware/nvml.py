"""NVIDIA GPUs through NVML: the only module that imports `pynvml` (from nvidia-ml-py).

Every call goes through `_read`, which turns "not supported" (Jetson, consumer cards, vGPU) and
"no permission" into None plus a reason; a missing library or driver makes the whole probe
"unavailable" with the reason, never an exception (nvitop's libnvml.py pattern).
`nvml` is the pynvml module in production and a fake built from recorded readings in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from appliance.hardware.facts import GpuFacts, NvmlFacts

_MIB = 1 << 20
# Clock-event (throttle) reason bits, named as an engineer reads them.
_REASONS = {
    0x0000000000000001: "gpu_idle",
    0x0000000000000002: "applications_clocks_setting",
    0x0000000000000004: "sw_power_cap",
    0x0000000000000008: "hw_slowdown",
    0x0000000000000010: "sync_boost",
    0x0000000000000020: "sw_thermal_slowdown",
    0x0000000000000040: "hw_thermal_slowdown",
    0x0000000000000080: "hw_power_brake_slowdown",
    0x0000000000000100: "display_clock_setting",
}


def load_pynvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def _error_reason(nvml: Any, error: Exception) -> str:
    checks = [("NVMLError_NotSupported", "not supported by this GPU or driver"),
              ("NVMLError_NoPermission", "no permission (run as root or adjust the driver)"),
              ("NVMLError_DriverNotLoaded", "the NVIDIA driver is not loaded"),
              ("NVMLError_LibraryNotFound", "the NVML library (libnvidia-ml) is not installed"),
              ("NVMLError_GpuIsLost", "the GPU fell off the bus (GPU is lost)")]
    for name, reason in checks:
        cls = getattr(nvml, name, None)
        if cls is not None and isinstance(error, cls):
            return reason
    return f"NVML error: {error}"


def _read(nvml: Any, unavailable: dict[str, str], key: str,
          call: Callable[[], Any]) -> Any:
    try:
        return call()
    except getattr(nvml, "NVMLError", Exception) as error:
        unavailable[key] = _error_reason(nvml, error)
        return None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe_nvml(nvml: ModuleType | Any | None = None) -> NvmlFacts:
    """All NVIDIA GPUs with their limits and current state; never raises."""
    nvml = nvml if nvml is not None else load_pynvml()
    if nvml is None:
        return NvmlFacts(False, "the nvidia-ml-py package is not installed")
    try:
        nvml.nvmlInit()
    except Exception as error:  # noqa: BLE001 - any init failure means "not available"
        return NvmlFacts(False, _error_reason(nvml, error))
    try:
        scratch: dict[str, str] = {}
        driver = _read(nvml, scratch, "driver", nvml.nvmlSystemGetDriverVersion)
        cuda = _read(nvml, scratch, "cuda", nvml.nvmlSystemGetCudaDriverVersion_v2)
        count = _read(nvml, scratch, "count", nvml.nvmlDeviceGetCount) or 0
        gpus = tuple(_probe_gpu(nvml, index) for index in range(count))
        reason = None if count else scratch.get("count", "no NVIDIA GPU found")
        return NvmlFacts(bool(count), reason, _text(driver) if driver else None,
                         _cuda_text(cuda), gpus)
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001, S110 - shutdown errors change nothing for the probe
            pass


def _cuda_text(version: int | None) -> str | None:
    if not version:
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


def _probe_gpu(nvml: Any, index: int) -> GpuFacts:
    missing: dict[str, str] = {}
    handle = _read(nvml, missing, "gpu", lambda: nvml.nvmlDeviceGetHandleByIndex(index))
    name = _read(nvml, missing, "name", lambda: nvml.nvmlDeviceGetName(handle)) \
        if handle is not None else None
    if handle is None or name is None:
        # One GPU that fell off the bus or is forbidden must not hide the others.
        return GpuFacts(index=index, name="unknown", unavailable=missing)

    def read(key: str, call: Callable[[], Any]) -> Any:
        return _read(nvml, missing, key, call)

    memory = read("memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
    limits = read("power_limit_range",
                  lambda: nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle))
    enforced = read("power_limit_w", lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
    draw = read("power_draw_w", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
    reasons = read("throttle_reasons",
                   lambda: nvml.nvmlDeviceGetCurrentClocksEventReasons(handle))
    capability = read("compute_capability",
                      lambda: nvml.nvmlDeviceGetCudaComputeCapability(handle))
    return GpuFacts(
        index=index,
        name=_text(name),
        uuid=_text(u) if (u := read("uuid", lambda: nvml.nvmlDeviceGetUUID(handle))) else None,
        memory_total_bytes=memory.total if memory else None,
        memory_free_bytes=memory.free if memory else None,
        power_limit_w=_watts(enforced),
        power_limit_min_w=_watts(limits[0]) if limits else None,
        power_limit_max_w=_watts(limits[1]) if limits else None,
        power_draw_w=_watts(draw),
        temp_c=_float(read("temp_c", lambda: nvml.nvmlDeviceGetTemperature(
            handle, nvml.NVML_TEMPERATURE_GPU))),
        temp_slowdown_c=_float(read("temp_slowdown_c", lambda: nvml.nvmlDeviceGetTemperatureThreshold(
            handle, nvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN))),
        temp_shutdown_c=_float(read("temp_shutdown_c", lambda: nvml.nvmlDeviceGetTemperatureThreshold(
            handle, nvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN))),
        throttle_reasons=None if reasons is None else decode_reasons(reasons),
        compute_capability=f"{capability[0]}.{capability[1]}" if capability else None,
        unavailable=missing,
    )


def decode_reasons(mask: int) -> tuple[str, ...]:
    return tuple(name for bit, name in _REASONS.items() if mask & bit and name != "gpu_idle")


def _watts(milliwatts: int | None) -> float | None:
    return None if milliwatts is None else milliwatts / 1000.0


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class PowerLimits:
    """Set, scale and restore NVIDIA power limits; one NVML session for the daemon's life.

    Every failure (no permission, not supported, no driver) turns the actuator off with the
    reason, instead of raising: the rest of the governor keeps working.
    """

    def __init__(self, nvml: ModuleType | Any | None = None) -> None:
        self.nvml = nvml if nvml is not None else load_pynvml()
        self.original_mw: dict[int, int] = {}
        self.range_mw: dict[int, tuple[int, int]] = {}
        self.current_w: float | None = None
        self.disabled: str | None = None if self.nvml is not None else \
            "the nvidia-ml-py package is not installed"

    def start(self, cap_w: float) -> str | None:
        """Apply the planned cap to every GPU; returns why it could not, or None."""
        if self.disabled:
            return self.disabled
        try:
            self.nvml.nvmlInit()
            for index in range(self.nvml.nvmlDeviceGetCount()):
                handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
                self.original_mw[index] = self.nvml.nvmlDeviceGetEnforcedPowerLimit(handle)
                low, high = self.nvml.nvmlDeviceGetPowerManagementLimitConstraints(handle)
                self.range_mw[index] = (int(low), int(high))
        except Exception as error:  # noqa: BLE001 - NVML errors switch the actuator off
            self.disabled = _error_reason(self.nvml, error)
            return self.disabled
        return self.set(cap_w)

    def set(self, cap_w: float) -> str | None:
        if self.disabled or not self.original_mw:
            return self.disabled or "no NVIDIA GPU"
        try:
            for index, (low, high) in self.range_mw.items():
                handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
                self.nvml.nvmlDeviceSetPowerManagementLimit(
                    handle, min(high, max(low, int(cap_w * 1000))))
        except Exception as error:  # noqa: BLE001 - e.g. no permission: say why, stop trying
            self.disabled = _error_reason(self.nvml, error)
            return self.disabled
        self.current_w = cap_w
        return None

    def restore(self) -> None:
        if not self.original_mw or self.nvml is None:
            return
        for index, milliwatts in self.original_mw.items():
            try:
                handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
                self.nvml.nvmlDeviceSetPowerManagementLimit(handle, milliwatts)
            except Exception:  # noqa: BLE001, S110 - restoring is best effort at exit
                pass
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001, S110
            pass
        self.original_mw.clear()
