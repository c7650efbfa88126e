"""The engine worker process: owns the one model, so a llama.cpp abort cannot take the daemon down.

It loads the model, says Ready (or LoadFailed), then serves one Generate at a time over its pipe,
checking for Cancel between tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from appliance.inference.protocol import (
    Cancel,
    EngineConfig,
    Generate,
    LoadFailed,
    Piece,
    Ready,
    Refused,
    Shutdown,
)

EngineFactory = Callable[[EngineConfig], object]


def _load_llama(config: EngineConfig) -> object:
    from appliance.inference.llama import LlamaEngine  # only the worker imports llama_cpp

    return LlamaEngine(config)


def run_worker(conn: Connection, config: EngineConfig) -> None:
    """Process entry point (spawned by the supervisor)."""
    started = time.perf_counter()
    try:
        engine = _load_llama(config)
    except Exception as exc:  # noqa: BLE001 - any load failure is reported, not raised
        conn.send(LoadFailed(f"{type(exc).__name__}: {exc}"))
        return
    conn.send(Ready(time.perf_counter() - started, engine.n_ctx))
    serve_jobs(conn, engine)


def serve_jobs(conn: Connection, engine: object) -> None:
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if isinstance(message, Shutdown):
            return
        if isinstance(message, Generate):
            if not _run_job(conn, engine, message):
                return


def _run_job(conn: Connection, engine: object, job: Generate) -> bool:
    """Stream one job's events; False when a Shutdown arrived meanwhile."""
    state = {"cancelled": False, "shutdown": False}

    def cancelled() -> bool:
        while conn.poll():
            message = conn.recv()
            if isinstance(message, Cancel) and message.job_id == job.job_id:
                state["cancelled"] = True
            elif isinstance(message, Shutdown):
                state["cancelled"] = state["shutdown"] = True
        return state["cancelled"]

    interval_s = getattr(engine, "config", None)
    interval_s = (interval_s.stream_interval_ms / 1000.0) if interval_s is not None else 0.0
    pending: list[str] = []
    last_sent = 0.0

    def flush() -> None:
        nonlocal last_sent
        if pending:
            conn.send((job.job_id, Piece("".join(pending))))
            pending.clear()
            last_sent = time.perf_counter()

    try:
        for event in engine.generate(job.request, cancelled):  # type: ignore[attr-defined]
            if isinstance(event, Piece):
                pending.append(event.text)
                if time.perf_counter() - last_sent >= interval_s:
                    flush()
                continue
            flush()
            conn.send((job.job_id, event))
    except Exception as exc:  # noqa: BLE001 - a failed job must not end the worker
        conn.send((job.job_id, Refused("engine_error", f"{type(exc).__name__}: {exc}",
                                       "try again; if it repeats, restart with `gemba stop`")))
    return not state["shutdown"]
