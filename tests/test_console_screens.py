"""Function-key screens: F1 help, F2 ask, F3 history (search, reopen), in the operator's language.

History reopens a real model's answer; an answer ending behind the History screen is the
console's bookkeeping, tested with the scripted engine's exact list."""

from __future__ import annotations

import uuid

import httpx
import pytest

from appliance.client import ApplianceClient
from appliance.console.app import ConsoleApp
from appliance.console.screens import HelpScreen, HistoryScreen
from tests.conftest import LONG_ANSWER_PROMPT, GembaHome
from tests.console_pilot import run_closing, screen_text, wait_for


def _ask_via_api(daemon: GembaHome, question: str) -> str:
    body = {"messages": [{"role": "user", "content": question}], "max_tokens": 12,
            "temperature": 0, "user": "tester"}
    reply = httpx.post(f"{daemon.url}/v1/chat/completions", json=body, timeout=120).json()
    return reply["choices"][0]["message"]["content"]


@pytest.mark.model
def test_history_finds_and_reopens_a_past_answer(daemon: GembaHome) -> None:
    tag = f"Line {uuid.uuid4().hex[:6]}"
    answer = _ask_via_api(daemon, f"{tag}: what does alarm E-217 mean?")
    _ask_via_api(daemon, "Another question about the press.")
    client = ApplianceClient(daemon.url)
    app = ConsoleApp(client, "smollm2-135m-instruct-q4_1", operator="tester")

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("f3")
            assert isinstance(app.screen, HistoryScreen)
            await wait_for(pilot, lambda: "Another question" in screen_text(app), "the list", 30)
            await pilot.press(*tag, "enter")  # search narrows the list to that line's question
            await wait_for(pilot, lambda: "Another question" not in screen_text(app),
                           "the search to narrow the list", 30)
            assert tag in screen_text(app)
            await pilot.press("enter")  # open the highlighted conversation
            await wait_for(pilot, lambda: "A: " in screen_text(app), "the conversation", 30)
            # Compared with whitespace folded: the answer may wrap or hold blank lines.
            assert " ".join(answer.split())[:15] in " ".join(screen_text(app).split())
            await pilot.press("f2")
            assert not isinstance(app.screen, HistoryScreen)
            assert app.focused is app.query_one("#question")

    run_closing(client, scenario)


def test_help_in_japanese_lists_the_keys(fake_daemon: GembaHome) -> None:
    client = ApplianceClient(fake_daemon.url)
    app = ConsoleApp(client, "smollm2-135m-instruct-q4_1", operator="tester", lang="ja")

    async def scenario() -> str:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("f1")
            assert isinstance(app.screen, HelpScreen)
            await pilot.pause(0.1)
            return screen_text(app)

    text = run_closing(client, scenario)
    assert "ヘルプ" in text and "過去の質問" in text and "履歴" in text
    for key in ("F1", "F2", "F3", "F4", "F5", "F6", "F7", "F9", "Ctrl+Q"):
        assert key in text, key


def test_an_answer_that_ends_behind_the_history_screen_is_kept(fake_daemon: GembaHome) -> None:
    client = ApplianceClient(fake_daemon.url)
    app = ConsoleApp(client, "smollm2-135m-instruct-q4_1", operator="tester", temperature=0.0,
                     max_tokens=200)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press(*LONG_ANSWER_PROMPT, "enter")
            await pilot.press("f3")  # look something up while the answer streams (4 s)
            assert isinstance(app.screen, HistoryScreen)
            await wait_for(pilot, lambda: not app.answering, "the answer to end", 30)
            assert isinstance(app.screen, HistoryScreen)  # the ending did not pull it away
            await pilot.press("f2")
            assert app.ask_screen.answer_text == "".join(f"{n}, " for n in range(1, 201))
            assert not app.query_one("#question").disabled

    run_closing(client, scenario)
