"""The engine worker process: owns the one model, so a llama.cpp abort cannot take the daemon down.

It loads the model, says Ready (or LoadFailed), then serves Generate messages over its pipe: up
to the engine's slots at once, decoded together one step at a time. Between steps it reads
Generate, Cancel and Throttle messages: a duty below 1 adds a pause after each step in
proportion to that step's compute time (so the box cools at a known share of full speed, for
every answer at once), and a thread count change applies to the live llama.cpp context.
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
    try:
        for system_prompt in config.system_prompts:
            engine.hold(system_prompt)
    except Exception as exc:  # noqa: BLE001 - a model that cannot read a prompt cannot answer
        conn.send(LoadFailed(f"the model was loaded but could not read the system prompt: "
                             f"{exc}"))
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
        slots = max(1, config.n_parallel)
        kv = slots * facts.kv_bytes(config.n_ctx, config.kv_cache_type, config.n_ubatch)
        needed = (f"needs about {(weights + kv) / 2**20:,.0f} MiB: weights "
                  f"{weights / 2**20:,.0f} MiB + KV cache {kv / 2**20:,.0f} MiB for "
                  f"{slots} x {config.n_ctx:,} tokens of context (model.n_parallel x n_ctx)")
    except Exception:  # noqa: BLE001 - the explanation must never hide the failure itself
        needed = f"context {config.n_ctx:,} tokens"
    return f"{needed}; {available_mib:,.0f} MiB of memory available"


class _Pace:
    """The governor's current setting, applied to the engine between steps."""

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
    _Worker(conn, engine).serve()


class _Worker:
    """Admits jobs into the engine's slots in arrival order, steps them together, and streams
    each job's events; jobs beyond the slots wait here, never dropped."""

    def __init__(self, conn: Connection, engine: Any) -> None:
        self.conn, self.engine = conn, engine
        self.pace = _Pace(engine)
        self.waiting: deque[Generate] = deque()
        self.streams: dict[int, _Stream] = {}
        self.interval_s = engine.config.stream_interval_ms / 1000.0
        self.shutdown = False

    def serve(self) -> None:
        while not self.shutdown:
            if not self.streams and not self.waiting:
                try:
                    self.handle(self.conn.recv())  # idle: block until there is work
                except EOFError:
                    return
            if not self.read_messages():
                return
            self.admit()
            if self.streams:
                self.step()

    def read_messages(self) -> bool:
        """Everything the daemon sent meanwhile; False when the daemon is gone."""
        try:
            while not self.shutdown and self.conn.poll():
                self.handle(self.conn.recv())
        except EOFError:
            return False
        return not self.shutdown

    def handle(self, message: object) -> None:
        if isinstance(message, Shutdown):
            self.shutdown = True
        elif isinstance(message, Throttle):
            self.pace.apply(message)
        elif isinstance(message, Generate):
            self.waiting.append(message)
        elif isinstance(message, Cancel):
            self.cancel(message.job_id)

    def cancel(self, job_id: int) -> None:
        if job_id in self.streams:
            for event in self.engine.cancel(job_id):
                self.emit(job_id, event)
            return
        for waiting in list(self.waiting):  # not started: it ends now, with nothing generated
            if waiting.job_id == job_id:
                self.waiting.remove(waiting)
                self.send(job_id, Finished("cancelled", 0, 0, None, 0.0))

    def admit(self) -> None:
        while self.waiting and len(self.streams) < self.engine.n_slots:
            job = self.waiting.popleft()
            try:
                first = self.engine.admit(job.job_id, job.request)
            except Exception as exc:  # noqa: BLE001 - a failed job must not end the worker
                first = _engine_error(exc)
            if not isinstance(first, Refused):
                self.streams[job.job_id] = _Stream()
            self.emit(job.job_id, first)

    def step(self) -> None:
        started = time.perf_counter()
        try:
            events = self.engine.step()
        except Exception as exc:  # noqa: BLE001 - every job in the batch fails, not the worker
            for job_id in self.engine.abort_all():
                self.emit(job_id, _engine_error(exc))
            return
        for job_id, event in events:
            self.emit(job_id, event)
        for job_id, stream in self.streams.items():
            if stream.pending and time.perf_counter() - stream.last_sent >= self.interval_s:
                self.flush(job_id, stream)
        self.pace.pause_after(time.perf_counter() - started)

    def emit(self, job_id: int, event: object) -> None:
        stream = self.streams.get(job_id)
        if isinstance(event, Piece) and stream is not None:
            stream.pending.append(event.text)
            return
        if stream is not None:
            self.flush(job_id, stream)
        if isinstance(event, (Finished, Refused)):
            self.streams.pop(job_id, None)
        self.send(job_id, event)

    def flush(self, job_id: int, stream: _Stream) -> None:
        if stream.pending:
            self.send(job_id, Piece("".join(stream.pending), len(stream.pending)))
            stream.pending.clear()
            stream.last_sent = time.perf_counter()

    def send(self, job_id: int, event: object) -> None:
        self.conn.send((job_id, event))


class _Stream:
    """A job's pieces not yet sent (pieces faster than stream_interval_ms go together)."""

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.last_sent = 0.0


def _engine_error(exc: Exception) -> Refused:
    return Refused("engine_error", f"{type(exc).__name__}: {exc}",
                   "try again; if it repeats, restart with `gemba stop`")
