"""FAULTS.md 11 and 16: a backup's lock, and clients that give up, never lose a question or leave
the engine answering nobody.

The daemons here answer with the scripted engine: what is tested is the store, the queue and
cancellation around it, and a scripted answer has an exact length and pace."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from appliance.client import ApplianceClient
from appliance.console.app import ConsoleApp
from tests.conftest import FAKE_ANSWER, FAKE_LONG_ANSWER, LONG_ANSWER_PROMPT, GembaHome
from tests.console_pilot import run_closing, screen_text, wait_for


@contextmanager
def held_by_a_backup(db_file: Path, hold_s: float) -> Iterator[threading.Thread]:
    """Another connection holds the database's write lock for `hold_s`, as a backup tool does."""
    conn = sqlite3.connect(db_file, timeout=0, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("create table if not exists backup_marker (x)")

    def release() -> None:
        time.sleep(hold_s)
        conn.rollback()
        conn.close()

    releaser = threading.Thread(target=release)
    releaser.start()
    try:
        yield releaser
    finally:
        releaser.join()


def _ask(home: GembaHome, question: str, **extra: object) -> httpx.Response:
    return httpx.post(f"{home.url}/v1/chat/completions", timeout=120,
                      json={"messages": [{"role": "user", "content": question}],
                            "max_tokens": 8, "temperature": 0, **extra})


def _wait_engine(home: GembaHome, state: str, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        health = home.health()
        if health and health["engine_state"] == state:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"engine not {state} after {timeout_s} s: {home.health()}")


def test_a_lock_shorter_than_the_busy_timeout_delays_the_question_and_loses_nothing(
        fake_home: GembaHome) -> None:
    fake_home.start_daemon()
    _ask(fake_home, "Say OK.")  # the schema exists and the engine is warm
    with held_by_a_backup(fake_home.db_file, 1.5):
        first = _ask(fake_home, "What is a pump?")
    assert first.status_code == 200, first.text
    second = _ask(fake_home, "What is a valve?")
    assert second.status_code == 200, second.text
    questions = [c["title"] for c in fake_home.history()]
    assert questions[:2] == ["What is a valve?", "What is a pump?"]
    for body in (first.json(), second.json()):
        stored = fake_home.conversation(body["gemba"]["conversation_id"])["messages"]
        assert [m["role"] for m in stored] == ["user", "assistant"]
        assert stored[1]["content"] == FAKE_ANSWER


def test_a_lock_past_the_busy_timeout_says_storage_busy_and_the_engine_stays_free(
        fake_home: GembaHome) -> None:
    fake_home.start_daemon()
    _ask(fake_home, "Say OK.")
    with held_by_a_backup(fake_home.db_file, 7.0):
        failed = _ask(fake_home, LONG_ANSWER_PROMPT, max_tokens=1500)
        assert failed.status_code == 503
        error = failed.json()["error"]
        assert error["type"] == "storage_error"
        assert "storage busy" in error["message"] and "not stored" in error["message"]
        assert "backup" in error["message"] + error["hint"]
        # The engine stopped the job nobody waits for, even while the lock is still held.
        _wait_engine(fake_home, "ready", timeout_s=5)
    after = _ask(fake_home, "What is a valve?")
    assert after.status_code == 200, after.text
    assert fake_home.history()[0]["title"] == "What is a valve?"


def test_a_plain_request_abandoned_by_its_client_frees_the_engine_and_is_kept_cancelled(
        fake_home: GembaHome) -> None:
    fake_home.start_daemon()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{fake_home.url}/v1/chat/completions", timeout=1.5,
                   json={"messages": [{"role": "user", "content": LONG_ANSWER_PROMPT}],
                         "max_tokens": 1500, "temperature": 0})
    freed_after_s = _wait_engine(fake_home, "ready", timeout_s=10)
    assert freed_after_s < 5, "the engine kept answering a client that had gone"
    stored = fake_home.conversation(fake_home.history()[0]["id"])["messages"]
    assert stored[-1]["role"] == "assistant"
    assert stored[-1]["finish_reason"] == "cancelled"
    assert 0 < stored[-1]["completion_tokens"] < 1000
    assert FAKE_LONG_ANSWER.startswith(stored[-1]["content"])
    assert _ask(fake_home, "Say OK.").status_code == 200


