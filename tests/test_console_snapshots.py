"""Every console screen in every language, at 80x24 and 120x40: snapshots, nothing clipped, and
legible on a 16-colour terminal.

The console runs against a real daemon and model in its own home. Its history is asked through
the API and then dated to fixed times, so the pictures do not change from run to run; the model
answers at temperature 0, and the console's clock is UTC (history shows local time). The screens
of the plant's documents (an answer citing them, a refusal, Documents and one passage) run
against a second daemon with documents imported (tests/console_pilot.py), so the first keeps
plain chat. The Health screen shows a recorded hot box
(tests/fixtures/console/hot_box_telemetry.json): this VM has no temperature sensor. Cursor blink
and the pollers are frozen before each picture. The 80x24 pictures of docs/operators.md are
copies of these snapshots (`make pictures`); a test keeps them equal.

Update after a deliberate change: `.venv/bin/python -m pytest tests/test_console_snapshots.py
--snapshot-update`, look at the pictures, then `make pictures`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.cells import cell_len
from rich.color import ColorSystem
from textual.pilot import Pilot
from textual.widgets import Input

from appliance.client import ApplianceClient
from appliance.console.app import ConsoleApp, HealthChanged
from appliance.console.documents import DocumentsScreen
from appliance.console.health import HealthScreen, TelemetryArrived, telemetry_from
from appliance.console.i18n import LANGUAGES, Strings
from appliance.console.passage import PassageScreen
from appliance.console.sources import Sources
from tests.conftest import ROOT, GembaHome, clock_in, make_home
from tests.console_pilot import import_plant_documents, run_closing, screen_text, wait_for

pytestmark = pytest.mark.model

SCREENS = ("login", "ask", "task", "history", "health", "help", "cited", "refusal", "documents",
           "passage")
DOCUMENT_SCREENS = ("cited", "refusal", "documents", "passage")
"""Run against the daemon with the plant's documents."""
SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
OPERATOR = "Li Wei"
ASKER = "Wang Fang"
"""Asks on the Ask screen, so Li Wei's history stays the three dated questions."""
HOT_BOX = json.loads((ROOT / "tests/fixtures/console/hot_box_telemetry.json").read_text())
QUESTIONS = {
    "en": "What does alarm E-104 on press 3 mean?",
    "zh": "3号冲床的报警 E-104 是什么意思？",
    "ja": "3号プレスのアラーム E-104 は何ですか？",
}
CITED = {  # answered from the plant documents, with their sources
    "en": "How do I apply the locks?",
    "zh": "报警 P-22 是什么意思？",
    "ja": "異常音がしたらどうしますか？",
}
REFUSED = {  # no document has that code: refused, with the nearest documents
    "en": "What does lockout code L-77 on the disconnect mean?",
    "zh": "泵的报警 P-99 是什么意思？",
    "ja": "ベルトのアラーム C-77 の意味は？",
}
SEARCHES = {"en": "machine", "zh": "泵", "ja": "ベルト"}
SNAPSHOTS = ROOT / "tests/__snapshots__/test_console_snapshots"
PICTURES = ROOT / "docs/pictures"
DOC_PICTURES = [(s, "en") for s in SCREENS] + [("ask", "zh"), ("health", "ja"),
                                               ("documents", "zh")]


@pytest.fixture(autouse=True)
def utc_clock() -> Iterator[None]:
    """History shows times on the console's clock: the pictures are taken on UTC everywhere."""
    with clock_in("UTC"):
        yield


@pytest.fixture(scope="module")
def snap_home(tmp_path_factory: pytest.TempPathFactory, netguard_log: Path) -> Iterator[GembaHome]:
    """A daemon whose history holds one question per language, dated to fixed times."""
    home = make_home(tmp_path_factory.mktemp("snapshots") / "gemba", netguard_log)
    home.start_daemon()
    for lang in LANGUAGES:
        body = {"messages": [{"role": "user", "content": QUESTIONS[lang]}], "max_tokens": 40,
                "temperature": 0, "user": OPERATOR}
        httpx.post(f"{home.url}/v1/chat/completions", json=body, timeout=120).raise_for_status()
    with sqlite3.connect(home.db_file) as db:
        for number, (conversation_id,) in enumerate(db.execute("select id from conversations")):
            stamp = f"2026-11-20T0{6 + number}:1{number}:00.000+00:00"
            db.execute("update conversations set created_at = ?, updated_at = ? where id = ?",
                       [stamp, stamp, conversation_id])
    yield home
    home.stop_all()


