"""The hardware readers, tested through fakes built from recorded boxes (FAULTS cases 22-24).

Every figure comes from a recording in tests/fixtures/hardware/: the fakes turn it back into what
psutil, NVML and sysfs would show, and the probe must give the recording back.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
from pathlib import Path

import psutil
import pytest

from appliance.hardware import host, nvml, tegra
from appliance.hardware.facts import HostFacts, NvmlFacts, from_dict, to_dict
from appliance.hardware.host import BUILD_FLAGS
from appliance.hardware.probe import Sources, probe
from tests.fakes.hardware import (
    FIXTURES,
    NOT_SUPPORTED,
    REASON_ERRORS,
    SCENARIOS,
    FakeNvml,
    NVMLError,
    fake_psutil,
    load_recorded,
    recorded_names,
    recorded_sources,
    without_power,
)

RECORDED = recorded_names()
JETSONS = [name for name in RECORDED if load_recorded(name).tegra is not None]
WITH_GPUS = [name for name in RECORDED if load_recorded(name).gpus]


def probe_recorded(name: str, tmp_path: Path, **options: object) -> HostFacts:
    recorded = load_recorded(name)
    return probe(Path(recorded.disk.path), recorded_sources(name, tmp_path, **options))


# --- the recordings themselves -----------------------------------------------------------------
def test_there_are_enough_recorded_boxes() -> None:
    assert len(RECORDED) >= 8
    assert {"fanless-n100-8gb", "atom-e3845-4gb", "i7-ipc-32gb", "ipc-rtx-a2000-12gb",
            "rack-l4-24gb", "jetson-orin-nx-16gb-10w", "jetson-orin-nx-16gb-15w",
            "jetson-orin-nx-16gb-25w", "two-gpus-one-hot", "vm-no-sensors"} <= set(RECORDED)


@pytest.mark.parametrize("name", RECORDED)
def test_recording_round_trips_through_from_dict(name: str) -> None:
    raw = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    facts = from_dict(HostFacts, raw)
    assert json.loads(json.dumps(to_dict(facts))) == raw


@pytest.mark.parametrize("name", RECORDED)
def test_recording_is_consistent(name: str) -> None:
    facts = load_recorded(name)
    assert len(facts.description) > 80, "say what the box is and where the figures come from"
    cpu, mem, disk = facts.cpu, facts.memory, facts.disk
    assert set(cpu.flags) <= BUILD_FLAGS, "record only the flags the probe keeps"
    assert list(cpu.flags) == sorted(cpu.flags)
    assert cpu.physical_cores is None or cpu.physical_cores <= cpu.logical_cores
    assert 0 < mem.available_bytes <= mem.total_bytes
    assert 0 <= mem.swap_free_bytes <= mem.swap_total_bytes
    assert 0 <= disk.free_bytes <= disk.total_bytes
    for reading in facts.temperatures + (facts.tegra.thermal_zones if facts.tegra else ()):
        assert -40 < reading.temp_c < 125
        for limit in (reading.high_c, reading.critical_c):
            assert limit is None or reading.temp_c < limit <= 125
    for gpu in facts.gpus:
        assert gpu.memory_free_bytes is None or gpu.memory_free_bytes <= gpu.memory_total_bytes
        if gpu.power_limit_w is not None:
            assert gpu.power_limit_min_w <= gpu.power_limit_w <= gpu.power_limit_max_w
            assert 0 < gpu.power_draw_w <= gpu.power_limit_w
        assert gpu.temp_c < gpu.temp_slowdown_c < gpu.temp_shutdown_c
        assert set(gpu.throttle_reasons or ()) <= set(nvml._REASONS.values()) - {"gpu_idle"}
    if facts.tegra:
        for rail in facts.tegra.power_rails:
            assert rail.power_w == round(rail.voltage_v * rail.current_a, 3)
        vdd_in = next(r for r in facts.tegra.power_rails if r.name == "VDD_IN")
        assert vdd_in.power_w > sum(r.power_w for r in facts.tegra.power_rails
                                    if r.name != "VDD_IN"), "VDD_IN feeds the other rails"
    if not facts.nvml.available:
        assert facts.unavailable["nvidia"] == facts.nvml.reason


# --- the probe gives every recording back ------------------------------------------------------
@pytest.mark.parametrize("name", RECORDED)
def test_probe_reproduces_the_recorded_box(name: str, tmp_path: Path) -> None:
    recorded = load_recorded(name)
    probed = probe_recorded(name, tmp_path)

    assert probed.cpu.arch == recorded.cpu.arch
    assert probed.cpu.model == recorded.cpu.model
    assert probed.cpu.logical_cores == recorded.cpu.logical_cores
    assert probed.cpu.physical_cores == recorded.cpu.physical_cores
    assert probed.cpu.flags == recorded.cpu.flags
    assert probed.cpu.max_freq_mhz == recorded.cpu.max_freq_mhz
    assert probed.memory == recorded.memory
    assert probed.disk == recorded.disk
    assert probed.nvml == recorded.nvml
    assert probed.tegra == recorded.tegra
    assert probed.temperatures == recorded.temperatures
    assert probed.fans == recorded.fans
    assert probed.battery == recorded.battery
    assert probed.unavailable == recorded.unavailable
    assert (probed.hostname, probed.os, probed.kernel) == \
        (recorded.hostname, recorded.os, recorded.kernel)
    # ...and nothing else differs.
    assert dataclasses.replace(probed, description=recorded.description) == recorded


@pytest.mark.parametrize("name", WITH_GPUS)
def test_every_gpu_field_is_read(name: str, tmp_path: Path) -> None:
    for probed, recorded in zip(probe_recorded(name, tmp_path).gpus, load_recorded(name).gpus,
                                strict=True):
        for field in dataclasses.fields(recorded):
            assert getattr(probed, field.name) == getattr(recorded, field.name), field.name


@pytest.mark.parametrize("name", JETSONS)
def test_jetson_mode_zones_and_rails(name: str, tmp_path: Path) -> None:
    recorded = load_recorded(name).tegra
    probed = probe_recorded(name, tmp_path).tegra
    assert probed is not None and recorded is not None
    assert probed.model == recorded.model
    assert probed.nvpmodel_mode == recorded.nvpmodel_mode
    assert [z.label for z in probed.thermal_zones] == [z.label for z in recorded.thermal_zones]
    assert probed.thermal_zones == recorded.thermal_zones
    assert [r.name for r in probed.power_rails] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    assert probed.power_rails == recorded.power_rails
    assert probed.unavailable == {}


def test_the_three_jetson_modes_are_told_apart(tmp_path: Path) -> None:
    modes = {}
    for name in ("jetson-orin-nx-16gb-10w", "jetson-orin-nx-16gb-15w", "jetson-orin-nx-16gb-25w"):
        facts = probe_recorded(name, tmp_path / name)
        assert facts.tegra is not None
        vdd_in = next(r for r in facts.tegra.power_rails if r.name == "VDD_IN")
        modes[facts.tegra.nvpmodel_mode] = (vdd_in.power_w, facts.cpu.logical_cores)
    assert list(modes) == ["10W", "15W", "25W"]
    assert modes["10W"][0] < modes["15W"][0] < modes["25W"][0]
    assert modes["10W"][0] < 10 and modes["15W"][0] < 15 and modes["25W"][0] < 25
    assert modes["10W"][1] == modes["15W"][1] < modes["25W"][1]


def test_a_switched_off_tegra_zone_is_skipped(tmp_path: Path) -> None:
    # Tegra reports -256 C for a zone whose sensor is powered off (e.g. the GPU rail-gated).
    name = "jetson-orin-nx-16gb-15w"
    sources = recorded_sources(name, tmp_path)
    zones = sorted((sources.root / "sys/class/thermal").glob("thermal_zone*"))
    off = sources.root / f"sys/class/thermal/thermal_zone{len(zones)}"
    off.mkdir()
    (off / "type").write_text("gpu-thermal\n")
    (off / "temp").write_text("-256000\n")
    probed = probe(Path("/var/lib/gemba"), sources).tegra
    assert probed is not None
    assert probed.thermal_zones == load_recorded(name).tegra.thermal_zones


def test_jetson_without_power_monitor_or_nvpmodel_says_why(tmp_path: Path) -> None:
    sources = recorded_sources("jetson-orin-nx-16gb-25w", tmp_path)
    shutil.rmtree(sources.root / "sys/bus/i2c/drivers/ina3221")
    silent = tmp_path / "bin/nvpmodel"
    silent.write_text("#!/bin/sh\necho 'NVPM ERROR: failed to read PARAM'\n")
    probed = tegra.probe_tegra(sources.root, str(silent))
    assert probed is not None
    assert probed.power_rails == ()
    assert probed.nvpmodel_mode is None
    assert probed.unavailable == {"power_rails": "no INA3221 power monitor found in sysfs",
                                  "nvpmodel_mode": "nvpmodel -q printed no mode"}
    missing = tegra.probe_tegra(sources.root, str(tmp_path / "bin/absent"))
    assert missing is not None
    assert missing.unavailable["nvpmodel_mode"].startswith("nvpmodel -q failed")


# --- sensors missing or unreadable (FAULTS case 24) --------------------------------------------
def test_vm_reports_temperatures_unavailable_with_a_reason(tmp_path: Path) -> None:
    probed = probe_recorded("vm-no-sensors", tmp_path)
    assert probed.cpu.has("hypervisor")
    assert probed.temperatures == () and probed.fans == () and probed.battery is None
    assert probed.unavailable["temperatures"] == "no temperature sensors found (VM or container?)"
    assert probed.unavailable["fans"] == "no fan sensors found"
    assert probed.cpu.max_freq_mhz is None


SENSORS = ("sensors_temperatures", "sensors_fans", "sensors_battery")


@pytest.mark.parametrize(("options", "reason"), [
    ({"missing": SENSORS}, "this platform has no temperature sensors interface"),
    ({"failing": dict.fromkeys(SENSORS, OSError(5, "Input/output error"))},
     "sensors unreadable: [Errno 5] Input/output error"),
    ({"failing": dict.fromkeys(SENSORS, RuntimeError("hwmon went away"))},
     "sensors unreadable: hwmon went away"),
], ids=["no-sensors-interface", "sensors-io-error", "sensors-runtime-error"])
def test_sensors_missing_or_unreadable_never_crash(options: dict, reason: str,
                                                   tmp_path: Path) -> None:
    recorded = load_recorded("i7-ipc-32gb")
    ps = fake_psutil(recorded, **options)
    probed = probe(Path(recorded.disk.path), recorded_sources("i7-ipc-32gb", tmp_path, ps=ps))
    assert probed.temperatures == () and probed.fans == () and probed.battery is None
    assert probed.unavailable["temperatures"] == reason
    assert probed.unavailable["fans"] == "no fan sensors found"
    assert probed.memory == recorded.memory


def test_missing_proc_cpuinfo_does_not_crash(tmp_path: Path) -> None:
    sources = recorded_sources("fanless-n100-8gb", tmp_path)
    (sources.root / "proc/cpuinfo").unlink()
    probed = probe(Path("/var/lib/gemba"), sources)
    recorded = load_recorded("fanless-n100-8gb")
    assert probed.cpu.model == (platform.processor() or "unknown")
    assert probed.cpu.flags == ()
    assert probed.cpu.logical_cores == recorded.cpu.logical_cores
    assert probed.memory == recorded.memory


def test_cpu_freq_not_implemented_does_not_crash(tmp_path: Path) -> None:
    recorded = load_recorded("jetson-orin-nx-16gb-10w")
    ps = fake_psutil(recorded, failing={
        "cpu_freq": NotImplementedError("can't find current frequency file")})
    probed = probe(Path(recorded.disk.path),
                   recorded_sources("jetson-orin-nx-16gb-10w", tmp_path, ps=ps))
    assert probed.cpu.max_freq_mhz is None
    assert probed.cpu.logical_cores == recorded.cpu.logical_cores


# --- NVML (FAULTS case 22) ---------------------------------------------------------------------
@pytest.mark.parametrize(("scenario", "reason"), [
    ("driver_not_loaded", "the NVIDIA driver is not loaded"),
    ("library_not_found", "the NVML library (libnvidia-ml) is not installed"),
])
def test_nvml_missing_gives_a_reason_and_never_raises(scenario: str, reason: str,
                                                      tmp_path: Path) -> None:
    assert nvml.probe_nvml(SCENARIOS[scenario]()) == NvmlFacts(available=False, reason=reason)
    probed = probe_recorded("ipc-rtx-a2000-12gb", tmp_path, nvml=SCENARIOS[scenario]())
    assert probed.gpus == ()
    assert probed.unavailable["nvidia"] == reason


def test_power_not_supported_keeps_memory_and_temperature() -> None:
    recorded = load_recorded("rack-l4-24gb").nvml
    facts = nvml.probe_nvml(SCENARIOS["power_not_supported"]())
    assert facts == without_power(recorded)
    (gpu,), (before,) = facts.gpus, recorded.gpus
    assert (gpu.power_limit_w, gpu.power_limit_min_w, gpu.power_limit_max_w,
            gpu.power_draw_w) == (None, None, None, None)
    assert gpu.unavailable == {"power_limit_range": NOT_SUPPORTED,
                               "power_limit_w": NOT_SUPPORTED, "power_draw_w": NOT_SUPPORTED}
    assert (gpu.memory_total_bytes, gpu.memory_free_bytes) == \
        (before.memory_total_bytes, before.memory_free_bytes)
    assert (gpu.temp_c, gpu.temp_slowdown_c, gpu.temp_shutdown_c) == \
        (before.temp_c, before.temp_slowdown_c, before.temp_shutdown_c)


def test_two_gpus_one_hot() -> None:
    facts = nvml.probe_nvml(SCENARIOS["two_gpus_one_hot"]())
    assert facts == load_recorded("two-gpus-one-hot").nvml
    hot, cool = facts.gpus
    assert hot.throttle_reasons == ("sw_thermal_slowdown",)
    assert cool.throttle_reasons == ("sw_power_cap",)
    assert hot.slowdown_margin_c < cool.slowdown_margin_c
    assert hot.power_draw_w < cool.power_draw_w


def test_a_lost_gpu_does_not_hide_the_others() -> None:
    facts = nvml.probe_nvml(SCENARIOS["gpu_lost"]())
    assert load_recorded("two-gpus-one-hot").gpus[1] in facts.gpus
    assert "GPU is lost" in json.dumps(to_dict(facts))


def test_nvml_is_shut_down_after_a_probe() -> None:
    fake = SCENARIOS["two_gpus_one_hot"]()
    nvml.probe_nvml(fake)
    assert fake.shutdown_count == 1 and fake.init_count == 0


def test_driver_without_gpu_says_so() -> None:
    # The A2000 box with its card pulled for repair: driver loaded, no GPU.
    recorded = load_recorded("ipc-rtx-a2000-12gb").nvml
    facts = nvml.probe_nvml(FakeNvml(dataclasses.replace(recorded, gpus=())))
    assert facts == NvmlFacts(False, "no NVIDIA GPU found", recorded.driver_version,
                              recorded.cuda_version)


def test_idle_reason_is_not_a_throttle_reason() -> None:
    # The recorded L4 capture shows "Clocks Event Reasons: Idle: Active" and nothing else.
    recorded = load_recorded("rack-l4-24gb").nvml
    (gpu,) = recorded.gpus
    idle = dataclasses.replace(recorded, gpus=(dataclasses.replace(
        gpu, throttle_reasons=("gpu_idle",)),))
    assert nvml.probe_nvml(FakeNvml(idle)).gpus[0].throttle_reasons == ()


@pytest.mark.parametrize("reason", [
    "not supported by this GPU or driver",
    "no permission (run as root or adjust the driver)",
    "the GPU fell off the bus (GPU is lost)",
])
def test_each_nvml_error_on_a_field_becomes_its_reason(reason: str) -> None:
    recorded = load_recorded("ipc-rtx-a2000-12gb").nvml
    (gpu,) = recorded.gpus
    broken = dataclasses.replace(recorded, gpus=(dataclasses.replace(
        gpu, temp_slowdown_c=None, unavailable={"temp_slowdown_c": reason}),))
    assert nvml.probe_nvml(FakeNvml(broken)) == broken


@pytest.mark.parametrize("reason", list(REASON_ERRORS))
def test_each_nvml_init_error_becomes_its_reason(reason: str) -> None:
    facts = NvmlFacts(available=False, reason=reason)
    assert nvml.probe_nvml(FakeNvml.from_facts(facts)) == facts


def test_an_unknown_nvml_error_is_reported_not_raised() -> None:
    recorded = load_recorded("ipc-rtx-a2000-12gb").nvml
    facts = nvml.probe_nvml(FakeNvml(recorded, init_error=NVMLError))
    assert facts == NvmlFacts(False, "NVML error: Unknown Error")


def test_fake_nvml_has_pynvml_names_and_values() -> None:
    pynvml = pytest.importorskip("pynvml")
    fake = FakeNvml(load_recorded("rack-l4-24gb").nvml)
    for name in dir(fake):
        if name.startswith("nvml") or name.startswith("NVML_"):
            assert hasattr(pynvml, name), name
        if name.startswith("NVML_"):
            assert getattr(fake, name) == getattr(pynvml, name), name
        if name.startswith("NVMLError_"):
            error = getattr(fake, name)
            assert type(pynvml.NVMLError(error.value)).__name__ == name
    for reason, bit in [("sw_thermal_slowdown", pynvml.nvmlClocksEventReasonSwThermalSlowdown),
                        ("hw_slowdown", pynvml.nvmlClocksEventReasonHwSlowdown),
                        ("sw_power_cap", pynvml.nvmlClocksEventReasonSwPowerCap)]:
        assert nvml.decode_reasons(bit) == (reason,)


def test_fake_psutil_is_shaped_like_psutil() -> None:
    from tests.fakes import hardware

    # psutil keeps its namedtuples in _ntuples (7.x) or _common (5.x, 6.x).
    real = getattr(psutil, "_ntuples", None) or psutil._common
    for name in ("shwtemp", "sfan", "sbattery", "sdiskusage", "scpufreq", "sswap"):
        assert getattr(hardware, name)._fields == getattr(real, name)._fields, name
    fields = hardware.svmem._fields
    assert real.svmem._fields[:len(fields)] == fields


# --- cgroup memory limit -----------------------------------------------------------------------
RACK_LIMIT = load_recorded("rack-l4-24gb").memory.cgroup_limit_bytes
V1_UNLIMITED = "9223372036854771712"  # what cgroup v1 shows for "no limit" (LONG_MAX, page-aligned)


@pytest.mark.parametrize(("files", "expected"), [
    ({"proc/self/cgroup": "0::/system.slice/gemba.service\n",
      "sys/fs/cgroup/system.slice/gemba.service/memory.max": "max\n"}, None),
    ({"proc/self/cgroup": "0::/system.slice/gemba.service\n",
      "sys/fs/cgroup/system.slice/gemba.service/memory.max": f"{RACK_LIMIT}\n"}, RACK_LIMIT),
    ({"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": f"{RACK_LIMIT}\n"}, RACK_LIMIT),
    ({"sys/fs/cgroup/memory.max": f"{RACK_LIMIT}\n"}, RACK_LIMIT),
    ({"proc/self/cgroup": "4:memory:/\n",
      "sys/fs/cgroup/memory/memory.limit_in_bytes": f"{RACK_LIMIT}\n"}, RACK_LIMIT),
    ({"proc/self/cgroup": "4:memory:/\n",
      "sys/fs/cgroup/memory/memory.limit_in_bytes": f"{V1_UNLIMITED}\n"}, None),
    ({"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/memory.max": "\n"}, None),
    ({}, None),
], ids=["v2-max", "v2-service-limit", "v2-container-root", "v2-no-proc-cgroup",
        "v1-container-limit", "v1-unlimited", "v2-empty-file", "no-cgroup-files"])
def test_cgroup_memory_limit(files: dict[str, str], expected: int | None, tmp_path: Path) -> None:
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert host.cgroup_memory_limit(tmp_path / "sys", tmp_path / "proc") == expected


def test_cgroup_v1_limit_of_the_service_is_found(tmp_path: Path) -> None:
    files = {
        "proc/self/cgroup": "12:memory:/system.slice/gemba.service\n"
                            "1:name=systemd:/system.slice/gemba.service\n"
                            "0::/system.slice/gemba.service\n",
        "sys/fs/cgroup/memory/memory.limit_in_bytes": f"{V1_UNLIMITED}\n",
        "sys/fs/cgroup/memory/system.slice/gemba.service/memory.limit_in_bytes":
            f"{RACK_LIMIT}\n",
    }
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert host.cgroup_memory_limit(tmp_path / "sys", tmp_path / "proc") == RACK_LIMIT


def test_sources_default_to_the_real_box() -> None:
    # Documented defaults: the real psutil, NVML loaded on demand, the real / tree.
    sources = Sources()
    assert sources.ps is psutil and sources.nvml is None
    assert sources.proc == Path("/proc") and sources.sys_root == Path("/sys")
