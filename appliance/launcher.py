"""Find the local daemon, or start one in the background, and stop it.

`gemba ask` and `gemba console` call `ensure_daemon`, so a newcomer needs nothing but `make run`.
A daemon started this way stops after the configured idle time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil

from appliance.client import ApplianceClient
from appliance.config import Paths, Settings
from appliance.errors import DaemonUnavailable, EngineError, GembaError
from appliance.inference.supervisor import LOAD_FAILED_HINT

Say = Callable[[str], None]
_START_TIMEOUT_S = 120.0


def local_url(settings: Settings) -> str:
    host = settings.daemon.host
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{settings.daemon.port}"


def _read_state(paths: Paths) -> dict[str, Any] | None:
    try:
        return json.loads(paths.daemon_state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def ensure_daemon(settings: Settings, paths: Paths, say: Say, until_ready: bool = True) -> str:
    """URL of a ready local daemon, starting one if none answers.

    `until_ready=False` returns once the daemon answers at all (it may still be loading the
    model): the console opens at once and says "loading"."""
    url = local_url(settings)
    client = ApplianceClient(url, settings.daemon.api_key)
    try:
        health = client.health()
        if health is not None and "model_id" not in health:
            raise DaemonUnavailable(f"{url} answers, but it is not a Gemba appliance",
                                    "set daemon.port in the config to a free port")
        process = None
        if health is None:
            say(f"Starting the Gemba appliance daemon ({settings.model.id})…")
            process = _spawn(settings, paths)
        return _wait_ready(client, process, paths, say, until_ready)
    finally:
        client.close()


def _spawn(settings: Settings, paths: Paths) -> subprocess.Popen[bytes]:
    paths.ensure()
    paths.daemon_start_error_file.unlink(missing_ok=True)
    log = paths.daemon_log_file.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "appliance", "serve",
             "--idle-timeout", str(settings.daemon.idle_timeout_s)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        log.close()


def _wait_ready(client: ApplianceClient, process: subprocess.Popen[bytes] | None, paths: Paths,
                say: Say, until_ready: bool = True) -> str:
    deadline = time.monotonic() + _START_TIMEOUT_S
    last_state = None
    while time.monotonic() < deadline:
        health = client.health()
        if health is not None:
            if health.get("ready") or not until_ready:
                # A console opens even on a failed engine: its banner shows the reason.
                return client.base_url
            state = health.get("state")
            if state == "failed":
                raise EngineError(f"the appliance's engine failed: {health.get('detail')}",
                                  f"{LOAD_FAILED_HINT}; the daemon log is {paths.daemon_log_file}")
            if state != last_state:
                say(f"Appliance is {state}: {health.get('detail') or 'please wait'}…")
                last_state = state
        elif process is not None and process.poll() is not None:
            raise _start_failure(paths, process.returncode)
        time.sleep(0.1)
    raise DaemonUnavailable(f"the appliance did not become ready within {_START_TIMEOUT_S:.0f} s",
                            f"see {paths.daemon_log_file}")


def _start_failure(paths: Paths, returncode: int) -> GembaError:
    try:
        detail = json.loads(paths.daemon_start_error_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DaemonUnavailable(f"the appliance daemon exited during start-up "
                                 f"(exit code {returncode})", f"see {paths.daemon_log_file}")
    error = GembaError(detail.get("message", "start-up failed"), detail.get("hint", ""))
    error.exit_code = int(detail.get("exit_code", 1))
    return error


def stop_daemon(paths: Paths, timeout_s: float = 15.0) -> str:
    """Stop the local daemon; returns what happened, for the operator."""
    state = _read_state(paths)
    pid = state.get("pid") if state else None
    if not pid or not _is_our_daemon(pid):
        paths.daemon_state_file.unlink(missing_ok=True)
        return "No Gemba daemon is running."
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _is_running(pid):
        if time.monotonic() > deadline:
            raise DaemonUnavailable(f"the daemon (pid {pid}) did not stop within {timeout_s:.0f} s",
                                    f"it may be finishing an answer; or end it with `kill -9 {pid}`")
        time.sleep(0.05)
    return f"Stopped the Gemba daemon (pid {pid})."


def _is_running(pid: int) -> bool:
    # An exited daemon whose parent has not reaped it yet is a zombie: it is stopped.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _is_our_daemon(pid: int) -> bool:
    try:
        cmdline = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "serve" in cmdline and any("appliance" in part or "gemba" in part for part in cmdline)