@pytest.fixture(scope="module")
def docs_home(tmp_path_factory: pytest.TempPathFactory,
              netguard_log: Path) -> Iterator[GembaHome]:
    """A daemon with the plant's documents imported, for the screens that show them."""
    root = tmp_path_factory.mktemp("snapshot-documents")
    home = make_home(root / "gemba", netguard_log)
    home.start_daemon()
    import_plant_documents(home, root / "documents")
    yield home
    home.stop_all()


def _home(request: pytest.FixtureRequest, screen: str) -> GembaHome:
    """The daemon a screen's picture is taken against (started only when a test needs it)."""
    home = request.getfixturevalue("docs_home" if screen in DOCUMENT_SCREENS else "snap_home")
    assert isinstance(home, GembaHome)
    return home


def _app(home: GembaHome, screen: str, lang: str) -> ConsoleApp:
    client = ApplianceClient(home.url)
    operator = {"login": None, "history": OPERATOR}.get(screen, ASKER)
    return ConsoleApp(client, "smollm2-135m-instruct-q4_1", operator=operator, lang=lang,
                      temperature=0.0, max_tokens=40)


async def _open(pilot: Pilot[Any], screen: str, lang: str) -> None:
    """Bring the console to `screen` as an operator would, then freeze it for a picture."""
    app = pilot.app
    assert isinstance(app, ConsoleApp)
    # run_before runs as soon as the app starts: wait until the operator could type.
    await wait_for(pilot, lambda: app.focused is not None, "the console to take focus", 10)
    t = Strings(lang)
    if screen == "ask":
        app.query_one("#question", Input).value = QUESTIONS[lang]
        await pilot.press("enter")
        # Forty tokens may be written before press() returns: wait for the ended answer.
        await wait_for(pilot, lambda: len(app.query(".answer")) == 1 and not app.answering,
                     "the answer to end")
    elif screen == "task":
        await pilot.press("f5", *"E-104", "enter")
        app.screen.query_one("#task-machine", Input).value = t("task.machine") + " 3"
    elif screen == "history":
        await pilot.press("f3")
        await wait_for(pilot, lambda: app.screen.query_one("#history-list").option_count == 3,
                     "the history list")
        await pilot.press("tab", "enter")
        await wait_for(pilot, lambda: "A: " in str(app.screen.query_one("#history-text").content),
                     "the conversation to open")
    elif screen == "health":
        await pilot.press("f4")
        health_screen = app.screen
        assert isinstance(health_screen, HealthScreen)
        await wait_for(pilot, lambda: health_screen.shown is not None, "live telemetry")
        health_screen.stop_polling()
        app.workers.cancel_group(app, "health")
        await wait_for(pilot, lambda: all(w.is_finished for w in app.workers), "the pollers", 10)
        health = HOT_BOX["health"]
        app.post_message(HealthChanged(health["state"], health["governor"]["severity"]))
        health_screen.post_message(TelemetryArrived(telemetry_from(HOT_BOX["telemetry"],
                                                                   health)))
        await wait_for(pilot, lambda: health_screen.shown is not None
                     and health_screen.shown.figures[0].value is not None, "the recording")
    elif screen == "help":
        await pilot.press("f1")
    elif screen in ("cited", "refusal"):
        app.query_one("#question", Input).value = (CITED if screen == "cited" else REFUSED)[lang]
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(app.query(".answer")) == 1 and not app.answering
                       and bool(app.ask_screen.query(Sources)), "the answer and its sources")
    elif screen in ("documents", "passage"):
        await pilot.press("f10")
        documents = app.screen
        assert isinstance(documents, DocumentsScreen)
        documents.query_one("#documents-search", Input).value = SEARCHES[lang]
        await pilot.press("enter")
        await wait_for(pilot, lambda: documents.query_one("#documents-list").option_count > 0,
                       "the search results")
        if screen == "passage":
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, PassageScreen)
                           and app.screen.shown is not None, "the passage")
    if screen != "health":
        app.workers.cancel_group(app, "health")
    for box in app.screen.query(Input):
        box.cursor_blink = False
    await pilot.pause(0.2)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("screen", SCREENS)
