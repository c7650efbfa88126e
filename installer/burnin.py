"""Burn-in: sustained generation with the planned settings while telemetry is sampled each second,
then judged against the profile's limits.

Runs the engine worker process directly (no daemon): the same code path the daemon uses, with
the staged model file, so a model that crashes llama.cpp fails here and not on the line. It
keeps every answer slot busy (`n_parallel` answers at once, as on a line with every console
asking), so heat, power and memory are measured at the load the daemon can reach; speed is
each answer's own rate. The
planned GPU power cap is set for the burn-in, as the daemon sets it, and the cards' own limits
are restored afterwards. `judge` grades every figure the burn-in measures (CPU and GPU heat, box
and GPU power, speed, memory) with the one grading of appliance.limits.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from appliance.errors import EngineError
from appliance.hardware.nvml import PowerLimits
from appliance.hardware.telemetry import Sample, take_sample
from appliance.inference.protocol import (
    Cancel,
    EngineConfig,
    Finished,
    Generate,
    GenerationRequest,
    LoadFailed,
    Piece,
    Ready,
    Refused,
    Shutdown,
)
from appliance.inference.worker import run_worker
from appliance.limits import (
    BURN_IN,
    Limits,
    Severity,
    gpu_power_limits,
    power_limits,
    temperature_limits,
)
from installer.plan import GIB, Plan
from installer.profiles import Profile

_PROMPTS = (
    "Explain what an operator should check when conveyor alarm E-104 appears.",
    "Write the shift handover note for line 3: two jams, one belt change, no injuries.",
    "List the steps to restart a packaging machine after an emergency stop.",
    "Describe how to inspect a hydraulic press before the first shift.",
)
_LOAD_TIMEOUT_S = 180.0
_MIN_TIMED_TOKENS = 8

Tick = Callable[[float, Sample], None]
"""Called once a second with (seconds elapsed, sample): drives the progress bar."""


@dataclass(frozen=True)
class BurnInResult:
    duration_s: float
    load_s: float
    answers: int
    tokens: int
    tok_per_s_median: float | None
    tok_per_s_p5: float | None
    ttft_s_median: float | None
    peak_rss_bytes: int | None
    cpu_temp_c_min: float | None
    cpu_temp_c_max: float | None
    gpu_temp_c_max: float | None
    gpu_power_w_min: float | None
    gpu_power_w_max: float | None
    box_power_w_max: float | None
    throttle_events: tuple[str, ...]
    samples: int
    rates: tuple[float, ...] = field(default=(), repr=False)
    gpu_power_cap_w: float | None = None
    """The power cap in force on each NVIDIA GPU during the burn-in; None: the cards' own."""
    gpu_cap_note: str | None = None
    """Why the planned cap could not be set (no permission, not supported...)."""


def run_burn_in(config: EngineConfig, duration_s: float, tick: Tick | None = None,
                sample_every_s: float = 1.0, gpu_cap_w: float | None = None,
                power: PowerLimits | None = None) -> BurnInResult:
    """Generate for `duration_s` seconds with the planned settings, the GPUs capped at
    `gpu_cap_w` (through `power`, the daemon's NVML actuator, by default)."""
    with capped_gpus(gpu_cap_w, power) as (cap_in_force, note):
        result = _run(config, duration_s, tick, sample_every_s)
    return replace(result, gpu_power_cap_w=cap_in_force, gpu_cap_note=note)


@contextmanager
def capped_gpus(cap_w: float | None,
                power: PowerLimits | None = None) -> Iterator[tuple[float | None, str | None]]:
    """The planned cap on every NVIDIA GPU while the block runs, the cards' limits restored after
    it: yields (the cap in force or None, why it could not be set or None)."""
    if cap_w is None:
        yield None, None
        return
    actuator = power if power is not None else PowerLimits()
    why = actuator.start(cap_w)
    try:
        yield (None, why) if why else (cap_w, None)
    finally:
        actuator.restore()


def _run(config: EngineConfig, duration_s: float, tick: Tick | None,
         sample_every_s: float) -> BurnInResult:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    worker = context.Process(target=run_worker, args=(child, config), daemon=True,
                             name="gemba-burn-in")
    worker.start()
    child.close()
    try:
        load_s = _wait_ready(parent)
        return _drive(parent, worker.pid, config, duration_s, load_s, tick, sample_every_s)
    finally:
        try:
            parent.send(Shutdown())
        except OSError:
            pass
        worker.join(timeout=10)
        if worker.is_alive():
            worker.kill()
            worker.join()
        parent.close()


def _wait_ready(conn) -> float:  # type: ignore[no-untyped-def]
    if not conn.poll(_LOAD_TIMEOUT_S):
        raise EngineError("the model did not load within the burn-in's time limit",
                          "check the model file and memory with `gemba install plan`")
    try:
        message = conn.recv()
    except EOFError as exc:
        raise EngineError("the inference engine crashed while loading the model",
                          "the model or the llama.cpp build does not run on this box") from exc
    if isinstance(message, LoadFailed):
        raise EngineError(f"the model could not be loaded: {message.message}",
                          "check the plan's memory figures; try a smaller context")
    assert isinstance(message, Ready)
    return message.load_s


