"""Soak: many requests of every kind against one real daemon; does anything grow or break?

1,000 requests by default from 3 clients at once, mixed: plain and streamed answers, answers
cancelled through the API, streams the client drops mid-answer, plain requests the client gives
up on, and bad requests (which must get a 4xx). The daemon's and the engine worker's RSS and open
files are sampled every second, and GET /metrics is scraped every second (goal: 50 ms or less
under load). Reports growth after warm-up (goal: flat) and every non-2xx answer by kind;
writes bench/results/soak.json.

    .venv/bin/python bench/soak.py [--requests 1000] [--clients 3]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.daemon import free_port, start_daemon  # noqa: E402 - bench/ is not on sys.path

KINDS = ("plain", "stream", "cancel", "drop_stream", "give_up", "bad_request")
WEIGHTS = (30, 30, 10, 10, 10, 10)
QUESTIONS = ("What does alarm E-104 mean?", "List three checks before starting a pump.",
             "What is a lockout tag?", "Say OK.", "List the numbers from 1 to 100.")


def _start(home: Path, port: int) -> subprocess.Popen[bytes]:
    return start_daemon(home, port, "max_queue = 16\n[generation]\nmax_tokens = 24\n")


class Sampler(threading.Thread):
    """RSS and open files of the daemon and its worker, once a second."""

    def __init__(self, daemon_pid: int) -> None:
        super().__init__(daemon=True)
        self.daemon_process = psutil.Process(daemon_pid)
        self.samples: list[dict[str, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stop.wait(1.0):
            try:
                children = self.daemon_process.children()
                row = {"t_s": round(time.monotonic() - started, 1),
                       "daemon_rss_mib": self.daemon_process.memory_info().rss / 2**20,
                       "daemon_open_files": self.daemon_process.num_fds(),
                       "worker_rss_mib": sum(c.memory_info().rss for c in children) / 2**20,
                       "worker_open_files": sum(c.num_fds() for c in children)}
            except psutil.Error:
                continue
            self.samples.append(row)


class Scraper(threading.Thread):
    """GET /metrics once a second, as Prometheus would, timing each scrape."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.scrape_ms: list[float] = []
        self.families: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10, trust_env=False) as client:
            while not self.stop.wait(1.0):
                started = time.perf_counter()
                try:
                    response = client.get(f"{self.url}/metrics")
                except httpx.HTTPError:
                    continue
                self.scrape_ms.append((time.perf_counter() - started) * 1000)
                self.families = {f.name for f in text_string_to_metric_families(response.text)
                                 if f.name.startswith("gemba_")}

    def report(self) -> dict[str, Any]:
        times = sorted(self.scrape_ms)

        def at(share: float) -> float | None:
            return round(times[min(len(times) - 1, int(share * len(times)))], 2) if times \
                else None

        return {"scrapes": len(times), "p50_ms": at(0.5), "p99_ms": at(0.99),
                "max_ms": at(1.0), "goal_ms": 50, "gemba_families": sorted(self.families)}


def _one(client: httpx.Client, kind: str, rng: random.Random) -> str:
    """One request of `kind`; returns its outcome ("200", "503 busy", "dropped", …)."""
    body: dict[str, Any] = {"messages": [{"role": "user", "content": rng.choice(QUESTIONS)}],
                            "temperature": 0.2}
    if kind == "bad_request":
        body = rng.choice([{"messages": []}, {"messages": [{"role": "user", "content": 1}]},
                           {**body, "temperature": 9}, {**body, "frobnicate": True}])
        response = client.post("/v1/chat/completions", json=body)
        return f"{response.status_code} {response.json()['error']['type']}"
    if kind == "plain":
        return _status(client.post("/v1/chat/completions", json=body))
    if kind == "give_up":
        try:
            return _status(client.post("/v1/chat/completions", json=body, timeout=0.3))
        except httpx.TimeoutException:
            return "gave up"
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
        if response.status_code != 200:
            response.read()
            return _status(response)
        for n, line in enumerate(response.iter_lines()):
            if kind == "drop_stream" and n == 3:
                return "dropped"
            if kind == "cancel" and line.startswith("data: {") and n == 2:
                answer_id = json.loads(line[6:]).get("gemba", {}).get("answer_id")
                if answer_id:
                    client.post(f"/v1/appliance/answers/{answer_id}/cancel")
        return "200"


def _status(response: httpx.Response) -> str:
    if response.status_code == 200:
        return "200"
    try:
        kind = response.json()["error"]["type"]
    except (ValueError, KeyError):
        kind = "?"
    return f"{response.status_code} {kind}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/soak.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        daemon = _start(Path(tmp), port)
        sampler = Sampler(daemon.pid)
        sampler.start()
        scraper = Scraper(f"http://127.0.0.1:{port}")
        scraper.start()
        outcomes: Counter[tuple[str, str]] = Counter()
        lock = threading.Lock()
        todo = iter(range(args.requests))
        started = time.monotonic()

        def client_loop(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                              trust_env=False) as client:
                while True:
                    with lock:
                        n = next(todo, None)
                    if n is None:
                        return
                    kind = rng.choices(KINDS, WEIGHTS)[0]
                    try:
                        outcome = _one(client, kind, rng)
                    except httpx.HTTPError as exc:
                        outcome = f"transport {type(exc).__name__}"
                    with lock:
                        outcomes[(kind, outcome)] += 1
                        done = sum(outcomes.values())
                    if done % 50 == 0:
                        print(f"  {done}/{args.requests} requests", file=sys.stderr, flush=True)

        clients = [threading.Thread(target=client_loop, args=(seed,))
                   for seed in range(args.clients)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        elapsed = time.monotonic() - started
        time.sleep(2)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
        sampler.stop.set()
        scraper.stop.set()
        scraper.join(timeout=15)
        daemon.terminate()
        daemon.wait(timeout=30)
    report = _report(args, outcomes, sampler.samples, elapsed, health)
    report["metrics_scrape"] = scraper.report()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))


def _report(args: argparse.Namespace, outcomes: Counter[tuple[str, str]],
            samples: list[dict[str, float]], elapsed: float,
            health: dict[str, Any]) -> dict[str, Any]:
    warm = samples[len(samples) // 5:] or samples  # the first fifth is warm-up
    growth = {key: round(warm[-1][key] - warm[0][key], 2) if warm else None
              for key in ("daemon_rss_mib", "worker_rss_mib", "daemon_open_files",
                          "worker_open_files")}
    non_2xx = {f"{kind}: {outcome}": count for (kind, outcome), count in sorted(outcomes.items())
               if not outcome.startswith("200")}
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "requests": args.requests, "clients": args.clients, "elapsed_s": round(elapsed, 1),
        "outcomes": {f"{kind}: {outcome}": count
                     for (kind, outcome), count in sorted(outcomes.items())},
        "non_2xx_by_kind": non_2xx,
        "server_errors": sum(c for (_, o), c in outcomes.items() if o.startswith("5")
                             and "busy" not in o),
        "transport_errors": sum(c for (_, o), c in outcomes.items() if o.startswith("transport")),
        "growth_after_warmup": growth,
        "goal": "RSS and open files flat after warm-up; no 5xx but busy; no transport errors",
        "engine_state_after": health.get("engine_state"),
        "restarts": health.get("restarts"),
        "samples": samples,
    }


if __name__ == "__main__":
    main()
