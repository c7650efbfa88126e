"""Governor with the real engine: a simulated hot box heated by llama.cpp's real decode rate.

This machine has no temperature sensors, so the daemon is started with GEMBA_SIMULATED_THERMAL:
an RC box whose power follows the engine's measured tok/s. The engine answers continuously; the
governor's actuators (pauses between tokens, fewer threads, holding the queue) must really
lower the rate, and the simulated temperature must settle under the warning limit.

Prints a timeline (every few seconds: temperature, mode, duty, real tok/s) and the governor's
events with the rate before and after each change; writes bench/results/governor_real.json.

    .venv/bin/python bench/governor_real.py [--seconds 90]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.daemon import free_port, start_daemon  # noqa: E402 - bench/ is not on sys.path

BOX = "ambient_c=40,r_c_per_w=4,c_j_per_c=3.75,idle_w=1,load_w=10,full_tok_per_s=80"
LIMITS = {"cpu_careful_c": 55, "cpu_warning_c": 65, "cpu_critical_c": 75}
PROMPT = "List the numbers from 1 to 1000 separated by commas."


def _start(home: Path, port: int) -> subprocess.Popen[bytes]:
    limits = "".join(f"{k} = {v}\n" for k, v in LIMITS.items())
    return start_daemon(home, port, f"[budgets]\n{limits}sensors_expected = true\n",
                        {"GEMBA_SIMULATED_THERMAL": BOX})


def _load(url: str, stop: threading.Event) -> None:
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 400,
            "temperature": 0}
    while not stop.is_set():
        try:
            httpx.post(f"{url}/v1/chat/completions", json=body, timeout=180)
        except httpx.HTTPError:
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/governor_real.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        home, port = Path(folder), free_port()
        process = _start(home, port)
        stop = threading.Event()
        worker = threading.Thread(target=_load, args=(f"http://127.0.0.1:{port}", stop))
        try:
            worker.start()
            time.sleep(args.seconds)
        finally:
            stop.set()
            worker.join(timeout=180)
            process.terminate()
            process.wait(timeout=30)
        samples = sqlite3.connect(home / "data/telemetry.db").execute(
            "select t, cpu_temp_c, mode, duty, tok_per_s from samples order by t").fetchall()
        events = sqlite3.connect(home / "data/gemba.db").execute(
            "select at, from_mode, to_mode, reason, tok_per_s_before, tok_per_s_after "
            "from governor_events order by id").fetchall()
    start = samples[0][0]
    timeline = [{"t_s": round(t - start, 1), "temp_c": temp, "mode": mode, "duty": duty,
                 "tok_per_s": rate} for t, temp, mode, duty, rate in samples]
    tail = timeline[-15:]
    result = {
        "measured_at": datetime.now(UTC).isoformat(), "box": BOX, "limits": LIMITS,
        "peak_temp_c": max(s["temp_c"] for s in timeline),
        "settled_temp_c_max_last_15s": max(s["temp_c"] for s in tail),
        "tok_per_s_first_5s": _mean(s["tok_per_s"] for s in timeline[2:7]),
        "tok_per_s_last_15s": _mean(s["tok_per_s"] for s in tail),
        "duty_last_15s": _mean(s["duty"] for s in tail),
        "events": [dict(zip(("at", "from", "to", "reason", "tok_per_s_before",
                             "tok_per_s_after"), e, strict=True)) for e in events],
        "timeline": timeline,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    for row in timeline[::5]:
        rate = row["tok_per_s"] or 0.0
        print(f"{row['t_s']:6.0f} s  {row['temp_c']:5.1f} °C  {row['mode']:<8} duty "
              f"{row['duty']:.2f}  {rate:6.1f} tok/s")
    for event in result["events"]:
        print(f"event {event['from']} -> {event['to']}: {event['reason']} "
              f"(tok/s {event['tok_per_s_before'] or 0:.1f} -> {event['tok_per_s_after'] or 0:.1f})")
    print(f"peak {result['peak_temp_c']} °C (critical {LIMITS['cpu_critical_c']}), last 15 s at "
          f"most {result['settled_temp_c_max_last_15s']} °C (warning {LIMITS['cpu_warning_c']}), "
          f"{result['tok_per_s_first_5s']:.1f} -> {result['tok_per_s_last_15s']:.1f} tok/s")
    return 0


def _mean(values) -> float:  # type: ignore[no-untyped-def]
    numbers = [v for v in values if v is not None]
    return round(sum(numbers) / len(numbers), 2) if numbers else 0.0


if __name__ == "__main__":
    sys.exit(main())
