"""The governor with the real engine: actuators change the real decode rate; and a box heated by
the decode rate (the simulated sensor: this machine has none) is held under its limits, visibly.

The box tests answer with the scripted engine at a fixed rate: the real model's rate follows
whatever else the machine runs (3 tok/s on two busy cores never heats the box), and what is
tested there is the governor, whose pacing acts in the real worker all the same."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from appliance.inference.protocol import (
    EngineConfig,
    Finished,
    Generate,
    GenerationRequest,
    Ready,
    Shutdown,
    Throttle,
)
from appliance.inference.worker import run_worker
from appliance.models import resolve_verified
from appliance.store.telemetry import TelemetryStore
from tests.conftest import FAKE_LONG_ANSWER, LONG_ANSWER_PROMPT, GembaHome

# A small, fast-heating box: full load would settle at 40 + 4 * (1 + 10) = 84 °C, far above
# its critical limit of 75 °C; its time constant is 4 * 3.75 = 15 s. The scripted engine
# decodes at that full rate.
FULL_TOK_PER_S = 80
HOT_BOX = ("ambient_c=40,r_c_per_w=4,c_j_per_c=3.75,idle_w=1,load_w=10,"
           f"full_tok_per_s={FULL_TOK_PER_S}")
LIMITS = "cpu_careful_c = 55\ncpu_warning_c = 65\ncpu_critical_c = 75\nsensors_expected = true\n"


def _rate(conn, job_id: int) -> float:  # type: ignore[no-untyped-def]
    conn.send(Generate(job_id, GenerationRequest(
        ({"role": "user", "content": LONG_ANSWER_PROMPT},), max_tokens=96, temperature=0.0)))
    while True:
        job, event = conn.recv()
        if job == job_id and isinstance(event, Finished):
            assert event.tok_per_s is not None
            return event.tok_per_s


@pytest.mark.model
def test_worker_pace_and_threads_change_the_real_decode_rate() -> None:
    _, path = resolve_verified("smollm2-135m-instruct-q4_1", Path("/nonexistent"))
    config = EngineConfig("smollm2", str(path), "x", 1024, 2, 512, 0)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    worker = context.Process(target=run_worker, args=(child, config), daemon=True)
    worker.start()
    try:
        assert isinstance(parent.recv(), Ready)
        _rate(parent, 1)  # warm-up
        # Full speed is measured on both sides of each throttled run, so a machine that gets
        # busier or quieter meanwhile cannot fake or hide the effect.
        full_before = _rate(parent, 2)
        parent.send(Throttle(0.25, 2))
        paced = _rate(parent, 3)
        parent.send(Throttle(1.0, 2))
        full_between = _rate(parent, 4)
        parent.send(Throttle(1.0, 1))
        one_thread = _rate(parent, 5)
        parent.send(Throttle(1.0, 2))
        full_after = _rate(parent, 6)
    finally:
        parent.send(Shutdown())
        worker.join(timeout=10)
    assert paced < 0.6 * max(full_before, full_between)  # 25 % duty: pauses between tokens
    assert one_thread < 0.85 * max(full_between, full_after)  # one thread on a live context


def _keep_answering(home: GembaHome, stop: threading.Event) -> None:
    body = {"messages": [{"role": "user", "content": LONG_ANSWER_PROMPT}],
            "max_tokens": 400, "temperature": 0}
    while not stop.is_set():
        try:
            httpx.post(f"{home.url}/v1/chat/completions", json=body, timeout=120)
        except httpx.HTTPError:
            time.sleep(0.2)


def test_governor_holds_a_hot_box_under_its_limits_and_says_so(fake_home: GembaHome) -> None:
    fake_home.use_fake_engine(rules=[{"when": LONG_ANSWER_PROMPT, "answer": FAKE_LONG_ANSWER,
                                      "tokens_per_s": FULL_TOK_PER_S}])
    fake_home.extra_env["GEMBA_SIMULATED_THERMAL"] = HOT_BOX
    fake_home.write_config(f"[daemon]\nport = {fake_home.port}\n[budgets]\n{LIMITS}")
    fake_home.start_daemon()
    stop = threading.Event()
    load = threading.Thread(target=_keep_answering, args=(fake_home, stop), daemon=True)
    load.start()
    seen_throttled = False
    try:
        deadline = time.monotonic() + 55
        while time.monotonic() < deadline:
            health = fake_home.health() or {}
            seen_throttled |= health.get("state") == "throttled"
            time.sleep(0.5)
    finally:
        stop.set()
        load.join(timeout=120)
    status = json.loads(fake_home.gemba("status", "--json", check=True).stdout)
    assert status["running"] and seen_throttled
    governor = status["governor"]  # what the console says in the operator's language
    assert governor["cause"] == "figure" and governor["limiting"] == "cpu_temp_c"
    events = status["events"]
    first = events[-1]
    assert (first["from_mode"], first["to_mode"]) == ("normal", "slowed")
    assert "cpu temperature" in first["reason"] and first["figures"]["cpu_temp_c"] >= 55
    # The governor measured what its action did to the decode rate (the worker paces it).
    measured = [e for e in events if e["tok_per_s_before"] and e["tok_per_s_after"]]
    assert any(e["tok_per_s_after"] < 0.8 * e["tok_per_s_before"] for e in measured)
    # The simulated box never reached critical, and in the last seconds it sat under warning.
    store = TelemetryStore(fake_home.home / "data" / "telemetry.db")
    temps = [row["cpu_temp_c"] for row in store.db.query(
        "select cpu_temp_c from samples order by t")]
    store.close()
    assert max(temps) < 75
    assert max(temps[-10:]) < 65
    assert status["last_sample"]["cpu_temp_c"] < 65


def test_telemetry_history_stays_bounded(tmp_path: Path) -> None:
    from appliance.hardware.telemetry import Sample

    store = TelemetryStore(tmp_path / "telemetry.db", raw_hours=1, minute_days=1)
    start = 1_700_000_000.0
    for second in range(0, 3 * 86400, 20):  # three days, a sample every 20 s
        store.record(Sample(float(second), 50.0 + second % 7, None, None, None, (), 1 << 30,
                            None, 0.0), "normal", 1.0, 50.0, wall_t=start + second)
    store.roll_up(now=start + 3 * 86400)
    raw, minutes, hours = (store.count(t) for t in ("samples", "samples_1m", "samples_1h"))
    hottest = store.db.execute("select max(cpu_temp_c) from samples_1h").fetchone()[0]
    store.close()
    assert raw <= 3600 // 20 + 1  # the last hour only
    assert minutes <= 24 * 60 + 1  # the last day in minutes
    assert 40 <= hours <= 3 * 24  # older history in hours
    assert hottest == 56.0  # summaries keep the worst reading, not the mean
    with sqlite3.connect(tmp_path / "telemetry.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_telemetry_roll_up_in_parts_keeps_the_peak(tmp_path: Path) -> None:
    from appliance.hardware.telemetry import Sample

    store = TelemetryStore(tmp_path / "telemetry.db", raw_hours=1, minute_days=1)
    start = 1_700_000_000.0 - 1_700_000_000.0 % 60  # a minute boundary
    for second in range(0, 120):
        temp = 99.0 if second == 10 else 50.0  # one spike early in the first minute
        store.record(Sample(float(second), temp, None, None, None, (), 1 << 30, None, 0.0),
                     "normal", 1.0, 50.0, wall_t=start + second)
    # Two roll-ups whose cut-offs fall inside the first minute, then one after it.
    for cut in (start + 30, start + 45, start + 90):
        store.roll_up(now=cut + 3600)
    first_minute = store.db.execute("select cpu_temp_c from samples_1m where t = ?",
                                    [start]).fetchone()
    store.close()
    assert first_minute == (99.0,)


def test_critical_box_answers_waiting_requests_and_stops_cleanly(fake_home: GembaHome) -> None:
    # A cabinet already above the critical limit: the governor refuses work from the first tick.
    fake_home.extra_env["GEMBA_SIMULATED_THERMAL"] = (
        "ambient_c=80,r_c_per_w=1,c_j_per_c=10,idle_w=1,load_w=1,full_tok_per_s=80")
    fake_home.write_config(f"[daemon]\nport = {fake_home.port}\n[budgets]\n{LIMITS}")
    fake_home.start_daemon()
    deadline = time.monotonic() + 30
    while (fake_home.health() or {}).get("governor", {}).get("mode") != "refused":
        assert time.monotonic() < deadline, "the governor never refused"
        time.sleep(0.2)
    response = httpx.post(f"{fake_home.url}/v1/chat/completions", timeout=60,
                          json={"messages": [{"role": "user", "content": "Say OK."}]})
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert "stopped by the governor" in response.json()["error"]["message"]
    stopped = fake_home.gemba("stop", timeout=60)
    assert stopped.returncode == 0 and "Stopped" in stopped.stderr
