"""Operator flows against real daemons: a task form answered and stored with who asked, sign-out,
the Health screen of a hot box, a lost daemon brought back, and a kiosk that will not quit.

The daemons answer with the scripted engine (its exact text): these are the console's flows
around an answer. The same screens with the real model's answers are in test_console.py's real
terminal tests."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from textual.widgets import Input, Static

from appliance.client import ApplianceClient
from appliance.config import Paths, load_settings
from appliance.console.app import ConsoleApp, HealthChanged
from appliance.console.health import FigureRow, HealthScreen
from appliance.console.login import LoginScreen
from appliance.launcher import ensure_daemon
from tests.conftest import FAKE_ANSWER, LONG_ANSWER_PROMPT, GembaHome
from tests.console_pilot import run_closing, screen_text, wait_for

SIZE = (80, 24)
HOT_BOX = "ambient_c=60,r_c_per_w=4,c_j_per_c=3.75,idle_w=1,load_w=10,full_tok_per_s=80"
LIMITS = "cpu_careful_c = 55\ncpu_warning_c = 70\ncpu_critical_c = 80\nsensors_expected = true\n"


def _answers(app: ConsoleApp) -> list[str]:
    return [str(w.content) for w in app.screen_stack[0].query(".answer").results(Static)]


def test_alarm_form_asks_for_the_operator_and_sign_out_hands_over(fake_daemon: GembaHome) -> None:
    client = ApplianceClient(fake_daemon.url)
    app = ConsoleApp(client, "smollm2-135m-instruct-q4_1", temperature=0.0, max_tokens=24)

    async def scenario() -> list[dict[str, Any]]:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, LoginScreen),
                           "the sign-in form")
            await pilot.press("enter")  # no name: refused, the form stays
            assert isinstance(app.screen, LoginScreen)
            await pilot.press("f3", "f4", "f5", "f9", "escape")  # no way around the sign-in
            assert isinstance(app.screen, LoginScreen) and len(app.screen_stack) == 2
            await pilot.press(*"Zhao", "enter")
            await wait_for(pilot, lambda: "| operator Zhao" in screen_text(app),
                           "Zhao signed in", 5)

            await pilot.press("f5", "enter", "enter", "enter")  # the alarm code is required
            assert "Alarm code is needed." in screen_text(app)
            await pilot.press(*"E-217", "enter", *"Oven2", "enter", "enter")
            await wait_for(pilot, lambda: len(_answers(app)) == 1 and not app.answering,
                           "the answer to the alarm form")
            asked = str(app.query_one(".question", Static).content)
            assert "E-217" in asked and "Oven2" in asked and "Observed" not in asked
            assert _answers(app)[0] == FAKE_ANSWER

            await pilot.press("f9")  # the next operator gets a clean screen
            await wait_for(pilot, lambda: isinstance(app.screen, LoginScreen), "sign-in again",
                           5)
            assert not app.screen_stack[0].query(".answer")
            await pilot.press(*"Sun", "enter")
            await wait_for(pilot, lambda: "| operator Sun" in screen_text(app), "Sun signed in",
                           5)
        return client.conversations(5, "E-217", operator="Zhao")

    rows = run_closing(client, scenario)
    assert rows and rows[0]["title"].startswith("Explain alarm E-217 on Oven2")


def test_health_shows_a_hot_box_against_its_budget(fake_home: GembaHome) -> None:
    fake_home.extra_env["GEMBA_SIMULATED_THERMAL"] = HOT_BOX
    fake_home.write_config(f"[daemon]\nport = {fake_home.port}\n[budgets]\n{LIMITS}")
    fake_home.start_daemon()
    client = ApplianceClient(fake_home.url)
    app = ConsoleApp(client, "smollm2-135m-instruct-q4_1", operator="tester")

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f4")
            assert isinstance(app.screen, HealthScreen)
            row = app.screen.query_one("#figure-cpu_temp_c", FigureRow)
            await wait_for(pilot, lambda: row.has_class("careful"), "CPU temperature at careful")
            text = screen_text(app)
            cpu_line = next(line for line in text.splitlines() if "CPU temperature" in line)
            assert "°C" in cpu_line and "careful" in cpu_line
            assert "GiB" in next(line for line in text.splitlines() if "Free memory" in line)
            assert "not measured" in next(line for line in text.splitlines()
                                          if "GPU temperature" in line)
            assert "budget careful" in text.splitlines()[0], "the status line says so too"
            assert "Governor: slowed" in text
            await pilot.press("escape")  # nothing streams: back to Ask
            assert not isinstance(app.screen, HealthScreen)

    run_closing(client, scenario)


def test_a_lost_daemon_shows_a_banner_and_the_console_brings_it_back(
        fake_home: GembaHome, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in fake_home.env.items():
        monkeypatch.setenv(key, value)  # ensure_daemon reads this home's config and paths
    paths = Paths.from_env()
    settings = load_settings(paths.config_file)
    fake_home.start_daemon()
    client = ApplianceClient(fake_home.url, client_kind="console")
    app = ConsoleApp(client, "smollm2-135m-instruct-q4_1", operator="tester", temperature=0.0,
                     max_tokens=8, restart=lambda: ensure_daemon(settings, paths, print))
    app.RESTART_AFTER_S = 1.0

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            banner = app.query_one("#banner", Static)
            await wait_for(pilot, lambda: "| ready" in screen_text(app), "ready", 30)
            assert not banner.display
            stopped = fake_home.gemba("stop", timeout=30)
            assert stopped.returncode == 0, stopped.stderr
            await wait_for(pilot, lambda: banner.display, "the offline banner", 15)
            assert "Connection to the appliance lost" in screen_text(app)
            assert "offline: reconnecting" in screen_text(app).splitlines()[0]
            await wait_for(pilot, lambda: not banner.display and "| ready" in screen_text(app),
                         "the daemon to come back", 120)
            app.query_one("#question", Input).value = "Are you back?"
            await pilot.press("enter")
            await wait_for(pilot, lambda: len(_answers(app)) == 1 and not app.answering,
                         "an answer after the reconnect")
            assert _answers(app)[0] == FAKE_ANSWER

    run_closing(client, scenario)


def test_kiosk_console_cannot_be_quit(fake_daemon: GembaHome) -> None:
    client = ApplianceClient(fake_daemon.url)
    app = ConsoleApp(client, "smollm2-135m-instruct-q4_1", operator="tester", kiosk=True)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("ctrl+q")
            await pilot.pause(0.3)
            assert app.is_running and app.return_code is None
            assert "Quit" not in screen_text(app).splitlines()[-1]
            await pilot.press("f9")  # signing out still works: the console stays up
            assert isinstance(app.screen, LoginScreen)
            await pilot.press("ctrl+q")
            await pilot.pause(0.3)
            assert app.is_running

    run_closing(client, scenario)


def test_console_refuses_a_bad_operator_name_before_starting_anything(
        gemba_home: GembaHome) -> None:
    result = gemba_home.gemba("console", "--operator", "<script>", timeout=60)
    assert result.returncode == 65
    assert "--operator '<script>' is not a badge or name" in result.stderr
    assert "Traceback" not in result.stderr
    assert gemba_home.health() is None, "no daemon was started for a refused console"


def test_a_failed_engine_shows_why_in_a_banner(fake_daemon: GembaHome) -> None:
    client = ApplianceClient(fake_daemon.url)
    app = ConsoleApp(client, "smollm2-135m-instruct-q4_1", operator="tester", lang="zh")
    reason = "the model could not be loaded: out of memory"

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: "就绪" in screen_text(app), "ready", 30)
            app.workers.cancel_group(app, "health")  # the daemon here is fine: say it is not
            await wait_for(pilot, lambda: all(w.is_finished for w in app.workers), "the poller",
                           10)
            app.post_message(HealthChanged("failed", "ok", reason))
            await wait_for(pilot, lambda: app.query_one("#banner", Static).display, "the banner",
                           5)
            text = screen_text(app)
            wrapped = "".join(text.split())  # the banner wraps at 80 columns
            assert "".join(f"引擎故障：{reason}".split()) in wrapped
            assert "引擎故障" in text.splitlines()[0]

    run_closing(client, scenario)


def test_escape_on_a_question_still_waiting_withdraws_it_at_once(fake_home: GembaHome) -> None:
    """Another console's long answer holds the engine's one slot, so this question waits its
    turn. Esc gives the console back now, not when the turn comes; the daemon drops the
    question then."""
    fake_home.write_config(f"[daemon]\nport = {fake_home.port}\n[model]\nn_parallel = 1\n")
    fake_home.use_fake_engine(tokens_per_s=20)  # the other answer holds the slot for 20 s
    fake_home.start_daemon()
    fake_daemon = fake_home
    question = f"Withdrawn question {uuid.uuid4().hex[:6]}: why is the press slow?"
    body = {"messages": [{"role": "user", "content": LONG_ANSWER_PROMPT}], "max_tokens": 400,
            "temperature": 0}
    blocker = threading.Thread(target=lambda: httpx.post(
        f"{fake_daemon.url}/v1/chat/completions", json=body, timeout=120))
    client = ApplianceClient(fake_daemon.url)
    app = ConsoleApp(client, "smollm2-135m-instruct-q4_1", operator="tester", temperature=0.0,
                     max_tokens=16)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: "| ready" in screen_text(app), "ready", 30)
            blocker.start()
            await wait_for(pilot, lambda: (fake_daemon.health() or {}).get("engine_state")
                         == "answering", "the other console's answer", 30)
            await pilot.press(*question, "enter")
            await pilot.pause(0.5)
            assert app.answering and "Q: " in screen_text(app)  # queued behind the other answer
            await pilot.press("escape")
            await pilot.pause()
            assert not app.answering, "Esc gave the console back at once"
            assert _answers(app)[-1] == "[withdrawn before its turn came]"
            assert "| ready" in screen_text(app).splitlines()[0]
            box = app.query_one("#question", Input)
            assert not box.disabled and box.value == ""

    try:
        run_closing(client, scenario)
    finally:
        blocker.join(timeout=120)
    deadline = time.monotonic() + 60  # when its turn came, the daemon stopped it at once
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = [row for row in fake_daemon.history() if row["title"] == question]
        if rows and rows[0]["last_finish_reason"] == "cancelled":
            break
        time.sleep(0.2)
    assert rows and rows[0]["last_finish_reason"] == "cancelled", rows