def test_low_disk_space_is_warned_about_while_the_appliance_keeps_answering(
        fake_home: GembaHome) -> None:
    """FAULTS.md 15: the warning comes before writes fail (a threshold above this disk's free
    space stands in for a nearly full disk)."""
    fake_home.write_config(fake_home.config_file.read_text().replace(
        "[daemon]\n", "[daemon]\ndisk_warning_bytes = 1000000000000000\n"))
    fake_home.start_daemon()
    health = httpx.get(f"{fake_home.url}/healthz", timeout=5)
    assert health.status_code == 200
    storage = health.json()["storage"]
    assert storage["warning"] is True and storage["free_bytes"] > 0
    assert "storage almost full" in storage["message"]
    status = fake_home.gemba("status", check=True).stdout
    assert "WARNING   storage almost full" in status
    assert _ask(fake_home, "Say OK.").status_code == 200
    assert fake_home.history(), "answers are still stored"


def test_a_question_cut_off_by_kill_9_is_marked_interrupted_at_the_next_start(
        fake_home: GembaHome) -> None:
    """FAULTS.md 13: after a kill -9 mid-answer the database passes its integrity check, the
    question is there, and history says its answer was interrupted instead of showing it open."""
    daemon = fake_home.start_daemon()
    worker_pid = fake_home.health()["worker_pid"]
    with httpx.stream("POST", f"{fake_home.url}/v1/chat/completions", timeout=60,
                      json={"messages": [{"role": "user", "content": LONG_ANSWER_PROMPT}],
                            "stream": True, "max_tokens": 1500, "temperature": 0}) as response:
        for n, _ in enumerate(response.iter_lines()):
            if n == 5:
                daemon.kill()
                os.kill(worker_pid, signal.SIGKILL)
                break
    daemon.wait()
    conn = sqlite3.connect(fake_home.db_file)
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    conn.close()
    fake_home.start_daemon()
    messages = fake_home.conversation(fake_home.history()[0]["id"])["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == LONG_ANSWER_PROMPT
    assert messages[1]["finish_reason"] == "interrupted"


def test_a_burst_beyond_the_queue_bound_is_told_to_retry_and_running_answers_finish(
        fake_home: GembaHome) -> None:
    """FAULTS.md 10: `n_parallel` answers run, `max_queue` wait, the rest get 429 with
    Retry-After at once; no connection is reset and the answers already running are not
    interrupted."""
    fake_home.write_config(fake_home.config_file.read_text().replace(
        "[daemon]\n", "[daemon]\nmax_queue = 1\n") + "\n[model]\nn_parallel = 2\n")
    fake_home.use_fake_engine(rules=[{"when": LONG_ANSWER_PROMPT, "answer": FAKE_LONG_ANSWER,
                                      "tokens_per_s": 10}])  # 4 s each: the burst comes first
    fake_home.start_daemon()
    results: list[httpx.Response] = []

    def ask() -> None:
        results.append(_ask(fake_home, LONG_ANSWER_PROMPT, max_tokens=40))

    first = threading.Thread(target=ask)
    first.start()
    _wait_engine(fake_home, "answering", timeout_s=30)
    burst = [threading.Thread(target=ask) for _ in range(8)]  # one more runs, one waits
    for thread in burst:
        thread.start()
    for thread in [first, *burst]:
        thread.join(timeout=120)
    codes = sorted(r.status_code for r in results)
    assert len(results) == 9
    assert codes.count(200) == 3, codes  # the two running and the one that waited
    assert codes.count(429) == 6, codes
    for refused in (r for r in results if r.status_code == 429):
        assert refused.headers["Retry-After"].isdigit()
        assert refused.json()["error"]["type"] == "busy"
    for answered in (r for r in results if r.status_code == 200):
        assert answered.json()["choices"][0]["finish_reason"] == "length"
        assert answered.json()["choices"][0]["message"]["content"] == "".join(
            f"{n}, " for n in range(1, 41))  # the scripted list, cut at max_tokens


def test_the_console_status_line_warns_the_operator_when_storage_is_nearly_full(
        fake_home: GembaHome) -> None:
    fake_home.write_config(fake_home.config_file.read_text().replace(
        "[daemon]\n", "[daemon]\ndisk_warning_bytes = 1000000000000000\n"))
    fake_home.start_daemon()
    client = ApplianceClient(fake_home.url, client_kind="console")
    app = ConsoleApp(client, "smollm2-135m-instruct-q4_1", operator="W1", lang="zh")

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: "存储空间将满" in screen_text(pilot.app),
                           "the storage warning on the status line", 30)

    run_closing(client, scenario)
