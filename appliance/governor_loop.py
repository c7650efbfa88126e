"""The governor at run time: sample, decide (appliance.governor), act, record. Once a second.

Actuators: the engine's pace (pause between tokens, fewer threads at low duty), the queue gate
(new answers wait while paused), and stopping generation at critical. Every change of mode is an
event with its reason, its figures and the decode rate before and a few seconds after.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import sqlite_utils

from appliance.chat import ChatService
from appliance.governor import (
    Budgets,
    Decision,
    decide,
    figure_severity,
    gpu_cap_w,
    initial,
    limits_for,
)
from appliance.hardware.nvml import PowerLimits
from appliance.hardware.telemetry import Sample
from appliance.inference.scheduler import Scheduler
from appliance.inference.supervisor import EngineSupervisor
from appliance.store.events import add_event, recent_events, set_rate_after
from appliance.store.telemetry import TelemetryStore

log = logging.getLogger("gemba.governor")
_AFTER_S = 5.0
_ROLL_UP_EVERY = 600
_SHOWN = ("cpu_temp_c", "gpu_temp_c", "gpu_power_w", "box_power_w", "mem_available_bytes",
           "tok_per_s")


class GovernorLoop:
    def __init__(self, budgets: Budgets, sampler: Callable[[], Sample],
                 supervisor: EngineSupervisor, scheduler: Scheduler, service: ChatService,
                 db: sqlite_utils.Database, telemetry: TelemetryStore | None,
                 planned_threads: int, interval_s: float = 1.0,
                 power: PowerLimits | None = None, planned_cap_w: float | None = None) -> None:
        self.budgets, self.sampler = budgets, sampler
        self.power, self.planned_cap_w = power, planned_cap_w
        self.supervisor, self.scheduler, self.service = supervisor, scheduler, service
        self.db, self.telemetry = db, telemetry
        self.planned_threads, self.interval_s = planned_threads, interval_s
        self.decision: Decision = initial(time.monotonic())
        self.last_sample: Sample | None = None
        # Counting from the start: a sensor that never answers becomes stale, not ignored.
        self._last_seen_s: float | None = time.monotonic()
        self._sent: tuple[float, int] = (1.0, planned_threads)
        self._ticks = 0

    async def run(self) -> None:
        while True:  # a first tick at once: the figures are there as soon as the API is
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the governor must outlive a bad tick
                log.exception("governor tick failed")
            await asyncio.sleep(self.interval_s)

    async def tick(self) -> Decision:
        sample = await self._sample()
        now = time.monotonic()
        decision = decide(self.decision, sample, self.budgets, now, self._last_seen_s)
        if decision.mode != self.decision.mode:
            self._record_change(self.decision, decision)
        self._act(decision)
        self.decision = decision
        if sample is not None and self.telemetry is not None:
            self.telemetry.record(sample, decision.mode, decision.duty,
                                  self.supervisor.tok_per_s())
            self._ticks += 1
            if self._ticks % _ROLL_UP_EVERY == 0:
                self.telemetry.roll_up()
        return decision

    async def _sample(self) -> Sample | None:
        try:
            sample = await asyncio.wait_for(asyncio.to_thread(self.sampler),
                                            timeout=max(2.0, 3 * self.interval_s))
        except TimeoutError:
            log.warning("telemetry sample timed out (a sensor read hangs)")
            return None
        except Exception:  # noqa: BLE001 - an unreadable sensor is "no sample", not a crash
            log.exception("telemetry sample failed")
            return None
        self.last_sample, self._last_seen_s = sample, sample.at_s
        return sample

    def _act(self, decision: Decision) -> None:
        threads = self.planned_threads if decision.duty >= 0.5 \
            else max(1, self.planned_threads // 2)
        wanted = (decision.duty, threads)
        if abs(wanted[0] - self._sent[0]) >= 0.01 or wanted[1] != self._sent[1]:
            self.supervisor.throttle(*wanted)
            self._sent = wanted
        if decision.accepts_new_work:
            self.scheduler.release()
        else:
            self.scheduler.hold()
        if not decision.generating_allowed:
            self.service.stop_all(f"generation stopped by the governor: {decision.reason}")
        self._cap_gpus(decision)

    def start_power(self) -> None:
        """Apply the planned GPU cap; an actuator that may not act is recorded, not fatal."""
        if self.power is None or self.planned_cap_w is None:
            return
        why = self.power.start(self.planned_cap_w)
        if why:
            self._note(f"GPU power cap of {self.planned_cap_w:g} W not applied: {why}")

    def _cap_gpus(self, decision: Decision) -> None:
        if self.power is None or self.planned_cap_w is None or self.power.disabled:
            return
        low = min((lo for lo, _ in self.power.range_mw.values()), default=0) / 1000
        wanted = gpu_cap_w(decision, self.planned_cap_w, low)
        if self.power.current_w is None or abs(wanted - self.power.current_w) >= 2.0:
            why = self.power.set(wanted)
            if why:
                self._note(f"GPU power cap not changed: {why}")

    def _note(self, reason: str) -> None:
        mode = self.decision.mode
        log.warning("governor: %s", reason)
        add_event(self.db, mode, mode, self.decision.duty, self.decision.severity.word,
                  reason,
                  {}, self.supervisor.tok_per_s())

    def _record_change(self, old: Decision, new: Decision) -> None:
        before = self.supervisor.tok_per_s()
        log.warning("governor: %s -> %s: %s", old.mode, new.mode, new.reason)
        event_id = add_event(self.db, old.mode, new.mode, new.duty, new.severity.word,
                             new.reason, new.figures, before)
        asyncio.get_running_loop().call_later(
            _AFTER_S, lambda: set_rate_after(self.db, event_id, self.supervisor.tok_per_s()))

    def status(self) -> dict[str, Any]:
        return decision_view(self.decision, time.monotonic())

    def report(self, events: int = 10) -> dict[str, Any]:
        return {"governor": self.status(),
                "last_sample": asdict(self.last_sample) if self.last_sample else None,
                "tok_per_s": self.supervisor.tok_per_s(),
                "events": recent_events(self.db, events)}

    def recent(self, seconds: float) -> dict[str, Any]:
        """The last `seconds` of figures, the budgets they are held to and where each stands."""
        sample = asdict(self.last_sample) if self.last_sample else {}
        sample["tok_per_s"] = self.supervisor.tok_per_s()
        latest = {}
        for name in _SHOWN:
            value = sample.get(name)
            level = figure_severity(name, value, self.budgets)
            latest[name] = {"value": value,
                            "severity": level.word if level is not None else None}
        rows = self.telemetry.recent(seconds) if self.telemetry is not None else []
        return {"seconds": seconds, "governor": self.status(), "latest": latest,
                "limits": limits_view(self.budgets), "samples": rows}


def decision_view(d: Decision, now_s: float) -> dict[str, Any]:
    """A decision as the API shows it (`governor` in health, status and telemetry)."""
    return {"mode": d.mode, "duty": d.duty, "severity": d.severity.word,
            "reason": d.reason, "cause": d.cause, "limiting": d.limiting,
            "since_s": round(now_s - d.since_s, 1), "figures": d.figures}


def limits_view(budgets: Budgets) -> dict[str, dict[str, float]]:
    """Every figure's limits as the API shows them (`limits` in telemetry)."""
    limits = {name: asdict(limit) for name, limit in limits_for(budgets).items()}
    limits["mem_available_bytes"] = {"reserve": budgets.mem_reserve_bytes}
    return limits
