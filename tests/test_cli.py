"""What a person at the shell sees: `gemba ask`, Ctrl-C, `gemba stop`, history, clear errors.

`gemba ask --json` answers with the real model; the rest is the daemon's life and the shell's
handling around an answer, so their daemons run the scripted engine and its exact text."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from appliance.models import CATALOG, locate
from tests.conftest import FAKE_ANSWER, FAKE_LONG_ANSWER, LONG_ANSWER_PROMPT, PYTHON, GembaHome

JSON_FIELDS = {"answer", "model_id", "model_sha256", "prompt_tokens", "completion_tokens",
               "ttft_s", "tok_per_s", "finish_reason", "conversation_id"}


@pytest.mark.model
def test_ask_starts_a_daemon_and_prints_the_json_object(gemba_home: GembaHome) -> None:
    result = gemba_home.gemba("ask", "--json", "--temperature", "0", "--max-tokens", "40",
                              "What does alarm E-104 on a conveyor mean?", check=True)
    answer = json.loads(result.stdout)
    assert JSON_FIELDS <= answer.keys()
    assert answer["answer"].strip()
    assert answer["model_id"] == "smollm2-135m-instruct-q4_1"
    assert answer["model_sha256"] == CATALOG["smollm2-135m-instruct-q4_1"].sha256
    assert answer["finish_reason"] in ("stop", "length")
    assert answer["completion_tokens"] >= 1 and answer["prompt_tokens"] >= 1
    assert answer["ttft_s"] > 0 and answer["tok_per_s"] > 0
    assert "Starting the Gemba appliance daemon" in result.stderr
    # The answer is in history, and the daemon stays up for the next question.
    history = gemba_home.history()
    assert history[0]["id"] == answer["conversation_id"]
    assert gemba_home.health()["ready"]


def test_ask_streams_plain_text_and_history_shows_it(fake_home: GembaHome) -> None:
    result = fake_home.gemba("ask", "--temperature", "0", "--max-tokens", "30",
                              "Name one check before restarting a stopped conveyor.", check=True)
    assert result.stdout.strip() == FAKE_ANSWER
    listing = fake_home.gemba("history", check=True).stdout
    assert "Name one check before restarting a stopped conveyor." in listing
    shown = fake_home.gemba("history", "show", "1", check=True).stdout
    assert FAKE_ANSWER in shown


def test_ctrl_c_cancels_and_keeps_the_partial_answer(fake_home: GembaHome) -> None:
    fake_home.start_daemon()
    process = fake_home.start_gemba("ask", "--temperature", "0", "--max-tokens", "1500",
                                     LONG_ANSWER_PROMPT)
    assert process.stdout is not None
    streamed = process.stdout.read(20)  # the answer has begun to arrive
    process.send_signal(signal.SIGINT)
    rest, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "cancelled" in stderr and "Traceback" not in stderr
    conversation_id = fake_home.history()[0]["id"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        last = fake_home.conversation(conversation_id)["messages"][-1]
        if last["role"] == "assistant":
            break
        time.sleep(0.1)
    assert last["finish_reason"] == "cancelled"
    assert last["content"].startswith(streamed)
    assert FAKE_LONG_ANSWER.startswith(last["content"])
    assert last["completion_tokens"] < 1000


def test_stop_stops_the_daemon_and_is_harmless_twice(fake_home: GembaHome) -> None:
    fake_home.start_daemon()
    first = fake_home.gemba("stop", check=True)
    assert "Stopped" in first.stderr
    assert fake_home.health() is None
    assert "No Gemba daemon" in fake_home.gemba("stop", check=True).stderr


@pytest.mark.model
def test_tampered_model_stops_ask_with_hashes_and_no_traceback(gemba_home: GembaHome) -> None:
    entry = CATALOG["smollm2-135m-instruct-q4_1"]
    original = locate(entry, Path("/nonexistent"))
    assert original is not None
    models_dir = gemba_home.home / "models"
    models_dir.mkdir(parents=True)
    data = original.read_bytes()
    (models_dir / entry.file).write_bytes(data[: len(data) // 3])  # an interrupted copy
    result = gemba_home.gemba("ask", "hello")
    assert result.returncode == 65
    assert entry.sha256 in result.stderr and "got " in result.stderr
    assert "what to do:" in result.stderr
    assert "Traceback" not in result.stderr
    assert gemba_home.health() is None  # nothing was loaded


def test_history_of_unknown_conversation_is_a_clear_error(fake_home: GembaHome) -> None:
    result = fake_home.gemba("history", "show", "999")
    assert result.returncode == 66
    assert "conversation 999 does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_question_is_a_usage_error(gemba_home: GembaHome) -> None:
    result = gemba_home.gemba("ask", "   ")
    assert result.returncode == 2
    assert "QUESTION is empty" in result.stderr


def test_port_taken_by_another_program_is_named(fake_home: GembaHome) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", fake_home.port))
        squatter.listen(1)
        result = fake_home.gemba("serve", timeout=60)
    assert result.returncode == 78
    assert f"cannot listen on 127.0.0.1:{fake_home.port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_lan_address_without_api_key_is_refused(fake_home: GembaHome) -> None:
    result = fake_home.gemba("serve", "--host", "0.0.0.0", timeout=60)
    assert result.returncode == 78
    assert "without an API key" in result.stderr


def test_auto_started_daemon_stops_itself_when_idle(fake_home: GembaHome) -> None:
    fake_home.write_config(f"[daemon]\nport = {fake_home.port}\nidle_timeout_s = 1\n")
    fake_home.gemba("ask", "--max-tokens", "5", "Say OK.", check=True)
    state_file = fake_home.home / "run" / "daemon.json"
    pid = json.loads(state_file.read_text())["pid"]
    deadline = time.monotonic() + 60
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fake_home.health() is None
    assert not state_file.exists()  # it cleaned up after itself


def test_daemon_started_by_hand_does_not_time_out(fake_home: GembaHome) -> None:
    fake_home.write_config(f"[daemon]\nport = {fake_home.port}\nidle_timeout_s = 1\n")
    fake_home.start_daemon()
    time.sleep(3)  # well past the idle timeout, which applies only to auto-started daemons
    assert fake_home.health()["ready"]


def _namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "-rn", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _namespaces_work(), reason="cannot make a network namespace here")
def test_ask_with_the_loopback_interface_down_says_so_at_once(fake_home: GembaHome) -> None:
    """A fresh network namespace (a container, `unshare -n`) has its loopback interface down:
    nothing can reach the daemon's 127.0.0.1. `gemba ask` used to wait two silent minutes."""
    result = subprocess.run(["unshare", "-rn", PYTHON, "-m", "appliance", "ask", "Why?"],
                            env=fake_home.env, cwd=fake_home.home, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 69, result.stderr
    assert "loopback interface is down" in result.stderr
    assert "ip link set lo up" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (fake_home.home / "run" / "daemon.json").exists(), "no daemon was started"