def test_screen_snapshot(request: pytest.FixtureRequest, snap_compare: Any, screen: str,
                         lang: str, size: str) -> None:
    app = _app(_home(request, screen), screen, lang)
    try:
        assert snap_compare(app, terminal_size=SIZES[size],
                            run_before=lambda pilot: _open(pilot, screen, lang))
    finally:
        app.client.close()


def _run(home: GembaHome, screen: str, lang: str, size: tuple[int, int],
         color_system: ColorSystem | None = None) -> tuple[list[str], list[tuple[str, Any]]]:
    """The screen's text lines, and (text, style) of every visible segment."""
    app = _app(home, screen, lang)

    async def scenario() -> tuple[list[str], list[tuple[str, Any]]]:
        async with app.run_test(size=size) as pilot:
            await _open(pilot, screen, lang)
            # The footer is redrawn when the focus moves; read the screen once it is back.
            await wait_for(pilot, lambda: screen_text(app).split("\n")[-1].strip() != "",
                           "the footer", 10)
            strips = app.screen._compositor.render_strips()
            return (screen_text(app).split("\n"),
                    [(seg.text, seg.style) for strip in strips for seg in strip])

    return run_closing(app.client, scenario)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("screen", SCREENS)
def test_nothing_is_clipped_at_80x24(request: pytest.FixtureRequest, screen: str,
                                     lang: str) -> None:
    lines, _ = _run(_home(request, screen), screen, lang, (80, 24))
    t = Strings(lang)
    text = "\n".join(lines)
    assert all(cell_len(line) == 80 for line in lines), "wide characters keep rows aligned"
    footer = lines[-1]
    # Signing in, only quitting works; everywhere else every key is shown, in full.
    keys = ("key.quit",) if screen == "login" else (
        "key.help", "key.ask", "key.history", "key.health", "key.documents", "key.signout",
        "key.back" if screen == "passage" else "key.cancel", "key.quit")
    for key in keys:
        assert t(key) in footer, f"footer lost {t(key)!r}: {footer!r}"
    status = lines[0]
    if screen != "login":
        operator = OPERATOR if screen == "history" else ASKER
        assert status.rstrip().endswith(t("status.operator", operator=operator)), status
    if screen == "ask":
        for name in ("alarm", "step", "handover"):
            assert t(f"key.{name}") in text
    if screen == "help":
        for line in t("help.text").splitlines():
            assert line.strip() in text, f"help line wrapped or cut: {line!r}"
    if screen == "health":
        for name in ("cpu_temp_c", "mem_available_bytes", "tok_per_s"):
            assert t(f"health.{name}") in text
        assert "63.1 °C" in text and t("severity.careful") in text
    if screen == "cited":
        assert t("sources.title") in text and "[1] " in text
    if screen == "refusal":
        assert t("refusal.none") in text and t("sources.nearest") in text
    if screen == "documents":
        assert t("documents.title") in text and " · rev " in text
    if screen == "passage":
        assert t("passage.heading") in text and t("passage.revision", value="") in text


@pytest.mark.parametrize("screen", SCREENS)
def test_every_cell_reads_on_a_16_colour_terminal(request: pytest.FixtureRequest,
                                                  screen: str) -> None:
    """Downgraded to the 16 ANSI colours, no text lands on its own background colour."""
    _, segments = _run(_home(request, screen), screen, "en", (80, 24))
    unreadable = []
    for text, style in segments:
        if not text.strip() or style is None or style.color is None or style.bgcolor is None:
            continue
        fg = style.color.downgrade(ColorSystem.STANDARD)
        bg = style.bgcolor.downgrade(ColorSystem.STANDARD)
        if fg.get_truecolor() == bg.get_truecolor():
            unreadable.append((text.strip(), fg.name, bg.name))
    assert not unreadable, f"text in its background's colour on 16 colours: {unreadable[:5]}"


def test_operator_guide_pictures_are_the_snapshots() -> None:
    """docs/operators.md shows what the console shows (`make pictures` copies them)."""
    for screen, lang in DOC_PICTURES:
        snapshot = SNAPSHOTS / f"test_screen_snapshot[{screen}-{lang}-80x24].svg"
        picture = PICTURES / f"{screen}-{lang}.svg"
        assert picture.exists() and picture.read_bytes() == snapshot.read_bytes(), \
            f"{picture} is out of date: run `make pictures`"
