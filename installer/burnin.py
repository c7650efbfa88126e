"""Burn-in: sustained generation with the planned settings while telemetry is sampled each second.

Runs the engine worker process directly (no daemon): the same code path the daemon uses, with
the staged model file, so a model that crashes llama.cpp fails here and not on the line.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.errors import EngineError
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


def run_burn_in(config: EngineConfig, duration_s: float, tick: Tick | None = None,
                sample_every_s: float = 1.0) -> BurnInResult:
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
    running = cancel_sent = False
    while True:
        now = time.monotonic()
        if now >= next_sample:
            sample = take_sample(pid=pid)
            samples.append(sample)
            next_sample = now + sample_every_s
            if tick is not None:
                tick(min(now - started, duration_s), sample)
        if not running:
            if now >= deadline:
                break
            job_id += 1
            conn.send(Generate(job_id, GenerationRequest(
                ({"role": "user", "content": _PROMPTS[job_id % len(_PROMPTS)]},),
                max_tokens=128, temperature=0.7, seed=job_id)))
            running, cancel_sent = True, False
        elif now >= deadline and not cancel_sent:
            conn.send(Cancel(job_id))  # once: the answer ends within a token
            cancel_sent = True
        if not conn.poll(min(0.2, max(0.0, next_sample - time.monotonic()))):
            continue
        try:
            job, event = conn.recv()
        except EOFError as exc:
            raise EngineError("the inference engine crashed during the burn-in",
                              "the box cannot run this model as planned; see the report") from exc
        if job != job_id:
            continue
        if isinstance(event, Piece):
            continue
        if isinstance(event, Refused):
            raise EngineError(f"the engine refused a burn-in prompt: {event.message}", event.hint)
        if isinstance(event, Finished):
            running = False
            answers += 1
            tokens += event.completion_tokens
            # The answer cut at the deadline counts too, once it is long enough to time.
            if event.tok_per_s and event.completion_tokens >= _MIN_TIMED_TOKENS:
                rates.append(event.tok_per_s)
            if event.ttft_s is not None and event.finish_reason != "cancelled":
                ttfts.append(event.ttft_s)
    return _summarise(samples, rates, ttfts, answers, tokens, time.monotonic() - started, load_s)


def _summarise(samples: list[Sample], rates: list[float], ttfts: list[float], answers: int,
               tokens: int, duration_s: float, load_s: float) -> BurnInResult:
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
