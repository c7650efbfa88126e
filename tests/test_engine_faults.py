"""The engine worker may die (llama.cpp abort, segfault); the daemon, history and console stay."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.conftest import LONG_ANSWER_PROMPT, GembaHome

pytestmark = pytest.mark.model


def _wait_state(home: GembaHome, wanted: set[str], timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = home.health()
        if health and health["state"] in wanted:
            return health
        time.sleep(0.05)
    raise AssertionError(f"engine never reached {wanted}; last: {home.health()}")


def test_worker_crash_mid_answer_fails_cleanly_and_the_engine_restarts(
        gemba_home: GembaHome) -> None:
    gemba_home.start_daemon()
    before = gemba_home.health()
    failure = None
    with httpx.stream("POST", f"{gemba_home.url}/v1/chat/completions", timeout=60,
                      json={"messages": [{"role": "user", "content": LONG_ANSWER_PROMPT}],
                            "stream": True, "max_tokens": 1500, "temperature": 0}) as response:
        for n, line in enumerate(response.iter_lines()):
            if n == 3:
                os.kill(before["worker_pid"], signal.SIGSEGV)  # what a llama.cpp crash does
            if line.startswith("data: {\"error\""):
                failure = line
    assert failure is not None and "stopped unexpectedly" in failure
    # The daemon itself never went away; the engine comes back by itself.
    after = _wait_state(gemba_home, {"ready"})
    assert after["pid"] == before["pid"]
    assert after["worker_pid"] != before["worker_pid"]
    assert after["restarts"] == 1
    # History kept the question and what had been answered, marked as failed.
    last = gemba_home.conversation(gemba_home.history()[0]["id"])["messages"]
    assert [m["role"] for m in last] == ["user", "assistant"]
    assert last[-1]["finish_reason"] == "error"
    # And the next question is answered.
    answer = httpx.post(f"{gemba_home.url}/v1/chat/completions", timeout=60,
                        json={"messages": [{"role": "user", "content": "Say OK."}],
                              "max_tokens": 5})
    assert answer.status_code == 200


def test_while_restarting_questions_get_503_and_health_says_so(gemba_home: GembaHome) -> None:
    gemba_home.start_daemon()
    os.kill(gemba_home.health()["worker_pid"], signal.SIGKILL)
    health = _wait_state(gemba_home, {"restarting", "loading"})
    assert "restart" in health["detail"] or health["state"] == "loading"
    response = httpx.post(f"{gemba_home.url}/v1/chat/completions", timeout=60,
                          json={"messages": [{"role": "user", "content": "Say OK."}]})
    if response.status_code != 200:  # it may already be back
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "engine_error"
    _wait_state(gemba_home, {"ready"})