def _drive(conn, pid: int | None, config: EngineConfig, duration_s: float,  # type: ignore[no-untyped-def]
           load_s: float, tick: Tick | None, sample_every_s: float) -> BurnInResult:
    started = time.monotonic()
    deadline = started + duration_s
    samples: list[Sample] = []
    rates: list[float] = []
    ttfts: list[float] = []
    tokens = answers = job_id = 0
    next_sample = started
    running: set[int] = set()  # as many answers at once as the daemon will run (its slots)
    cancel_sent = False
    while True:
        now = time.monotonic()
        if now >= next_sample:
            sample = take_sample(pid=pid)
            samples.append(sample)
            next_sample = now + sample_every_s
            if tick is not None:
                tick(min(now - started, duration_s), sample)
        if now < deadline:
            while len(running) < max(1, config.n_parallel):
                job_id += 1
                conn.send(Generate(job_id, GenerationRequest(
                    ({"role": "user", "content": _PROMPTS[job_id % len(_PROMPTS)]},),
                    max_tokens=128, temperature=0.7, seed=job_id)))
                running.add(job_id)
        elif not running:
            break
        elif not cancel_sent:
            for job in running:
                conn.send(Cancel(job))  # once: the answers end within a token
            cancel_sent = True
        if not conn.poll(min(0.2, max(0.0, next_sample - time.monotonic()))):
            continue
        try:
            job, event = conn.recv()
        except EOFError as exc:
            raise EngineError("the inference engine crashed during the burn-in",
                              "the box cannot run this model as planned; see the report") from exc
        if job not in running or isinstance(event, Piece):
            continue
        if isinstance(event, Refused):
            raise EngineError(f"the engine refused a burn-in prompt: {event.message}", event.hint)
        if isinstance(event, Finished):
            running.discard(job)
            answers += 1
            tokens += event.completion_tokens
            # The answers cut at the deadline count too, once long enough to time.
            if event.tok_per_s and event.completion_tokens >= _MIN_TIMED_TOKENS:
                rates.append(event.tok_per_s)
            if event.ttft_s is not None and event.finish_reason != "cancelled":
                ttfts.append(event.ttft_s)
    return summarise(samples, rates, ttfts, answers, tokens, time.monotonic() - started, load_s)


def summarise(samples: list[Sample], rates: list[float], ttfts: list[float], answers: int,
              tokens: int, duration_s: float, load_s: float) -> BurnInResult:
    """The burn-in's figures from its telemetry samples and timed answers."""

    def values(name: str) -> list[float]:
        return [v for s in samples if (v := getattr(s, name)) is not None]

    cpu, gpu_power = values("cpu_temp_c"), values("gpu_power_w")
    rss = values("process_rss_bytes")
    throttles = sorted({reason for s in samples for reason in s.gpu_throttle})
    return BurnInResult(
        duration_s=round(duration_s, 2), load_s=round(load_s, 3), answers=answers, tokens=tokens,
        tok_per_s_median=_round(statistics.median(rates)) if rates else None,
        tok_per_s_p5=_round(_percentile(rates, 5)) if rates else None,
        ttft_s_median=_round(statistics.median(ttfts), 4) if ttfts else None,
        peak_rss_bytes=int(max(rss)) if rss else None,
        cpu_temp_c_min=min(cpu) if cpu else None, cpu_temp_c_max=max(cpu) if cpu else None,
        gpu_temp_c_max=max(values("gpu_temp_c"), default=None),
        gpu_power_w_min=min(gpu_power) if gpu_power else None,
        gpu_power_w_max=max(gpu_power) if gpu_power else None,
        box_power_w_max=max(values("box_power_w"), default=None),
        throttle_events=tuple(throttles), samples=len(samples), rates=tuple(rates))


def _percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    index = (len(ordered) - 1) * percent / 100
    low = int(index)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


def _round(value: float, digits: int = 2) -> float:
    return round(value, digits)


# --- judging what was measured ------------------------------------------------------------------
Judged = dict[str, Any]


def judge(burn_in: BurnInResult, profile: Profile, plan: Plan, gpu_count: int) -> list[Judged]:
    """Every burn-in figure against its limit: pass / warn / fail with the numbers. `profile`
    is the one the plan used (with GPU levels from the cards when the file sets none)."""
    checks = [_cpu_heat(burn_in, profile), *_gpu_heat(burn_in, profile, gpu_count),
              *_box_power(burn_in, profile), *_gpu_power(burn_in, plan, gpu_count)]
    if burn_in.throttle_events:
        checks.append(_check("burn_in_throttle", "warn", "the GPU throttled: "
                             + ", ".join(burn_in.throttle_events)))
    checks.append(_speed(burn_in))
    if burn_in.peak_rss_bytes and burn_in.peak_rss_bytes > plan.memory.ram_budget_bytes:
        checks.append(_check("burn_in_memory", "fail", f"peak memory "
                             f"{burn_in.peak_rss_bytes / GIB:.2f} GiB exceeded the budget of "
                             f"{plan.memory.ram_budget_bytes / GIB:.2f} GiB"))
    return checks


