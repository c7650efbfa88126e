"""Setting NVIDIA power limits through NVML, against fakes built from recorded cards."""

from __future__ import annotations

from appliance.hardware.nvml import PowerLimits
from tests.fakes.hardware import FakeNvml, NVMLError_NoPermission, load_recorded


def l4() -> FakeNvml:
    return FakeNvml.from_facts(load_recorded("rack-l4-24gb").nvml)


def test_planned_cap_is_applied_scaled_and_restored() -> None:
    nvml = l4()
    original = int(load_recorded("rack-l4-24gb").gpus[0].power_limit_w * 1000)
    power = PowerLimits(nvml)
    assert power.start(60.0) is None
    assert nvml.set_limits_mw == {0: 60000}
    assert power.set(30.0) is None
    assert nvml.set_limits_mw == {0: 40000}  # clamped to the L4's 40 W minimum
    power.restore()
    assert nvml.set_limits_mw == {0: original}  # the card's own limit is back


def test_no_permission_switches_the_actuator_off_with_the_reason() -> None:
    nvml = l4()
    nvml.set_error = NVMLError_NoPermission
    power = PowerLimits(nvml)
    why = power.start(60.0)
    assert why is not None and "no permission" in why
    assert power.disabled == why
    assert power.set(50.0) == why  # stays off, never raises


def test_box_without_nvidia_gpu_says_so() -> None:
    nvml = FakeNvml.from_facts(load_recorded("vm-no-sensors").nvml)
    why = PowerLimits(nvml).start(60.0)
    assert why is not None and "NVML library" in why
