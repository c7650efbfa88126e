"""`gemba serve`: one process that owns the model (through its worker) and the database.

Start-up order: check settings, verify the model's hash, open the store, bind the port, then
start the engine worker. The API answers /healthz from the first moment (503 while loading).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import uvicorn

from appliance import __version__
from appliance.api.app import create_app
from appliance.api.metrics import Metrics, appliance_gauges
from appliance.audit_context import answer_context, audit_config
from appliance.chat import ChatService
from appliance.config import Paths, Settings
from appliance.errors import ConfigError, GembaError
from appliance.fileio import write_atomic
from appliance.governor import budgets_from
from appliance.governor_loop import GovernorLoop
from appliance.hardware.nvml import PowerLimits
from appliance.hardware.simulated import ENV as SIMULATED_ENV
from appliance.hardware.simulated import SimulatedSensor
from appliance.hardware.simulated import parse as parse_simulated
from appliance.hardware.telemetry import Sample, take_sample
from appliance.inference.factory import engine_config, system_prompts
from appliance.inference.protocol import EngineConfig
from appliance.inference.scheduler import Scheduler
from appliance.inference.supervisor import EngineSupervisor
from appliance.models import resolve_verified
from appliance.store import open_store
from appliance.store.conversations import mark_interrupted
from appliance.store.telemetry import TelemetryStore
from appliance.store.writer import StoreWriter


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: Settings, paths: Paths, host: str, port: int,
          idle_timeout_s: float = 0.0) -> None:
    """Run the daemon until stopped (SIGTERM/SIGINT, `gemba stop`, or the idle timeout)."""
    paths.ensure()
    paths.daemon_start_error_file.unlink(missing_ok=True)
    try:
        daemon = _prepare(settings, paths, host, port)
    except GembaError as error:
        write_atomic(paths.daemon_start_error_file,
                     json.dumps({**error.to_dict(), "exit_code": error.exit_code}))
        raise
    asyncio.run(daemon.run(idle_timeout_s))


def _prepare(settings: Settings, paths: Paths, host: str, port: int) -> Daemon:
    if not is_loopback(host) and not settings.daemon.api_key:
        raise ConfigError(f"refusing to listen on {host} without an API key",
                          f"set daemon.api_key in {paths.config_file}, or listen on 127.0.0.1")
    # The address actually listened on (`serve --host` may override the config) is one the
    # API answers to.
    settings = settings.model_copy(
        update={"daemon": settings.daemon.model_copy(update={"host": host})})
    entry, model_path = resolve_verified(settings.model.id, paths.models_dir)
    db = open_store(paths.db_file)
    context = audit_config(db, settings)  # a config changed since the last start is audited
    mark_interrupted(db, context)  # answers a power cut or kill -9 cut off: marked, not left open
    sock = _bind(host, port)
    try:
        engine = engine_config(settings.model, settings.generation, entry.id, model_path,
                               entry.sha256, system_prompts=system_prompts(settings))
    except ConfigError:
        sock.close()
        raise
    spec = os.environ.get(SIMULATED_ENV)
    if spec:
        try:
            parse_simulated(spec)
        except (ValueError, TypeError) as exc:
            sock.close()
            raise ConfigError(f"{SIMULATED_ENV}={spec!r} is not a thermal model: {exc}",
                              "unset it (it is for tests and tuning only) or fix the parameters"
                              ) from exc
    return Daemon(settings, paths, engine, db, sock, sampler_spec=spec)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}",
                          "another Gemba daemon or program uses the port: run `gemba stop`, or "
                          "set daemon.port in the config") from exc
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling.

    uvicorn re-raises a captured SIGTERM after its own shutdown, which would end the process
    before the daemon stores partial answers and stops the worker; the daemon handles signals.
    """

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