def _check(name: str, status: str, message: str) -> Judged:
    return {"name": name, "status": status, "message": message}


def _graded(name: str, what: str, value: float, limits: Limits, unit: str,
            critical_means: str) -> Judged:
    """A figure measured at full speed, graded as every figure is and judged as a burn-in does
    (appliance.limits.BURN_IN)."""
    severity = limits.level(value)
    if severity == Severity.CRITICAL:
        message = (f"{what} reached {value:g} {unit}, at or above the critical limit "
                   f"{limits.critical:g} {unit}: {critical_means}")
    elif severity == Severity.WARNING:
        message = (f"{what} reached {value:g} {unit}, at or above the warning limit "
                   f"{limits.warning:g} {unit}: the governor will slow answers")
    else:
        message = (f"{what} peaked at {value:g} {unit}, below the warning limit "
                   f"{limits.warning:g} {unit}")
    return _check(name, BURN_IN[severity], message)


def _cpu_heat(burn_in: BurnInResult, profile: Profile) -> Judged:
    limits = temperature_limits(profile.thermal, "cpu")
    if burn_in.cpu_temp_c_max is None or limits is None:
        return _check("burn_in_thermal", "warn", "no CPU temperature sensor: heat under load "
                      "unverified; the governor will use conservative limits")
    return _graded("burn_in_thermal", "CPU", burn_in.cpu_temp_c_max, limits, "°C",
                   "improve the cooling, then apply again")


def _gpu_heat(burn_in: BurnInResult, profile: Profile, gpu_count: int) -> list[Judged]:
    limits = temperature_limits(profile.thermal, "gpu")
    if burn_in.gpu_temp_c_max is not None and limits is not None:
        return [_graded("burn_in_gpu_thermal", "GPU", burn_in.gpu_temp_c_max, limits, "°C",
                        "improve the cabinet's air flow (or lower the GPU cap), then apply "
                        "again")]
    if gpu_count:
        return [_check("burn_in_gpu_thermal", "warn", "no GPU temperature read under load: the "
                       "GPU's heat is unverified")]
    return []


def _box_power(burn_in: BurnInResult, profile: Profile) -> list[Judged]:
    if burn_in.box_power_w_max is None:
        return []  # measured only where a rail shows the box's input (Jetson VDD_IN)
    return [_graded("burn_in_power", "the box's input power", burn_in.box_power_w_max,
                    power_limits(profile.power.box_budget_w), "W",
                    "use a profile with fewer threads or a lower GPU cap")]


def _gpu_power(burn_in: BurnInResult, plan: Plan, gpu_count: int) -> list[Judged]:
    planned = plan.value("gpu_power_cap_w")
    if planned is None or not gpu_count:
        return []
    if burn_in.gpu_power_cap_w is None:
        return [_check("burn_in_gpu_power", "warn", f"the planned cap of {planned:g} W could not "
                       f"be set for the burn-in ({burn_in.gpu_cap_note or 'unknown reason'}): "
                       "the cards ran at their own limits and their draw was not judged against "
                       "the cap; the daemon sets it when it starts (as root)")]
    if burn_in.gpu_power_w_max is None:
        return [_check("burn_in_gpu_power", "warn", "no GPU power reading under load: the cap "
                       f"of {planned:g} W is unverified")]
    total_cap = burn_in.gpu_power_cap_w * gpu_count
    what = "the GPU" if gpu_count == 1 else f"the {gpu_count} GPUs together"
    return [_graded("burn_in_gpu_power", f"{what} (capped at {total_cap:g} W)",
                    burn_in.gpu_power_w_max, gpu_power_limits(total_cap), "W",
                    "the cap is not in force; check the driver (nvidia-smi -q -d POWER)")]


def _speed(burn_in: BurnInResult) -> Judged:
    if burn_in.tok_per_s_median is None:
        return _check("burn_in_speed", "fail", "no answer was long enough to time during the "
                      "burn-in: the box is far too slow for this model, or the burn-in too short")
    if burn_in.tok_per_s_p5 is not None and \
            burn_in.tok_per_s_p5 < 0.5 * burn_in.tok_per_s_median:
        return _check("burn_in_speed", "warn", f"speed unsteady: 5th percentile "
                      f"{burn_in.tok_per_s_p5:g} tok/s against a median of "
                      f"{burn_in.tok_per_s_median:g}")
    return _check("burn_in_speed", "pass", f"{burn_in.tok_per_s_median:g} tok/s median, "
                  f"{burn_in.tok_per_s_p5:g} tok/s 5th percentile")
