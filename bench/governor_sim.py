"""Governor simulation: an hour of sustained load on each firmware profile's RC thermal model.

For every profile with a [thermal_model], the box starts at its rated ambient and answers
continuously for an hour. The governor (appliance/governor.py, the daemon's own policy, fed the
model's temperature rounded to 1 °C like a real sensor) is compared with the best constant
setting: the highest fixed duty whose steady temperature stays at or under the warning limit.

Printed per profile: peak temperature against the critical limit, seconds above careful and
warning, and throughput as a fraction of the best constant setting.
Goal: never above critical, throughput >= 95 % of the best constant setting.

    .venv/bin/python bench/governor_sim.py [--json] [--hours 1] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.config import BudgetSettings  # noqa: E402
from appliance.governor import Decision, budgets_from, decide, initial  # noqa: E402
from appliance.hardware.telemetry import Sample  # noqa: E402
from appliance.thermal_model import ThermalModel  # noqa: E402
from installer.profiles import Profile, budget_table, load_profiles  # noqa: E402

GOAL_RATIO = 0.95


@dataclass(frozen=True)
class Result:
    profile: str
    component: str
    peak_temp_c: float
    careful_c: float
    warning_c: float
    critical_c: float
    held: bool
    seconds_above_careful: int
    seconds_above_warning: int
    best_constant_duty: float
    governor_tokens: float
    constant_tokens: float
    throughput_ratio: float
    mode_changes: int


def model_for(profile: Profile) -> ThermalModel:
    params = profile.thermal_model
    assert params is not None
    return ThermalModel(profile.thermal.rated_ambient_c, params.r_c_per_w, params.c_j_per_c,
                        params.idle_w, params.load_w, params.full_tok_per_s)


def limits_for(profile: Profile) -> tuple[float, float, float]:
    t = profile.thermal
    if profile.thermal_model and profile.thermal_model.component == "gpu" \
            and t.gpu_careful_c is not None:
        return t.gpu_careful_c, t.gpu_warning_c, t.gpu_critical_c  # type: ignore[return-value]
    return t.cpu_careful_c, t.cpu_warning_c, t.cpu_critical_c


def sample(at_s: float, temp_c: float, component: str) -> Sample:
    reading = float(round(temp_c))
    return Sample(at_s=at_s, cpu_temp_c=reading if component == "cpu" else 40.0,
                  gpu_temp_c=reading if component == "gpu" else None, gpu_power_w=None,
                  box_power_w=None, gpu_throttle=(), mem_available_bytes=1 << 40,
                  process_rss_bytes=None, cpu_percent=0.0)


def simulate(profile: Profile, seconds: int) -> Result:
    model = model_for(profile)
    careful, warning, critical = limits_for(profile)
    component = profile.thermal_model.component  # type: ignore[union-attr]
    table = budget_table(profile)
    table["sensors_expected"] = True  # the simulated sensor is always there
    budgets = budgets_from(BudgetSettings(**table))
    decision: Decision = initial(0.0)
    temp = peak = model.ambient_c
    tokens = 0.0
    above_careful = above_warning = changes = 0
    for second in range(seconds):
        decision_next = decide(decision, sample(second, temp, component), budgets, float(second),
                               float(second))
        changes += decision_next.mode != decision.mode
        decision = decision_next
        duty = 0.0 if decision.mode == "refused" else decision.duty
        temp = model.step(temp, duty, 1.0)
        tokens += model.full_tok_per_s * duty
        peak = max(peak, temp)
        above_careful += temp > careful
        above_warning += temp > warning
    best = model.best_constant_duty(warning)
    constant = model.full_tok_per_s * best * seconds
    return Result(profile.name, component, round(peak, 2), careful, warning, critical,
                  peak < critical, above_careful, above_warning, round(best, 4),
                  round(tokens), round(constant), round(tokens / constant, 4) if constant else 1.0,
                  changes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/governor_sim.json")
    args = parser.parse_args()
    seconds = int(args.hours * 3600)
    results = [simulate(p, seconds) for p in load_profiles() if p.thermal_model is not None]
    rows = [{**r.__dict__, "goal_met": r.held and r.throughput_ratio >= GOAL_RATIO}
            for r in results]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"measured_at": datetime.now(UTC).isoformat(),
                                       "seconds": seconds, "results": rows}, indent=2))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'profile':<28} {'peak °C':>8} {'crit':>5} {'held':>5} {'>care s':>8} "
              f"{'>warn s':>8} {'ratio':>6}")
        for r in results:
            print(f"{r.profile:<28} {r.peak_temp_c:>8.1f} {r.critical_c:>5.0f} "
                  f"{'yes' if r.held else 'NO':>5} {r.seconds_above_careful:>8} "
                  f"{r.seconds_above_warning:>8} {r.throughput_ratio:>6.3f}")
    return 0 if all(row["goal_met"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
