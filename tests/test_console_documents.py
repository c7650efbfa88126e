"""The console and the plant's documents, against a real daemon with documents imported as an
engineer does it (`gemba docs import`): an answer lists its sources and opens one in full, a
refusal is said in the operator's language with the nearest documents, the Documents screen (F10)
finds a one-character Chinese query, and the handover form is sent without the documents.

The model answers at temperature 0; what the tests compare is the documents' own text, with
whitespace folded (the screen wraps at 80 columns).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Static

from appliance.client import ApplianceClient
from appliance.console.app import ConsoleApp
from appliance.console.documents import DocumentsScreen
from appliance.console.i18n import Strings
from appliance.console.passage import PassageScreen
from appliance.console.sources import SourceList, Sources
from appliance.console.tasks import TaskForm
from tests.conftest import GembaHome, make_home
from tests.console_pilot import (
    APPLY_LOCKS,
    PUMP_ALARM,
    folded,
    import_plant_documents,
    run_closing,
    screen_text,
    unspaced,
    wait_for,
)

pytestmark = pytest.mark.model
SIZE = (80, 24)


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory, netguard_log: Path) -> Iterator[GembaHome]:
    """A daemon with the plant's documents imported (never the session's shared daemon: its
    other tests expect plain chat)."""
    root = tmp_path_factory.mktemp("plant")
    home = make_home(root / "gemba", netguard_log)
    home.start_daemon()
    import_plant_documents(home, root / "documents")
    yield home
    home.stop_all()


def _console(home: GembaHome, lang: str) -> ConsoleApp:
    return ConsoleApp(ApplianceClient(home.url), "smollm2-135m-instruct-q4_1", operator="Li Wei",
                      lang=lang, temperature=0.0, max_tokens=48)


def _answers(app: ConsoleApp) -> list[Static]:
    return list(app.ask_screen.query(".answer").results(Static))


async def _ask(pilot: Pilot[Any], app: ConsoleApp, question: str) -> Static:
    """Ask as an operator does and wait for the whole answer."""
    before = len(_answers(app))
    app.ask_screen.query_one("#question", Input).value = question
    await pilot.press("enter")
    await wait_for(pilot, lambda: len(_answers(app)) == before + 1 and not app.answering,
                   "the answer to end")
    await pilot.pause(0.1)  # the last frame drawn, the sources in view
    return _answers(app)[-1]


async def _passage_open(pilot: Pilot[Any], app: ConsoleApp) -> PassageScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, PassageScreen)
                   and app.screen.shown is not None, "the passage in full", 30)
    assert isinstance(app.screen, PassageScreen)
    await pilot.pause(0.1)
    return app.screen


def test_an_answer_from_the_documents_lists_its_sources_and_opens_one_in_full(
        plant: GembaHome) -> None:
    app = _console(plant, "en")

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            answer = await _ask(pilot, app, "How do I apply the locks?")
            assert not answer.has_class("refusal") and not answer.has_class("error")
            cited = app.ask_screen.query_one(Sources).passages
            assert cited and {c["document"] for c in cited} == {"LOTO-001"}
            text = folded(screen_text(app))
            assert "Sources: F8, then Enter or the number, opens one in full" in text
            for citation in cited:  # compact: document · rev · section (Markdown has no pages)
                assert f"[{citation['n']}] LOTO-001 · rev 4 · {citation['section']}" in text
            number = next(c["n"] for c in cited if c["section"] == "4 Apply the locks")

            await pilot.press("f8", str(number))  # gloves: a function key, then the number
            screen = await _passage_open(pilot, app)
            assert screen.passage_id == cited[number - 1]["passage_id"]
            text = screen_text(app)
            for line in ("Document: LOTO-001", "Title: LOTO-001 Lockout and tagout procedure",
                         "Revision: 4", "Section: 4 Apply the locks", "File: LOTO-001_rev4.md"):
                assert line in text, line
            assert "Page:" not in text
            assert folded(APPLY_LOCKS) in folded(text), "the whole passage"

            await pilot.press("escape")  # back to the list, to open another
            assert not isinstance(app.screen, PassageScreen)
            assert isinstance(app.focused, SourceList)
            await pilot.press("enter")  # the highlighted one: the same passage again
            await _passage_open(pilot, app)
            await pilot.press("escape", "escape")  # and to the question box
            assert app.focused is app.ask_screen.query_one("#question")

    run_closing(app.client, scenario)


def test_a_refusal_is_said_in_the_consoles_language_with_the_nearest_documents(
        plant: GembaHome) -> None:
    """A Chinese question on a Japanese console: the daemon refuses in Chinese (no document has
    alarm P-99), the operator reads it in Japanese, drawn as a refusal, not an error."""
    t = Strings("ja")
    app = _console(plant, "ja")

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            answer = await _ask(pilot, app, "泵的报警 P-99 是什么意思？")
            assert answer.has_class("refusal") and not answer.has_class("error")
            assert str(answer.content).splitlines() == [t("refusal.none"), t("refusal.hint")]
            text = screen_text(app)
            assert "在工厂文件中未找到依据" not in text, "not the daemon's words in Chinese"
            assert t("sources.nearest") in text
            assert "[1] SOP-PU-007 离心泵操作规程 · rev 2 · 5 报警处理" in text
            assert t("state.ready") in text.splitlines()[0], "a refusal is not an error"

            await pilot.press("f8", "enter")  # the nearest document, to read it anyway
            await _passage_open(pilot, app)
            assert unspaced("".join(PUMP_ALARM)) in unspaced(screen_text(app))
            assert "章：5 报警处理" in screen_text(app)

    run_closing(app.client, scenario)


def test_documents_screen_finds_a_one_character_chinese_query_and_opens_the_passage(
        plant: GembaHome) -> None:
    t = Strings("zh")
    app = _console(plant, "zh")

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f10")
            assert isinstance(app.screen, DocumentsScreen)
            assert t("key.documents") in screen_text(app).splitlines()[-1]
            documents = app.screen
            search = documents.query_one("#documents-search", Input)
            results = documents.query_one("#documents-list", OptionList)
            await pilot.press("泵")  # typed: one CJK character
            assert search.value == "泵"
            await pilot.press("enter")
            await wait_for(pilot, lambda: results.option_count == 2, "two passages with 泵")
            text = screen_text(app)
            assert "SOP-PU-007 · rev 2 · 3 启动前检查" in text
            assert "SOP-PU-007 · rev 2 · 5 报警处理" in text
            assert "确认进口阀门全开，出口阀门关闭。检查泵体无泄漏。" in text  # its first lines
            assert app.focused is results

            alarm = next(i for i in range(results.option_count)
                         if "5 报警处理" in str(results.get_option_at_index(i).prompt))
            await pilot.press(*["down"] * alarm, "enter")
            await _passage_open(pilot, app)
            assert unspaced("".join(PUMP_ALARM)) in unspaced(screen_text(app))
            await pilot.press("escape")  # back to the results, as they were
            assert app.screen is documents and results.option_count == 2

            await pilot.press("shift+tab")
            assert app.focused is search
            search.value = "齿轮"
            await pilot.press("enter")
            said = t("documents.empty", query="齿轮")
            await wait_for(pilot, lambda: said in screen_text(app), "nothing found, said so", 30)
            assert results.option_count == 0

    run_closing(app.client, scenario)


def test_handover_note_is_sent_without_the_documents_and_says_so(plant: GembaHome) -> None:
    t = Strings("en")
    app = _console(plant, "en")
    client = ApplianceClient(plant.url)

    async def scenario() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f7")
            assert isinstance(app.screen, TaskForm)
            await pilot.press(*"Pump 2", "enter", *"P-22 alarm twice, strainer cleaned", "enter")
            await wait_for(pilot, lambda: len(_answers(app)) == 1 and not app.answering,
                           "the handover note")
            await pilot.pause(0.1)
            answer = _answers(app)[0]
            assert not answer.has_class("refusal") and not answer.has_class("error")
            assert not app.ask_screen.query(Sources), "the documents were not asked"
            notes = [str(n.content) for n in app.ask_screen.query(".note").results(Static)]
            assert notes == [t("note.unchecked")]
            assert t("note.unchecked") in folded(screen_text(app))

            # The alarm form asks about the documents: through their gate, and no such note.
            await pilot.press("f5", *"P-22", "enter", *"Pump 2", "enter", "enter")
            await wait_for(pilot, lambda: len(_answers(app)) == 2 and not app.answering,
                           "the alarm answer")
            assert len(app.ask_screen.query(".note")) == 1

    run_closing(app.client, scenario)
    try:
        rows = client.conversations(20, operator="Li Wei")
        basis = {row["title"].split(" ")[0]: client.conversation(row["id"])["messages"][-1]
                 ["basis"] for row in rows}
    finally:
        client.close()
    assert basis["Write"] is None, "the handover note: plain chat, the documents off"
    assert basis["Explain"] in ("documents", "none"), "the alarm: through the documents' gate"
