"""Daemon side of the engine: starts the worker process, relays its events, restarts it after a crash.

Runs on the daemon's asyncio loop. The worker's pipe is watched with `loop.add_reader`, so no
thread hops per token. Several jobs run at once (the worker decodes them together in its slots);
each has its own event queue. A worker that dies (segfault, abort) fails every job in flight
with a clear error and is restarted with backoff; after repeated crashes the supervisor gives
up and says so.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from appliance.errors import EngineError, NotReady
from appliance.inference.protocol import (
    Cancel,
    EngineConfig,
    Event,
    Finished,
    Generate,
    GenerationRequest,
    LoadFailed,
    Piece,
    Ready,
    Refused,
    Shutdown,
    Throttle,
)
from appliance.inference.worker import run_worker

_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
_CRASH_WINDOW_S = 300.0
_CANCEL_GRACE_S = 60.0
"""A cancelled job stops within a token; a worker silent this long after Cancel is hung."""


LOAD_FAILED_HINT = ("lower model.n_ctx in config.toml (`gemba install plan` sizes it for this box), "
                    "then `gemba stop` and start again; if the file may be damaged, "
                    "run `gemba models verify`")


class _WorkerGone(Exception):
    pass


@dataclass
class EngineStatus:
    """What /healthz and the console show about the engine."""

    state: str = "loading"
    """loading, ready, answering, restarting, failed or stopped."""
    detail: str = ""
    load_s: float | None = None
    n_ctx: int | None = None
    restarts: int = 0
    crash_times: list[float] = field(default_factory=list)


class EngineSupervisor:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.status = EngineStatus()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._ready: asyncio.Future[Ready] | None = None
        self._jobs: dict[int, asyncio.Queue[Event | _WorkerGone]] = {}
        """Jobs whose callers read their events."""
        self._abandoned: set[int] = set()
        """Jobs whose callers left: cancelled, and running in the worker until it says so."""
        self._stopping = False
        self._next_job_id = 0
        self._throttle = Throttle(1.0, config.n_threads)
        self._piece_times: deque[float] = deque(maxlen=512)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Spawn the worker; readiness arrives later (see wait_ready)."""
        loop = asyncio.get_running_loop()
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(target=run_worker, args=(child, self.config),
                                        name="gemba-engine", daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        self._ready = loop.create_future()
        loop.add_reader(parent.fileno(), self._drain)
        if self.status.state != "restarting":
            self.status.state = "loading"

    async def wait_ready(self) -> Ready:
        assert self._ready is not None, "start() first"
        return await asyncio.shield(self._ready)

    async def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping = True
        self.status.state = "stopped"
        if self._conn is not None:
            try:
                self._conn.send(Shutdown())
            except (OSError, ValueError):
                pass
        process = self._process
        if process is not None:
            deadline = time.monotonic() + timeout_s
            while process.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if process.is_alive():
                process.kill()
            process.join(timeout=1)
        self._detach()

    @property
    def ready(self) -> bool:
        return self.status.state in ("ready", "answering")

    # -- jobs --------------------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> AsyncIterator[tuple[int, Event]]:
        """Run one job (the caller holds one of the scheduler's slots). Yields (job_id, event).

        Whatever ends the caller's interest before the job's last event (an exception in the
        caller, a cancelled task, a closed generator) cancels the job in the worker, so no
        slot is left answering a job nobody waits for; a worker that does not end it within
        the grace period is hung, and is killed and restarted."""
        if not self.ready:
            raise NotReady(f"the engine is {self.status.state}"
                              + (f": {self.status.detail}" if self.status.detail else ""),
                              "wait until `gemba` reports the engine ready, then ask again")
        self._next_job_id += 1
        job_id = self._next_job_id
        events: asyncio.Queue[Event | _WorkerGone] = asyncio.Queue()
        self._jobs[job_id] = events
        self.status.state = "answering"
        ended = False
        try:
            assert self._conn is not None
            self._conn.send(Generate(job_id, request))
            while True:
                event = await events.get()
                if isinstance(event, _WorkerGone):
                    ended = True
                    raise EngineError("the inference engine stopped unexpectedly while answering "
                                      f"({event}); it is restarting",
                                      "ask again in a few seconds; the question is kept in history")
                ended = isinstance(event, (Finished, Refused))
                yield job_id, event
                if ended:
                    return
        finally:
            ended = ended or _ended_unread(events)
            del self._jobs[job_id]
            if not ended and self._conn is not None:
                self._abandon(job_id)
            self._update_state()

    def _abandon(self, job_id: int) -> None:
        self._abandoned.add(job_id)
        self._send(Cancel(job_id))
        asyncio.get_running_loop().call_later(_CANCEL_GRACE_S, self._kill_if_hung, job_id,
                                              self._process)

    def _kill_if_hung(self, job_id: int, process: multiprocessing.process.BaseProcess | None) -> None:
        if job_id in self._abandoned and process is self._process and process is not None \
                and process.is_alive():
            process.kill()  # the pipe's EOF restarts it (_on_worker_exit)

    def _update_state(self) -> None:
        if self.status.state in ("ready", "answering"):
            self.status.state = "answering" if self._jobs or self._abandoned else "ready"

    def cancel(self, job_id: int) -> None:
        if job_id in self._jobs:
            self._send(Cancel(job_id))

    # -- worker events -----------------------------------------------------------------------
    def _drain(self) -> None:
        conn = self._conn
        if conn is None:
            return
        # One message per call: the loop calls again while the pipe stays readable, and
        # Connection.poll() would build a new selector for every token.
        try:
            self._dispatch(conn.recv())
        except (EOFError, OSError):
            self._on_worker_exit()

    def throttle(self, duty: float, n_threads: int) -> None:
        """Set the engine's pace now, and again after any restart."""
        self._throttle = Throttle(duty, n_threads)
        self._send(self._throttle)

    def tok_per_s(self, window_s: float = 3.0) -> float | None:
        """Decode rate over the last few seconds (None when nothing was generated)."""
        now = time.monotonic()
        recent = [t for t in self._piece_times if now - t <= window_s]
        if len(recent) < 2 or recent[-1] - recent[0] <= 0:
            return None
        return (len(recent) - 1) / (recent[-1] - recent[0])

    def _send(self, message: object) -> None:
        if self._conn is not None:
            try:
                self._conn.send(message)
            except (OSError, ValueError):
                pass

    def _dispatch(self, message: object) -> None:
        if isinstance(message, Ready):
            self.status.state, self.status.detail = "ready", ""
            if self._throttle.duty < 1.0 or self._throttle.n_threads != self.config.n_threads:
                self._send(self._throttle)
            self.status.load_s, self.status.n_ctx = message.load_s, message.n_ctx
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(message)
        elif isinstance(message, LoadFailed):
            self.status.state = "failed"
            self.status.detail = f"the model could not be loaded: {message.message}"
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(EngineError(
                    f"the model could not be loaded: {message.message}", LOAD_FAILED_HINT))
        elif isinstance(message, tuple):
            job_id, event = message
            if isinstance(event, Piece):
                now = time.monotonic()
                self._piece_times.extend([now] * event.tokens)
            events = self._jobs.get(job_id)
            if events is not None:
                events.put_nowait(event)
            elif job_id in self._abandoned and isinstance(event, (Finished, Refused)):
                self._abandoned.discard(job_id)  # the worker has now stopped it
                self._update_state()

    def _on_worker_exit(self) -> None:
        process = self._process
        exitcode = None
        if process is not None:
            process.join(timeout=1)
            exitcode = process.exitcode
        self._detach()
        reason = f"worker exit code {exitcode}"
        for events in self._jobs.values():
            events.put_nowait(_WorkerGone(reason))
        self._abandoned.clear()  # no worker, no job
        if self._stopping or self.status.state == "failed":
            return
        self._schedule_restart(reason)

    def _schedule_restart(self, reason: str) -> None:
        now = time.monotonic()
        self.status.crash_times = [t for t in self.status.crash_times
                                   if now - t < _CRASH_WINDOW_S] + [now]
        crashes = len(self.status.crash_times)
        if crashes > len(_BACKOFF_S):
            self.status.state = "failed"
            self.status.detail = (f"the engine crashed {crashes} times in "
                                  f"{_CRASH_WINDOW_S:.0f} s ({reason}); not restarting")
            return
        delay = _BACKOFF_S[crashes - 1]
        self.status.state = "restarting"
        self.status.detail = f"{reason}; restarting in {delay:.1f} s"
        self.status.restarts += 1
        asyncio.get_running_loop().call_later(delay, self._restart)

    def _restart(self) -> None:
        if not self._stopping:
            self.start()

    def _detach(self) -> None:
        if self._conn is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._conn.fileno())
            except (RuntimeError, ValueError, OSError):
                pass
            self._conn.close()
            self._conn = None
        self._process = None

    @property
    def worker_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None


def _ended_unread(events: asyncio.Queue[Event | _WorkerGone]) -> bool:
    """The job's last event already arrived but its caller left before reading it."""
    while not events.empty():
        if isinstance(events.get_nowait(), (Finished, Refused, _WorkerGone)):
            return True
    return False
