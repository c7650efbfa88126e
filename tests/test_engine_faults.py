"""The engine worker may die (llama.cpp abort, segfault); the daemon, history and console stay.

A crash mid-answer is tested on the real model (a segfault while llama.cpp decodes, then a real
reload); the window while the engine restarts, on the scripted engine, whose slow load holds
that window open long enough to be asked in."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAKE_ANSWER, LONG_ANSWER_PROMPT, GembaHome
from tests.test_console import _wait_pane, terminal


def _wait_state(home: GembaHome, wanted: set[str], timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = home.health()
        if health and health["state"] in wanted:
            return health
        time.sleep(0.05)
    raise AssertionError(f"engine never reached {wanted}; last: {home.health()}")


@pytest.mark.model
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


def test_while_restarting_questions_get_503_and_health_says_so(fake_home: GembaHome) -> None:
    fake_home.use_fake_engine(load_s=4)  # the reload takes 4 s: the question comes inside it
    fake_home.start_daemon()
    os.kill(fake_home.health()["worker_pid"], signal.SIGKILL)
    health = _wait_state(fake_home, {"restarting", "loading"})
    assert "restart" in health["detail"] or health["state"] == "loading"
    response = httpx.post(f"{fake_home.url}/v1/chat/completions", timeout=60,
                          json={"messages": [{"role": "user", "content": "Say OK."}]})
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "not_ready"
    assert response.headers["Retry-After"].isdigit()
    assert _wait_state(fake_home, {"ready"})["restarts"] == 1
    answered = httpx.post(f"{fake_home.url}/v1/chat/completions", timeout=60,
                          json={"messages": [{"role": "user", "content": "Say OK."}]})
    assert answered.json()["choices"][0]["message"]["content"] == FAKE_ANSWER


@pytest.mark.model
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_model_that_cannot_load_still_opens_the_console_with_the_reason(
        gemba_home: GembaHome, tmp_path: Path) -> None:
    """FAULTS.md 4: the engine cannot get the memory its context needs. The console opens
    (it used to exit 70 with a shell error), and says why, with what was needed and what is
    there, for the engineer the operator calls."""
    gemba_home.write_config(gemba_home.config_file.read_text() + "[model]\nn_ctx = 262144\n")
    script = tmp_path / "console.sh"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in gemba_home.env.items())
    # 4 GB of address space: the model loads, its KV cache (4 slots x 6 GB) cannot be allocated.
    script.write_text(f"#!/bin/sh\n{exports}export LANG=C.UTF-8\nulimit -v 4000000\n"
                      f"cd {shlex.quote(str(gemba_home.home))}\n"
                      f"{shlex.quote(sys.executable)} -m appliance console --operator W1\n"
                      "echo console-exit=$?\nsleep 60\n", encoding="utf-8")
    script.chmod(0o755)
    with terminal(script) as socket:
        pane = _wait_pane(socket, lambda p: "could not create its context" in " ".join(p.split()),
                          "the failure's reason on the console", 120)
        assert "console-exit" not in pane, pane
        assert "Gemba | model" in pane
        health = gemba_home.health()
        assert health is not None and health["state"] == "failed"
        assert "MiB of memory available" in health["detail"]
        assert "KV cache" in health["detail"]


@pytest.mark.model
def test_the_same_question_at_temperature_0_gets_the_same_answer_every_time(
        gemba_home: GembaHome) -> None:
    """Right after start-up and later alike: an operator who asks again gets the same words."""
    gemba_home.start_daemon()
    body = {"messages": [{"role": "user",
                          "content": "What should an operator check when a pump vibrates?"}],
            "temperature": 0, "max_tokens": 40}
    answers = [httpx.post(f"{gemba_home.url}/v1/chat/completions", json=body, timeout=120)
               .json()["choices"][0]["message"]["content"] for _ in range(3)]
    assert answers[0] == answers[1] == answers[2]
