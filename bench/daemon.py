"""A real `gemba serve` for a benchmark: in its own GEMBA_HOME, on a free port, ready to answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_daemon(home: Path, port: int, config: str = "",
                 env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`gemba serve` with `[daemon] port` plus the TOML in `config`; returns once ready."""
    (home / "config.toml").write_text(f"[daemon]\nport = {port}\n{config}")
    process = subprocess.Popen([sys.executable, "-m", "appliance", "serve"],
                               env={**os.environ, "GEMBA_HOME": str(home), **(env or {})},
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()["ready"]:
                return process
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    process.terminate()
    raise SystemExit("the daemon did not become ready")
