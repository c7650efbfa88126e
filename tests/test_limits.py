"""One definition of the limits, one grading (issue 12, item 6): the plan, the burn-in, the governor
and the console grade a figure alike, and the burn-in judges the GPU heat and power it measures.

Burn-in figures come from telemetry samples taken through the fakes of recorded boxes
(tests/fakes/hardware.py): the recorded readings, or a recorded limit read as the figure (a card
at its own slowdown temperature, a card drawing its own enforced limit).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appliance.config import BudgetSettings
from appliance.console.health import SEVERITIES
from appliance.console.status import SEVERE
from appliance.governor import budgets_from, figure_severity, limits_for
from appliance.hardware.facts import HostFacts
from appliance.hardware.nvml import PowerLimits
from appliance.hardware.telemetry import take_sample
from appliance.limits import BURN_IN, LEVELS, PLAN, Limits, Severity, power_limits
from installer.burnin import BurnInResult, capped_gpus, judge, summarise
from installer.derive import choose_profile
from installer.gguf_info import ModelFacts
from installer.plan import Plan, make_plan
from installer.profiles import Profile, budget_table, find_profile, load_profiles
from tests.fakes.hardware import (
    FakeNvml,
    NVMLError_NoPermission,
    driver_not_loaded,
    fake_proc_tree,
    fake_psutil,
    load_recorded,
)

PROFILES = load_profiles()


def planned(facts: HostFacts, model: ModelFacts) -> tuple[Profile, Plan]:
    profile = choose_profile(PROFILES, facts).profile
    return profile, make_plan(facts, profile, model)


def burn_in_of(facts: HostFacts, tmp_path: Path, nvml: FakeNvml | None = None,
               cap_w: float | None = None) -> BurnInResult:
    """The burn-in's figures from samples taken on the recorded box (fake psutil, NVML, sysfs),
    with `cap_w` the cap that was in force."""
    root = fake_proc_tree(facts, tmp_path / "root")
    samples = [take_sample(fake_psutil(facts), nvml or FakeNvml.from_facts(facts.nvml), root)
               for _ in range(3)]
    result = summarise(samples, [30.0, 31.0, 29.0], [0.2], 3, 300, 10.0, 1.0)
    return dataclasses.replace(result, gpu_power_cap_w=cap_w)


def checks_by_name(checks: list[dict]) -> dict[str, dict]:
    return {check["name"]: check for check in checks}


# --- one grading -----------------------------------------------------------------------------------
A2000 = find_profile("ipc-rtx-a2000-12gb")  # GPU 80 / 86 / 92 °C


@pytest.mark.parametrize("gpu_c", [40.0, 79.0, 80.0, 85.0, 86.0, 91.0, 92.0, 99.0])
def test_plan_burn_in_governor_and_console_grade_a_figure_alike(gpu_c: float,
                                                                smollm: ModelFacts) -> None:
    severity = Limits(80, 86, 92).level(gpu_c)
    # The governor, from the [budgets] apply writes for this profile.
    budgets = budgets_from(BudgetSettings.model_validate(budget_table(A2000)))
    assert figure_severity("gpu_temp_c", gpu_c, budgets) == severity
    assert limits_for(budgets)["gpu_temp_c"] == Limits(80, 86, 92)  # what the console draws
    assert SEVERITIES[severity] == severity.word  # the words the console shows
    # The plan: the box at this temperature before any load.
    facts = load_recorded("ipc-rtx-a2000-12gb")
    gpu = dataclasses.replace(facts.gpus[0], temp_c=gpu_c, throttle_reasons=())
    facts = dataclasses.replace(facts, nvml=dataclasses.replace(facts.nvml, gpus=(gpu,)))
    plan = make_plan(facts, A2000, smollm)
    assert next(c for c in plan.checks if c.name == "thermal_gpu0").status == PLAN[severity]
    # The burn-in: the box reached this temperature at full speed.
    result = dataclasses.replace(_quiet_burn_in(), gpu_temp_c_max=gpu_c)
    judged = checks_by_name(judge(result, A2000, plan, 1))
    assert judged["burn_in_gpu_thermal"]["status"] == BURN_IN[severity]


def _quiet_burn_in() -> BurnInResult:
    return BurnInResult(duration_s=10.0, load_s=1.0, answers=3, tokens=300,
                        tok_per_s_median=30.0, tok_per_s_p5=29.0, ttft_s_median=0.2,
                        peak_rss_bytes=None, cpu_temp_c_min=50.0, cpu_temp_c_max=60.0,
                        gpu_temp_c_max=None, gpu_power_w_min=None, gpu_power_w_max=None,
                        box_power_w_max=None, throttle_events=(), samples=10)


def test_the_severity_words_and_levels_are_defined_once() -> None:
    assert SEVERITIES == ("ok", "careful", "warning", "critical") == \
        tuple(severity.word for severity in Severity)
    assert SEVERE == LEVELS == SEVERITIES[1:]
    assert power_limits(100) == Limits(90, 100, 110)


# --- the burn-in judges GPU heat and power ------------------------------------------------------------
def test_gpu_heat_under_load_is_judged_against_the_gpu_limit(tmp_path: Path,
                                                             smollm: ModelFacts) -> None:
    facts = load_recorded("two-gpus-one-hot")  # GPU 0 at 84 °C, the profile's warning level
    profile, plan = planned(facts, smollm)
    judged = checks_by_name(judge(burn_in_of(facts, tmp_path), profile, plan, len(facts.gpus)))
    heat = judged["burn_in_gpu_thermal"]
    assert heat["status"] == "warn"
    assert "GPU reached 84 °C, at or above the warning limit 84 °C" in heat["message"]
    assert "the governor will slow answers" in heat["message"]


def test_gpu_at_its_slowdown_temperature_fails_the_burn_in(tmp_path: Path,
                                                          smollm: ModelFacts) -> None:
    facts = load_recorded("i5-12400-rtx-3060-12gb")
    profile, plan = planned(facts, smollm)
    gpu = facts.gpus[0]  # the card throttling at its own slowdown temperature (95 °C)
    hot = dataclasses.replace(gpu, temp_c=gpu.temp_slowdown_c,
                              throttle_reasons=("sw_thermal_slowdown",))
    hot_box = dataclasses.replace(facts, nvml=dataclasses.replace(facts.nvml, gpus=(hot,)))
    judged = checks_by_name(judge(burn_in_of(hot_box, tmp_path, cap_w=136.0), profile, plan, 1))
    assert judged["burn_in_gpu_thermal"]["status"] == "fail"
    assert "GPU reached 95 °C, at or above the critical limit 93 °C" in \
        judged["burn_in_gpu_thermal"]["message"]
    assert judged["burn_in_throttle"]["status"] == "warn"


def test_gpu_held_at_its_cap_passes(tmp_path: Path, smollm: ModelFacts) -> None:
    facts = load_recorded("ipc-rtx-a2000-12gb")  # recorded in a burn-in: 69.41 W at the 70 W cap
    profile, plan = planned(facts, smollm)
    cap = plan.value("gpu_power_cap_w")
    judged = checks_by_name(judge(burn_in_of(facts, tmp_path, cap_w=cap), profile, plan, 1))
    power = judged["burn_in_gpu_power"]
    assert power["status"] == "pass"
    assert "peaked at 69.41 W, below the warning limit 73.5 W" in power["message"]


def test_gpu_drawing_over_its_cap_fails_the_burn_in(tmp_path: Path, smollm: ModelFacts) -> None:
    facts = load_recorded("i5-12400-rtx-3060-12gb")
    profile, plan = planned(facts, smollm)
    assert plan.value("gpu_power_cap_w") == 136.0
    gpu = facts.gpus[0]  # the card at its own 170 W limit: the planned cap was not in force
    uncapped = dataclasses.replace(gpu, power_draw_w=gpu.power_limit_w)
    box = dataclasses.replace(facts, nvml=dataclasses.replace(facts.nvml, gpus=(uncapped,)))
    judged = checks_by_name(judge(burn_in_of(box, tmp_path, cap_w=136.0), profile, plan, 1))
    power = judged["burn_in_gpu_power"]
    assert power["status"] == "fail"
    assert "reached 170 W, at or above the critical limit 149.6 W" in power["message"]
    assert "the cap is not in force" in power["message"]


def test_two_gpus_are_judged_against_both_caps(tmp_path: Path, smollm: ModelFacts) -> None:
    facts = load_recorded("two-gpus-one-hot")  # 118.62 W + the other card at its cap
    profile, plan = planned(facts, smollm)
    cap = plan.value("gpu_power_cap_w")
    result = burn_in_of(facts, tmp_path, cap_w=cap)
    judged = checks_by_name(judge(result, profile, plan, 2))
    assert f"the 2 GPUs together (capped at {2 * cap:g} W)" in \
        judged["burn_in_gpu_power"]["message"]
    assert result.gpu_power_w_max == sum(g.power_draw_w for g in facts.gpus)


def test_a_cap_that_could_not_be_set_is_a_warning_with_the_reason(smollm: ModelFacts) -> None:
    facts = load_recorded("ipc-rtx-a2000-12gb")
    profile, plan = planned(facts, smollm)
    with capped_gpus(70.0, PowerLimits(driver_not_loaded())) as (in_force, note):
        assert in_force is None and note == "the NVIDIA driver is not loaded"
    result = dataclasses.replace(_quiet_burn_in(), gpu_power_w_max=69.41, gpu_cap_note=note)
    power = checks_by_name(judge(result, profile, plan, 1))["burn_in_gpu_power"]
    assert power["status"] == "warn"
    assert "could not be set for the burn-in (the NVIDIA driver is not loaded)" in \
        power["message"]


def test_burn_in_sets_the_planned_cap_and_restores_the_cards_own() -> None:
    facts = load_recorded("i5-12400-rtx-3060-12gb")
    nvml = FakeNvml.from_facts(facts.nvml)
    with capped_gpus(136.0, PowerLimits(nvml)) as (in_force, note):
        assert (in_force, note) == (136.0, None)
        assert nvml.set_limits_mw == {0: 136_000}
    assert nvml.set_limits_mw == {0: 170_000}  # the card's own limit, as it was
    assert nvml.init_count == 0  # NVML shut down again


def test_without_permission_the_burn_in_runs_uncapped_and_says_why() -> None:
    nvml = FakeNvml.from_facts(load_recorded("i5-12400-rtx-3060-12gb").nvml)
    nvml.set_error = NVMLError_NoPermission
    with capped_gpus(136.0, PowerLimits(nvml)) as (in_force, note):
        assert in_force is None
        assert note == "no permission (run as root or adjust the driver)"


def test_box_power_is_graded_like_the_governor_grades_it(smollm: ModelFacts) -> None:
    facts = load_recorded("jetson-orin-nx-16gb-15w")
    profile, plan = planned(facts, smollm)
    budget = profile.power.box_budget_w
    for draw, status in ((0.95 * budget, "pass"), (budget, "warn"), (1.1 * budget, "fail")):
        result = dataclasses.replace(_quiet_burn_in(), box_power_w_max=draw)
        power = checks_by_name(judge(result, profile, plan, 0))["burn_in_power"]
        assert power["status"] == status, draw


def test_no_gpu_reading_under_load_is_unverified_not_passed(smollm: ModelFacts) -> None:
    facts = load_recorded("i5-12400-rtx-3060-12gb")
    profile, plan = planned(facts, smollm)
    result = dataclasses.replace(_quiet_burn_in(), gpu_power_cap_w=136.0)
    judged = checks_by_name(judge(result, profile, plan, 1))
    assert judged["burn_in_gpu_thermal"]["status"] == "warn"
    assert judged["burn_in_gpu_power"]["status"] == "warn"
