"""The engine worker process: owns the one model, so a llama.cpp abort cannot take the daemon down.

It loads the model, says Ready (or LoadFailed), then serves one Generate at a time over its pipe.
Between tokens it reads Cancel and Throttle messages: a duty below 1 adds a pause after each
token in proportion to that token's compute time (so the box cools at a known share of full
speed), and a thread count change applies to the live llama.cpp context.
"""

from __future__ import annotations

import time
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from appliance.inference.protocol import (
    Cancel,
    EngineConfig,
    Finished,
    Generate,
    LoadFailed,
    Piece,
    Ready,
    Refused,
    Shutdown,
    Throttle,
)


def load_engine(config: EngineConfig) -> Any:
    if config.fake_script is not None:
        from appliance.inference.fake import FakeEngine

        return FakeEngine(config)
    from appliance.inference.llama import LlamaEngine  # only the worker imports llama_cpp

    return LlamaEngine(config)


def run_worker(conn: Connection, config: EngineConfig) -> None:
    """Process entry point (spawned by the supervisor)."""
    started = time.perf_counter()
    try:
        engine = load_engine(config)
    except Exception as exc:  # noqa: BLE001 - any load failure is reported, not raised
        conn.send(LoadFailed(f"{exc} ({memory_needed(config)})"))
        return
    conn.send(Ready(time.perf_counter() - started, engine.n_ctx))
    serve_jobs(conn, engine)


def memory_needed(config: EngineConfig) -> str:
    """What loading needs against what the box has, for the engineer reading the failure."""
    import psutil

    available_mib = psutil.virtual_memory().available / 2**20
    try:
        from installer.gguf_info import read_model_facts

        facts = read_model_facts(Path(config.model_path))
        weights = facts.weight_bytes
        kv = facts.kv_bytes(config.n_ctx, config.kv_cache_type, config.n_ubatch)
        needed = (f"needs about {(weights + kv) / 2**20:,.0f} MiB: weights "
                  f"{weights / 2**20:,.0f} MiB + KV cache {kv / 2**20:,.0f} MiB for "
                  f"{config.n_ctx:,} tokens of context")
    except Exception:  # noqa: BLE001 - the explanation must never hide the failure itself
        needed = f"context {config.n_ctx:,} tokens"
    return f"{needed}; {available_mib:,.0f} MiB of memory available"


class _Pace:
    """The governor's current setting, applied to the engine between tokens."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.duty = 1.0
        self.n_threads = engine.config.n_threads

    def apply(self, throttle: Throttle) -> None:
        self.duty = min(1.0, max(0.05, throttle.duty))
        if throttle.n_threads != self.n_threads:
            self.engine.set_threads(throttle.n_threads)
            self.n_threads = throttle.n_threads

    def pause_after(self, compute_s: float) -> None:
        if self.duty < 1.0:
            time.sleep(compute_s * (1.0 / self.duty - 1.0))


def serve_jobs(conn: Connection, engine: Any) -> None:
    pace = _Pace(engine)
    waiting: deque[Generate] = deque()  # jobs that arrived while another ran: never dropped
    while True:
        if waiting:
            message: object = waiting.popleft()
        else:
            try:
                message = conn.recv()
            except EOFError:
                return
        if isinstance(message, Shutdown):
            return
        if isinstance(message, Throttle):
            pace.apply(message)
        elif isinstance(message, Generate):
            if not _Job(conn, engine, message, pace, waiting).run():
                return


class _Job:
    def __init__(self, conn: Connection, engine: Any, job: Generate, pace: _Pace,
                 waiting: deque[Generate]) -> None:
        self.conn, self.engine, self.job, self.pace = conn, engine, job, pace
        self.waiting = waiting
        self.cancel_requested = self.shutdown = False
        self.interval_s = engine.config.stream_interval_ms / 1000.0
        self.pending: list[str] = []
        self.last_sent = 0.0

    def run(self) -> bool:
        """Stream the job's events; False when a Shutdown arrived meanwhile."""
        token_started = time.perf_counter()
        try:
            for event in self.engine.generate(self.job.request, self.cancelled):
                if isinstance(event, Piece):
                    self.pending.append(event.text)
                    if time.perf_counter() - self.last_sent >= self.interval_s:
                        self.flush()
                    self.pace.pause_after(time.perf_counter() - token_started)
                    token_started = time.perf_counter()
                    continue
                self.flush()
                self.send(event)
        except Exception as exc:  # noqa: BLE001 - a failed job must not end the worker
            self.send(Refused("engine_error", f"{type(exc).__name__}: {exc}",
                              "try again; if it repeats, restart with `gemba stop`"))
        return not self.shutdown

    def cancelled(self) -> bool:
        while self.conn.poll():
            message = self.conn.recv()
            if isinstance(message, Cancel) and message.job_id == self.job.job_id:
                self.cancel_requested = True
            elif isinstance(message, Throttle):
                self.pace.apply(message)
            elif isinstance(message, Shutdown):
                self.cancel_requested = self.shutdown = True
            elif isinstance(message, Generate):
                self.waiting.append(message)
            elif isinstance(message, Cancel):
                self._withdraw(message.job_id)
        return self.cancel_requested

    def _withdraw(self, job_id: int) -> None:
        """A job still waiting here was cancelled: it ends now, with nothing generated."""
        for waiting in list(self.waiting):
            if waiting.job_id == job_id:
                self.waiting.remove(waiting)
                self.conn.send((job_id, Finished("cancelled", 0, 0, None, 0.0)))

    def flush(self) -> None:
        if self.pending:
            self.send(Piece("".join(self.pending), len(self.pending)))
            self.pending.clear()
            self.last_sent = time.perf_counter()

    def send(self, event: object) -> None:
        self.conn.send((self.job.job_id, event))