class Daemon:
    def __init__(self, settings: Settings, paths: Paths, engine: EngineConfig, db: Any,
                 sock: socket.socket, sampler_spec: str | None = None) -> None:
        self.settings, self.paths, self.engine, self.sock = settings, paths, engine, sock
        self.simulated = bool(sampler_spec)
        self.supervisor = EngineSupervisor(engine)
        self.scheduler = Scheduler(settings.daemon.max_queue, slots=engine.n_parallel)
        self.writer = StoreWriter(paths.db_file)
        self.service = ChatService(db, self.supervisor, self.scheduler, engine.model_id,
                                   engine.model_sha256, settings.generation.system_prompt,
                                   self.writer, settings.knowledge.mode,
                                   answer_context(settings, lambda: self.governor.status()))
        budgets = settings.budgets
        self.telemetry = TelemetryStore(paths.data_dir / "telemetry.db",
                                        budgets.telemetry_raw_hours,
                                        budgets.telemetry_minute_days)
        self.governor = GovernorLoop(
            budgets_from(budgets), self._sampler(sampler_spec), self.supervisor,
            self.scheduler, self.service, db, self.telemetry, engine.n_threads,
            budgets.sample_interval_s,
            power=PowerLimits() if settings.model.gpu_power_cap_w else None,
            planned_cap_w=settings.model.gpu_power_cap_w)
        self.started = time.monotonic()
        host, port = sock.getsockname()[:2]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    def _sampler(self, spec: str | None) -> Callable[[], Sample]:
        if spec:
            return SimulatedSensor(parse_simulated(spec), self.supervisor.tok_per_s,
                                   lambda: self.supervisor.worker_pid)
        return lambda: take_sample(pid=self.supervisor.worker_pid)

    def health(self) -> dict[str, Any]:
        status = self.supervisor.status
        governor = {**self.governor.status(), "simulated_sensor": self.simulated}
        state = status.state
        if state in ("ready", "answering") and governor["mode"] != "normal":
            state = "throttled"
        return {
            "ready": self.supervisor.ready,
            "state": state,
            "storage": self.storage(),
            "engine_state": status.state,
            "governor": governor,
            "detail": status.detail,
            "model_id": self.engine.model_id,
            "model_sha256": self.engine.model_sha256,
            "n_ctx": status.n_ctx,
            "n_threads": self.engine.n_threads,
            "load_s": status.load_s,
            "restarts": status.restarts,
            "queue": self.scheduler.waiting,
            "version": __version__,
            "pid": os.getpid(),
            "worker_pid": self.supervisor.worker_pid,
            "uptime_s": round(time.monotonic() - self.started, 3),
        }

    def storage(self) -> dict[str, Any]:
        """Free space where the database lives, and a warning before writes start failing."""
        try:
            usage = shutil.disk_usage(self.paths.data_dir)
        except OSError as exc:
            return {"free_bytes": None, "total_bytes": None, "warning": True,
                    "message": f"cannot read the free space of {self.paths.data_dir}: {exc}"}
        threshold = self.settings.daemon.disk_warning_bytes
        low = usage.free < threshold
        message = (f"storage almost full: {usage.free / 2**30:.2f} GiB free on "
                   f"{self.paths.data_dir} (warning below {threshold / 2**30:.2f} GiB); "
                   "free space before answers can no longer be stored") if low else ""
        return {"free_bytes": usage.free, "total_bytes": usage.total, "warning": low,
                "message": message}

    async def run(self, idle_timeout_s: float) -> None:
        metrics = Metrics(__version__, self.engine.model_id, self.engine.model_sha256,
                          appliance_gauges(self.supervisor, self.scheduler, self.governor))
        app = create_app(self.service, self.settings, self.health, self.governor.report,
                         self.governor.recent, metrics)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=5)
        server = _Server(config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, setattr, server, "should_exit", True)
        self.supervisor.start()
        await asyncio.to_thread(self.governor.start_power)
        watcher = asyncio.create_task(self._watch_idle(server, idle_timeout_s))
        governing = asyncio.create_task(self.governor.run())
        self._write_state()
        try:
            await server.serve(sockets=[self.sock])
        finally:
            watcher.cancel()
            governing.cancel()
            await self.service.drain()
            await self.supervisor.stop()
            self.writer.close()
            if self.governor.power is not None:
                self.governor.power.restore()  # the card gets its own limit back
            self.telemetry.close()
            self.paths.daemon_state_file.unlink(missing_ok=True)

    async def _watch_idle(self, server: uvicorn.Server, idle_timeout_s: float) -> None:
        if idle_timeout_s <= 0:
            return
        # Idle time counts from the moment the engine can answer: on a busy box loading may
        # take longer than a short timeout, and the client that started the daemon is still
        # waiting for it.
        with contextlib.suppress(Exception):
            await self.supervisor.wait_ready()
        self.service.touch()
        while not server.should_exit:
            await asyncio.sleep(min(5.0, idle_timeout_s / 4))
            idle = time.monotonic() - self.service.last_activity
            if not self.service.active and idle >= idle_timeout_s:
                server.should_exit = True

    def _write_state(self) -> None:
        state = {"pid": os.getpid(), "url": self.url, "model_id": self.engine.model_id,
                 "version": __version__, "started_at": datetime.now(UTC).isoformat(),
                 "engine": asdict(self.engine)}
        write_atomic(self.paths.daemon_state_file, json.dumps(state, indent=2))
