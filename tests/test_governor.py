"""The governor's policy, table-driven: thresholds, hysteresis, dwell, stale and missing sensors,
memory pressure, power; the RC model; and the hour-long simulation's goal on every profile."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from appliance.governor import Budgets, Decision, Limits, Severity, decide, initial
from appliance.hardware.telemetry import Sample
from appliance.inference.scheduler import Scheduler
from appliance.thermal_model import ThermalModel
from bench.governor_sim import GOAL_RATIO, simulate
from installer.profiles import load_profiles

GIB = 1 << 30
BUDGETS = Budgets(cpu_temp_c=Limits(70, 80, 90), gpu_temp_c=Limits(75, 85, 95),
                  box_power_w=20.0, mem_reserve_bytes=2 * GIB, sensors_expected=True,
                  min_dwell_s=10.0)


def sample(cpu: float | None = 50.0, gpu: float | None = None, power: float | None = None,
           mem_gib: float = 8.0, at: float = 0.0) -> Sample:
    return Sample(at_s=at, cpu_temp_c=cpu, gpu_temp_c=gpu, gpu_power_w=None, box_power_w=power,
                  gpu_throttle=(), mem_available_bytes=int(mem_gib * GIB),
                  process_rss_bytes=None, cpu_percent=0.0)


def run(steps: list[tuple[float, Sample | None]], budgets: Budgets = BUDGETS) -> list[Decision]:
    """Feed (time, sample) pairs; a None sample is a tick where no reading arrived."""
    decision = initial(0.0)
    last_seen = 0.0
    out = []
    for now, reading in steps:
        if reading is not None:
            last_seen = now
        decision = decide(decision, reading, budgets, now, last_seen)
        out.append(decision)
    return out


@pytest.mark.parametrize("cpu, mode, severity", [
    (50.0, "normal", Severity.OK),
    (69.9, "normal", Severity.OK),
    (70.0, "slowed", Severity.CAREFUL),
    (79.0, "slowed", Severity.CAREFUL),
    (80.0, "paused", Severity.WARNING),
    (89.9, "paused", Severity.WARNING),
    (90.0, "refused", Severity.CRITICAL),
    (104.0, "refused", Severity.CRITICAL),
])
def test_each_cpu_threshold(cpu: float, mode: str, severity: Severity) -> None:
    decision = run([(1.0, sample(cpu))])[-1]
    assert (decision.mode, decision.severity) == (mode, severity)
    assert decision.accepts_new_work == (mode in ("normal", "slowed"))
    assert decision.generating_allowed == (mode != "refused")


@pytest.mark.parametrize("gpu, mode", [(74.0, "normal"), (75.0, "slowed"), (85.0, "paused"),
                                       (95.0, "refused")])
def test_each_gpu_threshold(gpu: float, mode: str) -> None:
    assert run([(1.0, sample(50.0, gpu=gpu))])[-1].mode == mode


def test_missing_gpu_reading_is_ignored_not_alarming() -> None:
    assert run([(1.0, sample(50.0, gpu=None))])[-1].mode == "normal"


def test_gpu_reading_without_gpu_limits_is_ignored() -> None:
    budgets = replace(BUDGETS, gpu_temp_c=None)
    assert run([(1.0, sample(50.0, gpu=99.0))], budgets)[-1].mode == "normal"


def test_escalation_is_immediate_even_within_the_dwell() -> None:
    modes = [d.mode for d in run([(1.0, sample(71)), (2.0, sample(85)), (3.0, sample(91))])]
    assert modes == ["slowed", "paused", "refused"]


def test_relaxing_waits_for_the_dwell_time() -> None:
    decisions = run([(1.0, sample(81)), (2.0, sample(60)), (5.0, sample(60)),
                     (12.0, sample(60))])
    assert [d.mode for d in decisions] == ["paused", "paused", "paused", "normal"]


def test_hysteresis_holds_until_clear_of_the_threshold() -> None:
    # Warning at 80 with a 3 °C band: 78.5 is not clear; 76.9 is.
    decisions = run([(1.0, sample(81)), (20.0, sample(78.5)), (40.0, sample(76.9))])
    assert [d.mode for d in decisions] == ["paused", "paused", "slowed"]


def test_no_flapping_around_a_threshold() -> None:
    wobble = [(float(t), sample(70.5 if t % 2 else 69.5)) for t in range(1, 60)]
    decisions = run(wobble)
    changes = sum(a.mode != b.mode for a, b in zip(decisions, decisions[1:], strict=False))
    assert decisions[0].mode == "slowed"  # the first crossing escalates at once
    assert changes == 0 and decisions[-1].mode == "slowed"  # then it holds


def test_slowed_duty_falls_above_the_setpoint_and_recovers_below() -> None:
    hot = run([(float(t), sample(79.5)) for t in range(1, 30)])
    assert hot[-1].duty < hot[0].duty <= 1.0
    cooler = run([(float(t), sample(79.5)) for t in range(1, 30)] +
                 [(float(t), sample(72.0)) for t in range(30, 90)])
    assert cooler[-1].mode == "slowed" and cooler[-1].duty > hot[-1].duty


def test_duty_never_falls_below_the_minimum() -> None:
    decisions = run([(float(t), sample(79.9)) for t in range(1, 2000)])
    assert min(d.duty for d in decisions) >= BUDGETS.min_duty


def test_stale_telemetry_falls_back_to_a_conservative_duty() -> None:
    decisions = run([(1.0, sample(50)), (2.0, None), (4.0, None), (8.0, None)])
    assert decisions[1].mode == "normal"  # one missed tick is not yet stale
    assert decisions[-1].mode == "slowed"
    assert decisions[-1].duty == BUDGETS.fallback_duty
    assert "stale" in decisions[-1].reason and decisions[-1].cause == "stale"


def test_missing_sensors_slow_down_when_the_profile_expects_them() -> None:
    decision = run([(1.0, sample(cpu=None))])[-1]
    assert decision.mode == "slowed" and "no temperature sensor" in decision.reason
    assert decision.cause == "no_sensor"


def test_missing_sensors_are_trusted_on_a_box_without_any() -> None:
    budgets = replace(BUDGETS, sensors_expected=False)
    decision = run([(1.0, sample(cpu=None))], budgets)[-1]
    assert decision.mode == "normal" and decision.cause == "no_limits"


def test_memory_below_the_reserve_makes_new_requests_wait() -> None:
    decision = run([(1.0, sample(50, mem_gib=1.5))])[-1]
    assert decision.mode == "paused" and not decision.accepts_new_work
    assert "memory" in decision.reason and decision.cause == "memory"
    assert decision.limiting == "mem_available_bytes"


@pytest.mark.parametrize("watts, mode", [(17.0, "normal"), (18.5, "slowed"), (20.5, "paused"),
                                         (22.5, "refused")])
def test_box_power_against_its_budget(watts: float, mode: str) -> None:
    assert run([(1.0, sample(50, power=watts))])[-1].mode == mode


def test_reason_names_the_figure_and_the_limit() -> None:
    decision = run([(1.0, sample(82.0))])[-1]
    assert "cpu temperature 82 °C" in decision.reason and "warning 80" in decision.reason
    assert decision.figures["cpu_temp_c"] == 82.0
    assert (decision.cause, decision.limiting) == ("figure", "cpu_temp_c")  # for translation


def test_thermal_model_steady_state_and_best_constant() -> None:
    model = ThermalModel(ambient_c=40, r_c_per_w=4, c_j_per_c=100, idle_w=3, load_w=12)
    assert model.steady_c(1.0) == pytest.approx(100.0)
    duty = model.best_constant_duty(80.0)
    assert model.steady_c(duty) == pytest.approx(80.0)
    temp = 40.0
    for _ in range(10 * 400):  # ten time constants of one second steps
        temp = model.step(temp, 1.0, 1.0)
    assert temp == pytest.approx(100.0, abs=0.01)


@pytest.mark.parametrize("profile", [p for p in load_profiles() if p.thermal_model],
                         ids=lambda p: p.name)
def test_governor_holds_every_profile_for_an_hour(profile) -> None:  # type: ignore[no-untyped-def]
    result = simulate(profile, 3600)
    assert result.held, f"{profile.name} peaked at {result.peak_temp_c} °C"
    assert result.seconds_above_warning == 0
    assert result.throughput_ratio >= GOAL_RATIO


def test_scheduler_gate_holds_new_answers_until_released() -> None:
    async def scenario() -> list[str]:
        scheduler = Scheduler(max_queue=4)
        order: list[str] = []

        async def answer(name: str) -> None:
            async with scheduler.slot():
                order.append(name)

        scheduler.hold()
        task = asyncio.create_task(answer("held"))
        await asyncio.sleep(0.05)
        order.append("released")
        scheduler.release()
        await task
        return order

    assert asyncio.run(scenario()) == ["released", "held"]


@pytest.mark.parametrize("mode, limiting, duty, expected", [
    ("normal", None, 1.0, 72.0),
    ("slowed", "cpu_temp_c", 0.5, 72.0),    # the CPU is hot: the GPU cap stays as planned
    ("slowed", "gpu_temp_c", 0.5, 40.0),    # 36 W would be below the card's 40 W minimum
    ("slowed", "gpu_temp_c", 0.8, 57.6),
    ("paused", "box_power_w", 0.6, 43.2),
])
def test_gpu_cap_follows_the_duty_only_when_the_gpu_is_the_problem(
        mode: str, limiting: str | None, duty: float, expected: float) -> None:
    from appliance.governor import gpu_cap_w

    decision = replace(initial(0.0), mode=mode, duty=duty, limiting=limiting)
    assert gpu_cap_w(decision, 72.0, min_w=40.0) == expected


def test_decision_names_the_figure_it_holds_back() -> None:
    assert run([(1.0, sample(50.0, gpu=86.0))])[-1].limiting == "gpu_temp_c"


def test_stale_telemetry_never_relaxes_an_alarm() -> None:
    decisions = run([(1.0, sample(85)), (2.0, None), (9.0, None), (30.0, None)])
    assert [d.mode for d in decisions] == ["paused"] * 4
    assert "stale" in decisions[-1].reason and decisions[-1].reason.count("holding") == 1
    assert decisions[-1].cause == "stale"
