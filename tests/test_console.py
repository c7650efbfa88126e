"""The operator console as an operator meets it: type, watch the answer stream, cancel, recover.

Pilot tests drive `ConsoleApp` at 80x24: an answer streamed from the real model, and the
console's handling around answers (cancel, lock, hostile text) against the scripted engine's
exact text. The last tests run `gemba console` in a real terminal (tmux) with the real model
(the kiosk tour in en and zh with the scripted engine: the languages, not the model, differ).
pytest-asyncio is not installed, so the Pilot tests are sync functions around `asyncio.run`.
Timeouts are only deadlines for waiting.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    FAKE_LONG_ANSWER,
    LONG_ANSWER_PROMPT,
    PYTHON,
    GembaHome,
    free_port,
)
from textual.pilot import Pilot
from textual.widgets import Input, Static

from appliance.client import ApplianceClient
from appliance.console.app import ConsoleApp
from appliance.console.text import clean
from tests.console_pilot import (
    PUMP_ALARM,
    import_plant_documents,
    run_closing,
    screen_text,
    unspaced,
    wait_for,
)

SIZE = (80, 24)
ANSWER_DEADLINE_S = 120  # generous: two cores, and other tests may share the machine
PLACEHOLDER = "…"


# -- helpers -------------------------------------------------------------------------------------
def question_input(app: ConsoleApp) -> Input:
    return app.query_one("#question", Input)


def answers(app: ConsoleApp) -> list[Static]:
    return list(app.query(".answer").results(Static))


def shown(widget: Static) -> str:
    return str(widget.content)


def console(daemon: GembaHome, **kwargs: Any) -> ConsoleApp:
    health = daemon.health() or {}
    kwargs.setdefault("operator", "tester")
    return ConsoleApp(ApplianceClient(daemon.url), health.get("model_id", "unknown"), **kwargs)


def conversation_ids(daemon: GembaHome) -> set[int]:
    return {row["id"] for row in daemon.history()}


def new_conversation(daemon: GembaHome, title: str, before: set[int]) -> dict[str, Any] | None:
    for row in daemon.history():
        if row["id"] not in before and row["title"] == title:
            return row
    return None


async def ask(pilot: Pilot[Any], app: ConsoleApp, question: str) -> None:
    """Put the question in the input as pasted text and press Enter."""
    question_input(app).value = question
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.answering, "the console to start answering", 10)


# -- Pilot tests against a daemon ----------------------------------------------------------------
@pytest.mark.model
def test_operator_sees_streamed_answer_and_it_lands_in_history(daemon: GembaHome) -> None:
    question = "What does alarm E-104 mean?"
    before = conversation_ids(daemon)
    app = console(daemon, temperature=0.0)  # the same answer every run
    seen: dict[str, str] = {}

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*question)  # typed, as an operator would, into the focused input
            assert question_input(app).value == question
            await pilot.press("enter")
            await wait_for(pilot, lambda: not app.answering and len(answers(app)) == 1,
                           "the answer to finish")

            answer = seen["answer"] = shown(answers(app)[0])
            assert answer.strip() and answer != PLACEHOLDER
            assert "[cancelled" not in answer and "Could not answer" not in answer
            screen = screen_text(app)
            assert f"Q: {question}" in screen or answer.split()[0] in screen
            assert answer.split()[-1] in screen, "the end of the answer is scrolled into view"
            assert "| ready" in screen.splitlines()[0]
            assert not question_input(app).disabled
            assert question_input(app).value == ""
            assert app.focused is question_input(app), "ready for the next question"

    run_closing(app.client, scenario)
    row = new_conversation(daemon, question, before)
    assert row is not None, f"no conversation titled {question!r} in {daemon.history()}"
    stored = daemon.conversation(row["id"])["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert stored[0]["content"] == question
    kept = seen["answer"].removesuffix(" [incomplete: token limit reached]")
    assert stored[-1]["content"].strip() == kept.strip()


def test_escape_stops_the_answer_and_keeps_the_partial_text(fake_daemon: GembaHome) -> None:
    daemon = fake_daemon
    before = conversation_ids(daemon)
    app = console(daemon, temperature=0.0, max_tokens=1500)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await ask(pilot, app, LONG_ANSWER_PROMPT)
            await wait_for(pilot, lambda: len(app.ask_screen.answer_text) >= 10,
                           "some answer text")
            await pilot.press("escape")
            await wait_for(pilot, lambda: not app.answering, "the cancel to take effect", 30)

            answer = shown(answers(app)[0])
            assert answer.endswith("[cancelled: partial answer kept]")
            partial = answer.removesuffix(" [cancelled: partial answer kept]")
            assert partial.startswith("1, 2, ") and FAKE_LONG_ANSWER.startswith(partial)
            # Folded: the mark may wrap across two lines, depending on where the answer stopped.
            await wait_for(pilot, lambda: "[cancelled: partial answer kept]" in
                           " ".join(screen_text(app).split()), "the cancel mark to be in view", 10)
            assert "| ready" in screen_text(app).splitlines()[0]
            assert not question_input(app).disabled

    run_closing(app.client, scenario)
    deadline = time.monotonic() + 10
    row = new_conversation(daemon, LONG_ANSWER_PROMPT, before)
    while (row is None or row["last_finish_reason"] != "cancelled") and time.monotonic() < deadline:
        time.sleep(0.2)
        row = new_conversation(daemon, LONG_ANSWER_PROMPT, before)
    assert row is not None, "the cancelled question is not in the history"
    last = daemon.conversation(row["id"])["messages"][-1]
    assert last["role"] == "assistant"
    assert last["finish_reason"] == "cancelled"
    assert FAKE_LONG_ANSWER.startswith(last["content"])


def test_question_box_is_locked_while_the_answer_streams(fake_daemon: GembaHome) -> None:
    app = console(fake_daemon, temperature=0.0, max_tokens=1500)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await ask(pilot, app, LONG_ANSWER_PROMPT)
            box = question_input(app)
            assert box.disabled
            assert "answering" in screen_text(app).splitlines()[0]
            await wait_for(pilot, lambda: bool(app.ask_screen.answer_text), "some answer text")
            await pilot.press(*"stop")  # keystrokes during an answer go nowhere
            await pilot.press("enter")
            assert app.answering and box.disabled
            assert box.value == ""
            assert len(answers(app)) == 1, "Enter during an answer must not ask again"

            await pilot.press("escape")  # no need to wait for the whole list
            await wait_for(pilot, lambda: not app.answering, "the answer to stop", 30)
            assert not box.disabled
            assert app.focused is box

    run_closing(app.client, scenario)


# -- without a daemon ----------------------------------------------------------------------------
@pytest.mark.parametrize(("lang", "said", "state"), [
    ("en", "Could not answer: lost the connection to the appliance. Press Enter when the yellow "
           "line is gone.", "| error"),
    ("zh", "无法回答：与设备的连接中断。黄色提示消失后按回车。", "| 错误"),
])
def test_unreachable_appliance_gives_the_question_back_with_an_error(lang: str, said: str,
                                                                     state: str) -> None:
    question = "Why is line 3 stopped?"
    client = ApplianceClient(f"http://127.0.0.1:{free_port()}")
    app = ConsoleApp(client, "no-model", operator="tester", lang=lang)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*question)
            await pilot.press("enter")
            await wait_for(pilot, lambda: not app.answering and question_input(app).value != "",
                           "the failure to come back", 30)

            assert question_input(app).value == question, "the operator need not retype it"
            assert not question_input(app).disabled
            answer = answers(app)[0]
            assert shown(answer) == said, "in the operator's words, with what to do"
            assert answer.has_class("error")
            screen = screen_text(app)
            assert said in "".join(screen.split()) or said in " ".join(screen.split())
            assert state in screen.splitlines()[0]

    run_closing(client, scenario)


# -- model text is data --------------------------------------------------------------------------
def test_control_characters_never_reach_the_screen() -> None:
    # Whole escape sequences go, so no "[31m" is left to read.
    assert clean("[bold]x[/bold]\x1b[31mred\x1b[0m") == "[bold]x[/bold]red"
    assert clean("a\r\nb\tc\x07\x00\x7f\x9b2J") == "a\nb\tc"  # BEL, NUL, DEL, C1 CSI
    assert clean("\x1b]0;pwned\x07ok") == "ok"  # a window-title change
    assert clean("Überdruck 5 °C – OK\n") == "Überdruck 5 °C – OK\n"


def test_markup_and_escapes_in_an_answer_show_as_plain_text(fake_home: GembaHome) -> None:
    hostile = "[bold]x[/bold]\x1b[31m[link=http://example.com]y[/link]"
    expected = "[bold]x[/bold][link=http://example.com]y[/link]"
    fake_home.use_fake_engine(answer=f"The label reads {hostile} today.")  # the model wrote it
    fake_home.start_daemon()
    app = console(fake_home, temperature=0.0)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            question_input(app).value = "What does the label on the pump say?"
            await pilot.press("enter")
            await wait_for(pilot, lambda: not app.answering and len(answers(app)) == 1,
                           "the answer", 30)

            answer = answers(app)[0]
            assert shown(answer) == f"The label reads {expected} today."
            assert not answer.visual.spans, "no markup was interpreted"
            assert expected in screen_text(app).replace("\n", "")

    run_closing(app.client, scenario)


# -- a real terminal -----------------------------------------------------------------------------
def _tmux(socket: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TMUX"}
    return subprocess.run(["tmux", "-L", socket, *args], env=env, text=True,
                          capture_output=True, timeout=30)


def _pane(socket: str, history: bool = False) -> str:
    start = ["-S", "-"] if history else []  # "-": from the top of the scrollback
    return _tmux(socket, "capture-pane", "-p", *start, "-t", "console").stdout


@contextmanager
def terminal(script: Path) -> Iterator[str]:
    """`script` running in a real 80x24 terminal (a tmux session); yields the tmux socket name,
    and ends the session and its left-behind socket file afterwards."""
    socket = f"gemba-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        started = _tmux(socket, "new-session", "-d", "-s", "console", "-x", "80", "-y", "24",
                        str(script))
        assert started.returncode == 0, started.stderr
        yield socket
    finally:
        _tmux(socket, "kill-server")
        tmux_dir = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (tmux_dir / socket).unlink(missing_ok=True)  # this tmux leaves its socket file behind


def _wait_pane(socket: str, condition: Callable[[str], bool], what: str,
               timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    pane = _pane(socket)
    while not condition(pane):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}; the screen shows:\n{pane}")
        time.sleep(0.2)
        pane = _pane(socket)
    return pane


def _console_script(home: GembaHome, tmp_path: Path, after: str = "", *args: str) -> Path:
    """A shell script that runs `gemba console ARGS` in this home, as a terminal would."""
    script = tmp_path / "console.sh"
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in home.env.items())
    command = shlex.join([PYTHON, "-m", "appliance", "console", *args])
    script.write_text(f"#!/bin/sh\n{exports}export LANG=C.UTF-8\n"
                      f"cd {shlex.quote(str(home.home))}\n"
                      f"{command}\n{after}", encoding="utf-8")
    script.chmod(0o755)
    return script


def _answered(question: str) -> Callable[[str], bool]:
    def check(pane: str) -> bool:
        lines = pane.splitlines()
        if not lines or "| ready" not in lines[0]:
            return False
        asked = [i for i, line in enumerate(lines) if line.strip() == f"Q: {question}"]
        if not asked:
            return False
        after = [line.strip() for line in lines[asked[0] + 1:]]
        return any(line and line != PLACEHOLDER and not line.startswith("▊")
                   for line in after[:3])
    return check


@pytest.mark.model
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_gemba_console_in_a_real_terminal_answers_and_quits(gemba_home: GembaHome,
                                                            tmp_path: Path) -> None:
    question = "What does alarm E-104 mean?"
    gemba_home.write_config(gemba_home.config_file.read_text()  # the same answer every run
                            + "[generation]\ntemperature = 0.0\n")
    exit_file = tmp_path / "console.exit"
    script = _console_script(gemba_home, tmp_path,
                             f"echo $? > {shlex.quote(str(exit_file))}\n")
    with terminal(script) as socket:
        # Keep the pane after the console exits, to see what it left in the terminal.
        _tmux(socket, "set-option", "-t", "console", "remain-on-exit", "on")
        # The first run starts the daemon in this home, then opens the TUI.
        _wait_pane(socket, lambda p: p.lstrip().startswith("Gemba | model") and "| ready" in p
                   and "Badge or name" in p, "the status line and the sign-in form", 180)
        _tmux(socket, "send-keys", "-t", "console", "-l", "Wang Fang")
        _tmux(socket, "send-keys", "-t", "console", "Enter")
        _wait_pane(socket, lambda p: "| operator Wang Fang" in p, "the operator signed in", 10)

        _tmux(socket, "send-keys", "-t", "console", "-l", question)
        _wait_pane(socket, lambda p: question in p, "the typed question in the input", 10)
        _tmux(socket, "send-keys", "-t", "console", "Enter")
        pane = _wait_pane(socket, _answered(question), "the answer", ANSWER_DEADLINE_S)
        assert "Could not answer" not in pane
        assert "Starting the Gemba appliance daemon" not in pane, "the TUI owns the screen"

        _tmux(socket, "send-keys", "-t", "console", "C-q")
        deadline = time.monotonic() + 30
        while not exit_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert exit_file.exists(), f"ctrl+q did not quit; the screen shows:\n{_pane(socket)}"
        assert exit_file.read_text().strip() == "0"
        _wait_pane(socket, lambda p: "Gemba | model" not in p, "the terminal to be handed back",
                   10)
        before_tui = _pane(socket, history=True)
        assert "Starting the Gemba appliance daemon" in before_tui, before_tui

    asked = [row for row in gemba_home.history() if row["title"] == question]
    assert asked and asked[0]["operator"] == "Wang Fang", "stored with who asked"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize(("lang", "engine"), [
    pytest.param("ja", "real", marks=pytest.mark.model),  # CJK layout around real model text
    pytest.param("en", "scripted", marks=pytest.mark.fake),
    # zh on the real model runs past its deadline on two busy cores: SmolLM2 loops in Chinese
    # up to the token limit. The zh screens with real text: the pump SOP test below.
    pytest.param("zh", "scripted", marks=pytest.mark.fake),
])
def test_kiosk_console_in_a_real_terminal_in_each_language(gemba_home: GembaHome,
                                                           tmp_path: Path, lang: str,
                                                           engine: str) -> None:
    """Sign in (a CJK name in zh/ja), explain an alarm (F5), cancel an answer, read health (F4),
    find the alarm in history (F3); Ctrl+Q does not leave a kiosk console."""
    from appliance.console.i18n import Strings

    if engine == "scripted":  # slow enough to be seen answering: 2 s for the alarm
        gemba_home.use_fake_engine(tokens_per_s=4)

    t = Strings(lang)
    name = {"en": "Li Wei", "zh": "王芳", "ja": "山田"}[lang]
    # Temperature 0: the long list must still be streaming when Esc comes (sampled, the model
    # may stop after ten numbers, and there is nothing left to cancel).
    gemba_home.write_config(f"[daemon]\nport = {gemba_home.port}\nidle_timeout_s = 300\n"
                            "[generation]\ntemperature = 0.0\n"
                            f"[console]\nkiosk = true\nlang = \"{lang}\"\n")
    script = _console_script(gemba_home, tmp_path)
    with terminal(script) as socket:

        def keys(*args: str) -> None:
            _tmux(socket, "send-keys", "-t", "console", *args)

        # Ready first: the alarm typed ahead below must not reach a model still loading.
        _wait_pane(socket, lambda p: t("login.prompt") in p
                   and t("state.ready") in p.splitlines()[0], "the sign-in form, ready", 180)
        keys("-l", name)
        keys("Enter")
        _wait_pane(socket, lambda p: t("status.operator", operator=name) in p, "signed in", 10)

        keys("F5")
        _wait_pane(socket, lambda p: t("task.alarm.code") in p, "the alarm form", 10)
        # Typed ahead in one burst, as a laggy SSH link delivers it: code, machine, no notes.
        keys("-l", "E-104\rM3\r\r")
        _wait_pane(socket, lambda p: t("state.answering") in p.splitlines()[0],
                   "the alarm being answered", 30)
        # A long answer scrolls the question out of view; history shows it was E-104 on M3.
        _wait_pane(socket, lambda p: t("state.ready") in p.splitlines()[0]
                   and t("task.alarm.code") not in p, "the answer to the alarm", 120)

        keys("-l", LONG_ANSWER_PROMPT)
        keys("Enter")
        _wait_pane(socket, lambda p: t("state.answering") in p, "answering", 30)
        time.sleep(1.0)
        keys("Escape")
        _wait_pane(socket, lambda p: t("note.cancelled").strip()[:6] in p, "the cancel mark", 30)

        keys("F4")
        _wait_pane(socket, lambda p: t("health.mem_available_bytes") in p and "GiB" in p,
                   "the health screen", 15)
        keys("F3")
        _wait_pane(socket, lambda p: t("history.search") in p and "E-104" in p,
                   "the alarm in history", 15)

        # Neither the quit key nor the terminal's own signal keys leave a kiosk console: the
        # console keeps the terminal raw, so Ctrl+C, Ctrl+Z and Ctrl+\ arrive as keys.
        for key in ("C-q", "C-c", "C-z", "C-\\"):
            keys(key)
            time.sleep(1.0)
            pane = _pane(socket)
            assert t("history.search") in pane, f"a kiosk console quit on {key}:\n{pane}"
        keys("F2")  # and it still answers keys: not stopped in the background by Ctrl+Z
        _wait_pane(socket, lambda p: t("placeholder") in p, "the Ask screen after the keys", 10)
    asked = gemba_home.history()
    assert any(row["operator"] == name and "E-104" in row["title"] and "M3" in row["title"]
               for row in asked), asked


@pytest.mark.model
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_chinese_console_in_a_real_terminal_cites_the_pump_sop_and_opens_it(
        gemba_home: GembaHome, tmp_path: Path) -> None:
    """`gemba console --lang zh` at 80x24 with the plant's documents imported: a question about
    the pump's low suction pressure is answered from SOP-PU-007, cited under the answer, and F8
    then Enter opens the cited passage in full."""
    from appliance.console.i18n import Strings

    t = Strings("zh")
    question = "吸入压力低于多少触发报警？"
    gemba_home.write_config(gemba_home.config_file.read_text()  # the same answer every run
                            + "[generation]\ntemperature = 0.0\n")
    import_plant_documents(gemba_home, tmp_path / "documents")  # starts the daemon, as a user
    script = _console_script(gemba_home, tmp_path, "", "--lang", "zh")
    with terminal(script) as socket:

        def keys(*args: str) -> None:
            _tmux(socket, "send-keys", "-t", "console", *args)

        _wait_pane(socket, lambda p: t("login.prompt") in p, "the sign-in form", 120)
        keys("-l", "王芳")
        keys("Enter")
        _wait_pane(socket, lambda p: t("status.operator", operator="王芳") in p, "signed in", 10)

        keys("-l", question)
        keys("Enter")
        citation = "[1] SOP-PU-007 · rev 2 · 5 报警处理"
        pane = _wait_pane(socket, lambda p: t("state.ready") in p.splitlines()[0]
                          and citation in p, "the answer with its citation", ANSWER_DEADLINE_S)
        assert t("sources.title") in pane
        assert "无法回答" not in pane

        keys("F8")
        keys("Enter")
        pane = _wait_pane(socket, lambda p: t("passage.heading") in p
                          and unspaced("".join(PUMP_ALARM)) in unspaced(p),
                          "the cited passage in full", 30)
        for line in (t("passage.document", value="SOP-PU-007"), t("passage.revision", value="2"),
                     t("passage.section", value="5 报警处理")):
            assert line in pane, line
        assert f"Q: {question}" not in pane, "the passage has the screen to itself"

        keys("Escape")  # back to the answer
        _wait_pane(socket, lambda p: f"Q: {question}" in p or citation in p, "the answer again",
                   10)
