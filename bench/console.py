"""What the operator console costs: the real `gemba console` in a real terminal (tmux, 80x24)
against the same daemon answering the same question over the API alone.

What it measures
  * api:     the question streamed over `POST /v1/chat/completions` by this process: the
             engine's decode rate (`gemba.tok_per_s`) and the time to the first content chunk.
  * console: `gemba console --connect URL` in a tmux pane at 80x24, the question typed and sent
             with Enter: time from Enter to the first answer text in the pane (polled every
             POLL_S, so it is that coarse; the end is polled every 0.5 s and answer_s is as
             coarse), the engine's decode rate for that answer (from the
             stored conversation), and the console process's CPU seconds and memory (RSS) while
             the answer streams. On 2 cores every CPU second the console spends on drawing is
             a second the engine may not get: the decode-rate ratio console/api shows it.
  * health:  the console on its Health screen (F4, refreshed every 2 s) for --idle-s seconds:
             the CPU share of the console and of the daemon serving the telemetry.
  The daemon answers at temperature 0 with max_tokens --tokens, so every answer to the numbers
  prompt has exactly that many tokens. Runs alternate (api, console, api, ...) after one warm-up
  of each. Between console runs the operator signs out (F9) and in again, so each answer starts
  on a clear screen. Nothing here asserts on time; the figures are reported.

    .venv/bin/python bench/console.py --runs 5 --tokens 256 --output bench/results/console.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.decode import (  # noqa: E402 - the bench folder is not a package on sys.path
    USER_PROMPT,
    daemon_run,
    free_port,
    load_average,
    machine_info,
    start_daemon,
    stop_daemon,
    wait_healthy,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "console.json"
POLL_S = 0.05
OPERATOR = "Bench"


@dataclass
class ConsoleRun:
    tokens: int
    screen_ttft_s: float
    """Enter -> first answer text in the pane."""
    answer_s: float
    """Enter -> the status line says ready again."""
    engine_tok_per_s: float
    console_cpu_s: float
    console_rss_mb: float


class Pane:
    """`gemba console` in its own tmux server at 80x24."""

    def __init__(self, command: str) -> None:
        self.socket = f"gemba-bench-{uuid.uuid4().hex[:8]}"
        started = self._tmux("new-session", "-d", "-s", "c", "-x", "80", "-y", "24", command)
        if started.returncode != 0:
            raise RuntimeError(f"tmux would not start: {started.stderr}")
        pane_pid = int(self._tmux("display", "-p", "-t", "c", "#{pane_pid}").stdout.strip())
        self.process = self._console(pane_pid)

    def _tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "TMUX"}
        return subprocess.run(["tmux", "-L", self.socket, *args], env=env, text=True,
                              capture_output=True, timeout=30)

    @staticmethod
    def _console(pane_pid: int) -> psutil.Process:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            root = psutil.Process(pane_pid)
            for process in [root, *root.children(recursive=True)]:
                if "console" in process.cmdline():
                    return process
            time.sleep(0.1)
        raise RuntimeError("no `gemba console` process in the pane")

    def text(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "c").stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "c", *keys)

    def wait(self, condition: Callable[[str], bool], what: str, timeout_s: float = 120,
             poll_s: float = POLL_S) -> float:
        """Poll until the pane shows it; the time it was first seen. Each poll runs a tmux
        client, so polls are fast only where the moment matters."""
        deadline = time.monotonic() + timeout_s
        while True:
            pane = self.text()
            if condition(pane):
                return time.perf_counter()
            if time.monotonic() > deadline:
                raise RuntimeError(f"gave up waiting for {what}; the pane shows:\n{pane}")
            time.sleep(poll_s)

    def close(self) -> None:
        self._tmux("kill-server")
        tmux_dir = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (tmux_dir / self.socket).unlink(missing_ok=True)


def _first_line(pane: str) -> str:
    return pane.splitlines()[0] if pane else ""


def _answer_shown(pane: str) -> bool:
    lines = [line.strip() for line in pane.splitlines()]
    asked = [i for i, line in enumerate(lines) if line.startswith("Q: ")]
    if not asked:
        return False
    after = lines[asked[-1] + 1] if asked[-1] + 1 < len(lines) else ""
    return bool(after) and after != "…" and not after.startswith("▊")


@contextmanager
def bench_daemon(tokens: int, threads: int) -> Iterator[tuple[httpx.Client, str, str]]:
    """A daemon answering at temperature 0 up to `tokens`; (client, url, GEMBA_HOME)."""
    with tempfile.TemporaryDirectory(prefix="gemba-bench-console-") as tmp:
        home, port = Path(tmp) / "home", free_port()
        home.mkdir()
        (home / "config.toml").write_text(
            f"[daemon]\nport = {port}\n[model]\nn_threads = {threads}\n"
            f"[generation]\ntemperature = 0.0\nmax_tokens = {tokens}\n", encoding="utf-8")
        log_file = Path(tmp) / "daemon.log"
        proc = start_daemon(home, port, log_file)
        health: dict[str, Any] = {}
        try:
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url, trust_env=False) as client:
                health = wait_healthy(client, proc, log_file)
                yield client, url, str(home)
        finally:
            stop_daemon(proc, health.get("worker_pid"))


def console_command(url: str, home: str) -> str:
    env = f"GEMBA_HOME={shlex.quote(home)} LANG=C.UTF-8"
    return (f"env {env} {shlex.quote(sys.executable)} -m appliance console --connect "
            f"{shlex.quote(url)} --operator {OPERATOR}")


def console_run(pane: Pane, client: httpx.Client) -> ConsoleRun:
    pane.keys("F9")  # sign out and in: the answer starts on a clear screen
    pane.wait(lambda p: "Badge or name" in p, "the sign-in form", 10)
    pane.keys("-l", OPERATOR)
    pane.keys("Enter")
    pane.wait(lambda p: f"operator {OPERATOR}" in _first_line(p) and "Q: " not in p,
              "a clear Ask screen", 10)
    pane.keys("-l", USER_PROMPT)
    pane.wait(lambda p: USER_PROMPT in p, "the typed question", 10)
    cpu_before = sum(pane.process.cpu_times()[:2])
    pane.keys("Enter")
    sent = time.perf_counter()
    first = pane.wait(_answer_shown, "the first answer text")
    pane.wait(lambda p: "| answering" not in _first_line(p), "the answer to end", 300,
              poll_s=0.5)
    done = time.perf_counter()
    cpu = sum(pane.process.cpu_times()[:2]) - cpu_before
    rss = pane.process.memory_info().rss / 2**20
    newest = client.get("/v1/appliance/conversations", params={"limit": 1}).json()["data"][0]
    answer = client.get(f"/v1/appliance/conversations/{newest['id']}").json()["messages"][-1]
    return ConsoleRun(int(answer["completion_tokens"]), first - sent, done - sent,
                      float(answer["tok_per_s"]), cpu, rss)


def health_idle(pane: Pane, daemon_pid: int, seconds: float) -> dict[str, float]:
    """CPU shares while the console shows Health and nobody asks anything."""
    pane.keys("F4")
    pane.wait(lambda p: "Free memory" in p and "GiB" in p, "the Health screen", 15)
    daemon = psutil.Process(daemon_pid)
    console_before = sum(pane.process.cpu_times()[:2])
    daemon_before = sum(daemon.cpu_times()[:2])
    time.sleep(seconds)
    console_cpu = sum(pane.process.cpu_times()[:2]) - console_before
    daemon_cpu = sum(daemon.cpu_times()[:2]) - daemon_before
    pane.keys("F2")
    return {"seconds": seconds, "console_cpu_percent": round(100 * console_cpu / seconds, 2),
            "daemon_cpu_percent": round(100 * daemon_cpu / seconds, 2)}


def median(values: list[float], digits: int = 3) -> float:
    return round(statistics.median(values), digits)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    api_runs: list[Any] = []
    console_runs: list[ConsoleRun] = []
    with bench_daemon(args.tokens, args.threads) as (client, url, home):
        daemon_pid = int(client.get("/healthz").json()["pid"])
        pane = Pane(console_command(url, home))
        try:
            pane.wait(lambda p: f"operator {OPERATOR}" in _first_line(p), "the console", 60)
            daemon_run(client, args.tokens)  # warm-ups, not counted
            console_run(pane, client)
            for _ in range(args.runs):
                api_runs.append(daemon_run(client, args.tokens))
                console_runs.append(console_run(pane, client))
            health = health_idle(pane, daemon_pid, args.idle_s)
            idle_rss = pane.process.memory_info().rss / 2**20
        finally:
            pane.close()
    api_rate = median([r.engine_tok_per_s for r in api_runs])
    console_rate = median([r.engine_tok_per_s for r in console_runs])
    return {
        "api": {"engine_tok_per_s_median": api_rate,
                "ttft_ms_median": median([r.ttft_s * 1000 for r in api_runs], 1),
                "tokens": [r.tokens for r in api_runs]},
        "console": {"engine_tok_per_s_median": console_rate,
                    "screen_ttft_ms_median": median([r.screen_ttft_s * 1000
                                                     for r in console_runs], 1),
                    "answer_s_median": median([r.answer_s for r in console_runs]),
                    "console_cpu_s_median": median([r.console_cpu_s for r in console_runs]),
                    "console_cpu_percent_of_answer": median(
                        [100 * r.console_cpu_s / r.answer_s for r in console_runs], 1),
                    "console_rss_mb_max": round(max(r.console_rss_mb for r in console_runs), 1),
                    "tokens": [r.tokens for r in console_runs]},
        "decode_ratio_console_to_api": round(console_rate / api_rate, 3) if api_rate else None,
        "health_screen_idle": {**health, "console_rss_mb": round(idle_rss, 1)},
        "runs": {"api": [r.to_dict() for r in api_runs],
                 "console": [vars(r) for r in console_runs]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--idle-s", type=float, default=20.0)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    load_start = load_average()
    results = measure(args)
    report = {"benchmark": "console", "timestamp_utc": datetime.now(UTC).isoformat(
                  timespec="seconds"),
              "machine": machine_info(),
              "load_average": {"start": load_start, "end": load_average()},
              "settings": {"runs": args.runs, "tokens": args.tokens, "threads": args.threads,
                           "terminal": "tmux 80x24", "poll_s": POLL_S, "temperature": 0.0,
                           "prompt": USER_PROMPT},
              **results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    summary = {k: report[k] for k in ("api", "console", "decode_ratio_console_to_api",
                                      "health_screen_idle")}
    print(json.dumps(summary, indent=2))
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
