"""A plan for any box (issue 12, item 5): a box no firmware profile describes gets a conservative
profile derived from its probe, each figure with its source, and a plan marked "derived: confirm
with the vendor's data"; refusals stay refusals. Never "no profile".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.hardware.facts import HostFacts
from installer.derive import (
    TJMAX_ASSUMED_C,
    choose_profile,
    derive_profile,
    profile_for_box,
    profile_toml,
)
from installer.gguf_info import ModelFacts
from installer.plan import make_plan
from installer.profiles import find_profile, load_profile, load_profiles, match
from tests.fakes.hardware import load_recorded, recorded_names, without_power

PROFILES = load_profiles()
UNKNOWN = ["ryzen-7840u-fanless-16gb", "i5-12400-rtx-3060-12gb", "apu2-gx-412tc-no-avx2",
           "panel-i3-4010u-2gb-too-little-ram"]
# Every figure a derived profile must explain (the GPU's only on a GPU box).
SOURCED = {"power.box_budget_w", "power.idle_w", "power.cpu_load_w", "thermal.cpu_careful_c",
           "thermal.cpu_warning_c", "thermal.cpu_critical_c", "thermal.rated_ambient_c",
           "memory.reserved_ram_gib", "memory.min_free_disk_gib", "model.allowed_quantizations",
           "model.max_context", "model.thread_cap"}
GPU_SOURCED = {"power.gpu_cap_w", "thermal.gpu_careful_c", "thermal.gpu_warning_c",
               "thermal.gpu_critical_c"}


def statuses(facts: HostFacts, model: ModelFacts) -> dict[str, str]:
    plan = make_plan(facts, choose_profile(PROFILES, facts).profile, model)
    return {check.name: check.status for check in plan.checks}


# --- the recorded boxes no profile describes ------------------------------------------------------
@pytest.mark.parametrize("box", UNKNOWN)
def test_unknown_box_is_planned_on_a_derived_profile_with_every_source(box: str,
                                                                       smollm: ModelFacts) -> None:
    facts = load_recorded(box)
    chosen = choose_profile(PROFILES, facts)
    assert chosen.profile.profile.derived
    assert "derived from the probe" in chosen.reasons[0]
    assert match(chosen.profile, facts) is not None, "the derived profile describes its box"
    sources = chosen.profile.profile.sources
    assert SOURCED | (GPU_SOURCED if facts.gpus else set()) <= set(sources)
    assert all(len(source) > 20 for source in sources.values())
    plan = make_plan(facts, chosen.profile, smollm)
    assert plan.derived
    assert set(plan.profile_figures) == set(sources)
    marked = next(check for check in plan.checks if check.name == "profile")
    assert marked.status == "warn"
    assert marked.message.startswith("derived: confirm with the vendor's data")


def test_gpu_limits_come_from_the_cards_nvml_readings() -> None:
    facts = load_recorded("i5-12400-rtx-3060-12gb")
    gpu = facts.gpus[0]
    profile = derive_profile(facts)
    sources = profile.profile.sources
    thermal = profile.thermal
    assert (thermal.gpu_careful_c, thermal.gpu_warning_c, thermal.gpu_critical_c) == \
        (gpu.temp_slowdown_c - 15, gpu.temp_slowdown_c - 5, gpu.temp_slowdown_c - 2)
    assert thermal.gpu_critical_c < gpu.temp_slowdown_c
    assert "nvmlDeviceGetTemperatureThreshold(SLOWDOWN)" in sources["thermal.gpu_warning_c"]
    cap = profile.power.gpu_cap_w
    assert cap == 0.8 * gpu.power_limit_w  # 136 W of the card's 170 W
    assert gpu.power_limit_min_w <= cap <= gpu.power_limit_max_w
    assert "nvmlDeviceGetEnforcedPowerLimit" in sources["power.gpu_cap_w"]
    assert profile.match.gpu_model == ["NVIDIA GeForce RTX 3060"]
    assert profile.match.gpu_count == 1


@pytest.mark.parametrize(("box", "tjmax", "origin"), [
    ("i5-12400-rtx-3060-12gb", 100.0, "from coretemp"),
    ("panel-i3-4010u-2gb-too-little-ram", 100.0, "from coretemp"),
    ("apu2-gx-412tc-no-avx2", 105.0, "from k10temp"),
    ("ryzen-7840u-fanless-16gb", TJMAX_ASSUMED_C, "assumed (k10temp reports no critical limit"),
])
def test_tjmax_comes_from_the_sensor_driver_or_is_a_stated_default(box: str, tjmax: float,
                                                                   origin: str) -> None:
    profile = derive_profile(load_recorded(box))
    source = profile.profile.sources["thermal.cpu_critical_c"]
    assert f"TjMax {tjmax:g} °C {origin}" in source
    assert profile.thermal.cpu_critical_c < tjmax


def test_fanless_box_gets_lower_limits_than_the_same_box_with_a_fan() -> None:
    fanned = load_recorded("i5-12400-rtx-3060-12gb")
    assert fanned.fans and fanned.fans[0].rpm > 0
    fanless = dataclasses.replace(fanned, fans=())
    with_fan, without_fan = derive_profile(fanned), derive_profile(fanless)
    for level in ("careful", "warning", "critical"):
        assert getattr(without_fan.thermal, f"cpu_{level}_c") < \
            getattr(with_fan.thermal, f"cpu_{level}_c")
    assert without_fan.model.thread_cap < with_fan.model.thread_cap
    assert without_fan.power.gpu_cap_w == fanned.gpus[0].power_limit_min_w  # the card's lowest
    assert without_fan.power.gpu_cap_w < with_fan.power.gpu_cap_w
    assert "fanless" in without_fan.profile.sources["thermal.cpu_careful_c"]
    assert "fanned: nct6798 reports a fan at 780 rpm" in \
        with_fan.profile.sources["thermal.cpu_careful_c"]


def test_ram_reserve_keeps_a_share_for_the_plants_software() -> None:
    profile = derive_profile(load_recorded("ryzen-7840u-fanless-16gb"))
    assert profile.memory.reserved_ram_gib == 3.5  # 20 % of 15.1 GiB, rounded up to 0.5 GiB
    small = derive_profile(load_recorded("panel-i3-4010u-2gb-too-little-ram"))
    assert small.memory.reserved_ram_gib == 1.0  # never below 1 GiB


def test_refusals_stay_refusals_with_their_reasons(smollm: ModelFacts) -> None:
    apu = make_plan(load_recorded("apu2-gx-412tc-no-avx2"),
                    choose_profile(PROFILES, load_recorded("apu2-gx-412tc-no-avx2")).profile,
                    smollm)
    cpu = next(check for check in apu.checks if check.name == "cpu")
    assert cpu.status == "fail" and "lacks AVX2, FMA" in cpu.message
    assert "illegal instruction" in cpu.message
    panel_facts = load_recorded("panel-i3-4010u-2gb-too-little-ram")
    panel = make_plan(panel_facts, choose_profile(PROFILES, panel_facts).profile, smollm)
    memory = next(check for check in panel.checks if check.name == "memory")
    assert memory.status == "fail" and "GiB of RAM" in memory.message
    assert memory.figures["ram_needed_bytes"] > memory.figures["ram_budget_bytes"]
    assert {c.name for c in apu.checks if c.status == "fail"} == {"cpu"}
    assert {c.name for c in panel.checks if c.status == "fail"} == {"memory"}


# --- the written file -------------------------------------------------------------------------------
@pytest.mark.parametrize("box", recorded_names())
def test_written_profile_loads_back_matches_its_box_and_steals_no_other(box: str,
                                                                      tmp_path: Path) -> None:
    facts = load_recorded(box)
    derived = derive_profile(facts)
    path = tmp_path / f"{derived.name}.toml"
    path.write_text(profile_toml(derived, facts, "2026-11-22T00:00:00+00:00"), "utf-8")
    loaded = load_profile(path)  # the strict loader the shipped profiles go through
    assert loaded == derived
    assert match(loaded, facts) is not None
    for other in recorded_names():
        if other != box:
            assert match(loaded, load_recorded(other)) is None, other
    assert find_profile(str(path)) == loaded  # --profile FILE.toml


def test_written_profile_says_where_each_figure_comes_from(tmp_path: Path) -> None:
    facts = load_recorded("i5-12400-rtx-3060-12gb")
    text = profile_toml(derive_profile(facts), facts, "2026-11-22T00:00:00+00:00")
    assert text.startswith("# Derived by `gemba install profile new` from the probe of "
                           "qa-cell2-3060")
    assert "derived = true" in text and "[profile.sources]" in text
    assert '"thermal.gpu_critical_c" = "the card\'s slowdown temperature 95 °C' in text


def test_source_naming_no_key_is_refused(tmp_path: Path) -> None:
    facts = load_recorded("ryzen-7840u-fanless-16gb")
    derived = derive_profile(facts)
    text = profile_toml(derived, facts, "now").replace('"power.idle_w" =', '"power.idle_watts" =')
    path = tmp_path / f"{derived.name}.toml"
    path.write_text(text, "utf-8")
    with pytest.raises(ConfigError, match="'power.idle_watts' names no profile key"):
        load_profile(path)


# --- boxes nothing describes, made up from recorded ones ---------------------------------------------
def _variants() -> dict[str, HostFacts]:
    rtx, n100 = load_recorded("i5-12400-rtx-3060-12gb"), load_recorded("fanless-n100-8gb")
    jetson = load_recorded("jetson-orin-nx-16gb-15w")
    gpu = rtx.gpus[0]
    return {
        "renamed-cpu": dataclasses.replace(n100, cpu=dataclasses.replace(
            n100.cpu, model="Intel(R) Core(TM) i9-14900K")),
        "jetson-in-an-unknown-mode": dataclasses.replace(jetson, tegra=dataclasses.replace(
            jetson.tegra, nvpmodel_mode="MODE_12W")),
        "no-sensors-no-fans": dataclasses.replace(rtx, temperatures=(), fans=()),
        "gpu-without-power-readings": dataclasses.replace(rtx, nvml=without_power(rtx.nvml)),
        "gpu-without-slowdown": dataclasses.replace(rtx, nvml=dataclasses.replace(
            rtx.nvml, gpus=(dataclasses.replace(gpu, temp_slowdown_c=None),))),
        "two-unknown-gpus": dataclasses.replace(rtx, nvml=dataclasses.replace(
            rtx.nvml, gpus=(gpu, dataclasses.replace(gpu, index=1)))),
        "huge-ram": dataclasses.replace(n100, memory=dataclasses.replace(
            n100.memory, total_bytes=2048 * 2**30, available_bytes=2000 * 2**30)),
        "tiny-ram": dataclasses.replace(n100, memory=dataclasses.replace(
            n100.memory, total_bytes=2**29, available_bytes=2**28)),
        "no-build-for-this-arch": dataclasses.replace(n100, cpu=dataclasses.replace(
            n100.cpu, arch="riscv64", model="SiFive U74-MC", flags=())),
        "unknown-cpu-model": dataclasses.replace(n100, cpu=dataclasses.replace(
            n100.cpu, model="unknown", physical_cores=None)),
    }


VARIANTS = _variants()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_any_box_gets_a_plan_or_a_refusal_with_its_reason_never_no_profile(
        name: str, smollm: ModelFacts) -> None:
    facts = VARIANTS[name]
    assert not any(match(profile, facts) for profile in PROFILES), "nothing may describe it"
    chosen = choose_profile(PROFILES, facts)
    assert chosen.profile.profile.derived and match(chosen.profile, facts) is not None
    plan = make_plan(facts, chosen.profile, smollm)
    assert plan.derived and all(choice.reason for choice in plan.settings.values())
    failed = [check for check in plan.checks if check.status == "fail"]
    assert all(check.message for check in failed)
    if name == "no-build-for-this-arch":
        assert [check.name for check in failed] == ["cpu"]
    if name == "tiny-ram":
        assert [check.name for check in failed] == ["memory"]
    if name == "gpu-without-power-readings":
        assert chosen.profile.power.gpu_cap_w is None  # the card keeps its own limit
    if name == "gpu-without-slowdown":
        assert "90 °C assumed" in chosen.profile.profile.sources["thermal.gpu_warning_c"]


# --- a shipped profile without GPU levels on a GPU box ----------------------------------------------
def test_profile_without_gpu_levels_takes_them_from_the_card(smollm: ModelFacts) -> None:
    facts = load_recorded("i5-12400-rtx-3060-12gb")
    cpu_only = find_profile("i7-ipc-32gb")  # forced by hand: it sets no GPU levels
    assert cpu_only.thermal.gpu_careful_c is None
    filled = profile_for_box(cpu_only, facts)
    assert (filled.thermal.gpu_careful_c, filled.thermal.gpu_warning_c,
            filled.thermal.gpu_critical_c) == (80, 90, 93)
    assert filled.profile.sources["thermal.gpu_careful_c"].startswith(
        "the profile sets no GPU levels: the card's slowdown temperature 95 °C")
    assert not filled.profile.derived
    plan = make_plan(facts, cpu_only, smollm)
    assert "thermal.gpu_warning_c" in plan.profile_figures
    check = next(c for c in plan.checks if c.name == "thermal_gpu0")
    assert check.figures["warning_c"] == 90
    assert profile_for_box(filled, facts) == filled  # idempotent


def test_a_virtual_machine_is_cooled_and_watched_by_its_host() -> None:
    profile = derive_profile(load_recorded("vm-no-sensors"))  # as `profile new` would on a VM
    assert not profile.thermal.sensors_expected
    assert "(a virtual machine: the host cools it)" in \
        profile.profile.sources["thermal.cpu_careful_c"]
    assert profile.thermal.cpu_careful_c == TJMAX_ASSUMED_C - 15  # not a fanless box's levels
