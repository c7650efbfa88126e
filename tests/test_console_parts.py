"""The console's new parts, fast: task prompts and forms, sign-in, the health rows, the
governor's severities, the operator filter, the telemetry window and the API routes behind F4,
and how sources, passages and the Documents screen read (no daemon: an unreachable one).

Widgets run in a tiny host App that loads the console's stylesheet and ISA-101 theme (the CSS
uses its variables). pytest-asyncio is not installed: Pilot tests are sync functions around
`asyncio.run`. Only the last test needs the real daemon (marked `model`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from rich.cells import cell_len
from textual import events
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, Static

import appliance.console
from appliance.api.app import create_app
from appliance.chat import ChatService
from appliance.client import ApplianceClient
from appliance.config import Settings
from appliance.console.ask import AskScreen
from appliance.console.documents import DocumentsScreen
from appliance.console.health import (
    FIGURES,
    Figure,
    FigureRow,
    explain,
    format_value,
    telemetry_from,
    trend,
)
from appliance.console.i18n import LANGUAGES, Strings
from appliance.console.login import MAX_OPERATOR_CHARS, LoginScreen, valid_operator
from appliance.console.passage import PassageLoaded, PassageScreen, passage_heading
from appliance.console.screens import row_text
from appliance.console.sources import Sources, cite_line, nearest_line, snippet
from appliance.console.tasks import TASKS, TaskForm, build_prompt, field_label
from appliance.console.theme import ISA101
from appliance.governor import (
    Budgets,
    Limits,
    Severity,
    decide,
    figure_severity,
    initial,
    limits_for,
)
from appliance.governor_loop import decision_view, limits_view
from appliance.hardware.telemetry import Sample
from appliance.store import open_store
from appliance.store.conversations import (
    add_question,
    list_conversations,
    local_time,
    start_conversation,
)
from appliance.store.telemetry import TelemetryStore
from tests.conftest import GembaHome, clock_in, free_port
from tests.console_pilot import screen_text, wait_for

REQUIRED_VALUE = {"alarm": "E-104", "step": "SOP-12", "handover": "belt replaced at 14:00"}
LEFTOVERS = {  # what an empty machine or notes field must not leave behind
    "en": ("{", "}", "  ", " on ", " .", " ?", "Observed:", "last step done"),
    "zh": ("{", "}", "  ", "现象", "已完成的最后一步", "为写"),
    "ja": ("{", "}", "  ", "状況", "最後に終えたステップ", "からの"),
}


# -- a host app for one widget or one modal screen -----------------------------------------------
class Host(App[None]):
    CSS_PATH = Path(appliance.console.__file__).parent / "console.tcss"

    def __init__(self, widget: Widget | None = None) -> None:
        super().__init__()
        self.widget = widget
        self.results: list[object] = []
        """What the pushed screen was dismissed with; empty while it is still up."""
        self.register_theme(ISA101)
        self.theme = ISA101.name

    def compose(self) -> ComposeResult:
        if self.widget is not None:
            yield self.widget


def run_modal(screen: Screen[Any], scenario: Callable[[Pilot[None], Host],
                                                       Awaitable[None]]) -> None:
    async def main() -> None:
        app = Host()
        async with app.run_test(size=(80, 24)) as pilot:
            await app.push_screen(screen, app.results.append)
            await pilot.pause()
            await scenario(pilot, app)

    asyncio.run(main())


def text_of(widget: Static) -> str:
    return str(widget.content)


def focused_id(app: Host) -> str | None:
    return app.focused.id if app.focused is not None else None


# -- 1. task prompts ------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", TASKS)
def test_prompt_carries_every_value_once(lang: str, name: str) -> None:
    task = TASKS[name]
    values = {"machine": "Press 7", "notes": "belt slips", task.required[0]: REQUIRED_VALUE[name]}
    prompt = build_prompt(task, {f: values[f] for f in task.fields}, Strings(lang))
    for field in task.fields:
        assert prompt.count(values[field]) == 1, (field, prompt)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("name", TASKS)
def test_prompt_without_optional_fields_leaves_no_trace_of_them(lang: str, name: str) -> None:
    task = TASKS[name]
    values = {field: "" for field in task.fields} | {task.required[0]: REQUIRED_VALUE[name]}
    prompt = build_prompt(task, values, Strings(lang))
    assert REQUIRED_VALUE[name] in prompt
    for leftover in LEFTOVERS[lang]:
        assert leftover not in prompt, (leftover, prompt)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_prompt_strips_control_characters_and_collapses_whitespace(lang: str) -> None:
    values = {"code": " \x1b[31mE-104\x1b[0m ", "machine": "Line\r\n 3\t\x07",
              "notes": "belt\r\n\r\nslips\x00  again"}
    prompt = build_prompt(TASKS["alarm"], values, Strings(lang))
    assert "\x1b" not in prompt and "\r" not in prompt and "\n" not in prompt
    assert "\x07" not in prompt and "\x00" not in prompt and "\t" not in prompt
    assert "E-104" in prompt and "Line 3" in prompt and "belt slips again" in prompt


# -- 2. the task form -----------------------------------------------------------------------------
def test_task_form_enter_walks_the_fields_and_sends_from_the_last() -> None:
    t = Strings("en")

    async def scenario(pilot: Pilot[None], app: Host) -> None:
        assert focused_id(app) == "task-code"  # the operator types at once
        await pilot.press(*"E-104", "enter")
        assert focused_id(app) == "task-machine" and app.results == []
        await pilot.press(*"Line 3", "enter")
        assert focused_id(app) == "task-notes" and app.results == []
        await pilot.press(*"belt slips", "enter")
        await pilot.pause()
        assert app.results == [build_prompt(TASKS["alarm"], {
            "code": "E-104", "machine": "Line 3", "notes": "belt slips"}, t)]
        assert not isinstance(app.screen, TaskForm)

    run_modal(TaskForm(TASKS["alarm"], t), scenario)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_task_form_without_the_required_field_stays_and_names_it(lang: str) -> None:
    t, task = Strings(lang), TASKS["step"]

    async def scenario(pilot: Pilot[None], app: Host) -> None:
        await pilot.press("enter", *"Press 7", "enter", *"step 3", "enter")
        await pilot.pause()
        assert app.results == []
        assert isinstance(app.screen, TaskForm)
        hint = app.screen.query_one("#task-hint", Static)
        assert text_of(hint) == t("task.required", field=field_label(task, "procedure", t))
        assert hint.has_class("error")
        assert focused_id(app) == "task-procedure"

    run_modal(TaskForm(task, t), scenario)


def _burst(app: Host, typed: str) -> None:
    """Keys as a slow serial line or a laggy SSH link delivers them: all in one read, before the
    console has handled the first (Pilot's `press` waits after each key, a terminal does not)."""
    for char in typed:
        app.post_message(events.Key("enter" if char == "\r" else char, char))


def test_task_form_keeps_keys_typed_ahead_in_their_fields() -> None:
    t = Strings("en")

    async def scenario(pilot: Pilot[None], app: Host) -> None:
        _burst(app, "E-104\rLine 3\rbelt slips\r")
        for _ in range(100):
            if app.results:
                break
            await pilot.pause(0.02)
        assert app.results == [build_prompt(TASKS["alarm"], {
            "code": "E-104", "machine": "Line 3", "notes": "belt slips"}, t)]

    run_modal(TaskForm(TASKS["alarm"], t), scenario)


def test_task_form_typed_ahead_without_the_required_field_waits_on_it() -> None:
    async def scenario(pilot: Pilot[None], app: Host) -> None:
        _burst(app, "\rPress 7\rstep 3\rwel")  # no procedure; the rest goes where Enter led
        await pilot.pause(0.3)
        assert app.results == [] and focused_id(app) == "task-procedure"
        form = app.screen
        assert [form.query_one(f"#task-{f}", Input).value
                for f in ("procedure", "machine", "notes")] == ["wel", "Press 7", "step 3"]

    run_modal(TaskForm(TASKS["step"], Strings("en")), scenario)


def test_task_form_escape_goes_back_without_a_prompt() -> None:
    async def scenario(pilot: Pilot[None], app: Host) -> None:
        await pilot.press(*"E-104", "escape")
        await pilot.pause()
        assert app.results == [None]
        assert not isinstance(app.screen, TaskForm)

    run_modal(TaskForm(TASKS["alarm"], Strings("en")), scenario)


# -- 2b. history times ---------------------------------------------------------------------------
@pytest.fixture
def plant_clock() -> Iterator[None]:
    """This process on a plant's clock in China (UTC+8), then back."""
    with clock_in("CST-8"):
        yield


def test_history_shows_the_time_on_the_plant_clock_not_utc(plant_clock: None) -> None:
    row = {"updated_at": "2026-11-20T22:10:00.000+00:00", "title": "E-104?",
           "last_finish_reason": "stop", "operator": "Li Wei"}
    assert row_text(row, with_operator=False) == "11-21 06:10  E-104?"  # past midnight there
    assert local_time(row["updated_at"]) == "2026-11-21 06:10:00"  # `gemba history` too
    assert local_time("yesterday") == "yesterday"  # shown as stored, not a crash


# -- 3. sign-in -----------------------------------------------------------------------------------
@pytest.mark.parametrize("typed", ["", "   ", "Wang<Fang>"])
def test_login_refuses_an_empty_or_odd_name(typed: str) -> None:
    t = Strings("en")

    async def scenario(pilot: Pilot[None], app: Host) -> None:
        await pilot.press(*typed, "enter")
        await pilot.pause()
        assert app.results == []
        assert isinstance(app.screen, LoginScreen)
        assert text_of(app.screen.query_one("#login-hint", Static)) == t("login.invalid")

    run_modal(LoginScreen(t), scenario)


@pytest.mark.parametrize(("typed", "stored"), [("  Wang   Fang ", "Wang Fang"), ("王芳", "王芳"),
                                               ("山田太郎", "山田太郎"), ("badge-17.a_b", "badge-17.a_b")])
def test_login_accepts_a_name_in_any_script(typed: str, stored: str) -> None:
    async def scenario(pilot: Pilot[None], app: Host) -> None:
        await pilot.press(*typed, "enter")
        await pilot.pause()
        assert app.results == [stored]
        assert not isinstance(app.screen, LoginScreen)

    run_modal(LoginScreen(Strings("zh")), scenario)


def test_valid_operator_allows_64_characters_not_65() -> None:
    assert MAX_OPERATOR_CHARS == 64
    assert valid_operator("a" * 64) == "a" * 64
    assert valid_operator("王" * 64) == "王" * 64
    assert valid_operator("a" * 65) is None
    assert valid_operator("Li; DROP TABLE") is None


# -- 4. health figures ----------------------------------------------------------------------------
def test_trend_of_a_steady_figure_is_a_flat_low_line() -> None:
    line = trend([55.0] * 60, 30, 95.0)
    assert len(line) == 30
    assert len(set(line)) == 1 and "█" not in line


def test_trend_shows_a_rise_and_a_dip_in_memory_and_nothing_for_no_history() -> None:
    line = trend([float(v) for v in range(100)], 20, 100.0)
    assert list(line) == sorted(line) and line[0] < line[-1]
    dip = trend([8.0, 8.0, 1.0, 8.0], 2, None, min)
    assert dip[1] < dip[0]  # the worst (lowest) reading of a span is the one drawn
    assert trend([], 30, 95.0) == "" and trend([50.0], 0, 95.0) == ""


@pytest.mark.parametrize("width", [1, 7, 30, 59, 60, 200])
def test_trend_fits_its_width(width: int) -> None:
    assert 1 <= len(trend([float(v % 9) for v in range(60)], width, 10.0)) <= width


@pytest.mark.parametrize(("name", "value", "shown"), [
    ("cpu_temp_c", 71.46, "71.5 °C"), ("gpu_temp_c", 40.0, "40.0 °C"),
    ("gpu_power_w", 42.6, "43 W"), ("box_power_w", 100.0, "100 W"),
    ("mem_available_bytes", 3.5 * 2**30, "3.50 GiB"), ("tok_per_s", 12.4, "12 tok/s"),
    ("cpu_temp_c", None, None)])
def test_format_value_uses_the_figure_unit(name: str, value: float | None,
                                           shown: str | None) -> None:
    assert format_value(name, value) == shown


BODY: dict[str, Any] = {
    "seconds": 300,
    "governor": {"mode": "slowed", "duty": 0.6, "severity": "careful", "reason": "CPU hot"},
    "latest": {"cpu_temp_c": {"value": 82.0, "severity": "careful"},
               "gpu_temp_c": {"value": None, "severity": None},
               "mem_available_bytes": {"value": 4e9, "severity": "ok"}},
    "limits": {"cpu_temp_c": {"careful": 80.0, "warning": 90.0, "critical": 95.0},
               "mem_available_bytes": {"reserve": 2**30}},
    "samples": [{"t": 1.0, "cpu_temp_c": 80.0, "gpu_temp_c": None, "mem_available_bytes": 4e9},
                {"t": 2.0, "cpu_temp_c": None, "gpu_temp_c": None, "mem_available_bytes": 3e9},
                {"t": 3.0, "cpu_temp_c": 82.0, "gpu_temp_c": None, "mem_available_bytes": 4e9}],
}


def test_telemetry_from_builds_one_figure_per_row() -> None:
    telemetry = telemetry_from(BODY, {"state": "throttled"})
    figures = {f.name: f for f in telemetry.figures}
    assert tuple(figures) == FIGURES
    assert figures["cpu_temp_c"] == Figure("cpu_temp_c", 82.0, "careful", (80.0, 82.0), 95.0)
    assert figures["gpu_temp_c"] == Figure("gpu_temp_c", None, None, (), None)
    assert figures["mem_available_bytes"].history == (4e9, 3e9, 4e9)
    assert figures["mem_available_bytes"].high is None
    assert (telemetry.engine_state, telemetry.mode, telemetry.duty, telemetry.reason) == (
        "throttled", "slowed", 0.6, "CPU hot")
    assert telemetry_from(BODY, None).engine_state == "offline"
    empty = telemetry_from({"governor": None, "latest": {}, "limits": {}, "samples": []}, None)
    assert all(f.value is None and f.history == () for f in empty.figures)


GIB = 2**30
REASON_BUDGETS = Budgets(cpu_temp_c=Limits(70.0, 80.0, 90.0), box_power_w=20.0,
                         mem_reserve_bytes=2 * GIB)


def _reading(cpu: float | None = 50.0, power: float | None = None, mem_gib: float = 8.0,
             ) -> Sample:
    return Sample(at_s=0.0, cpu_temp_c=cpu, gpu_temp_c=None, gpu_power_w=None,
                  box_power_w=power, gpu_throttle=(), mem_available_bytes=int(mem_gib * GIB),
                  process_rss_bytes=None, cpu_percent=0.0)


def _explained(lang: str, *readings: Sample | None, budgets: Budgets = REASON_BUDGETS) -> str:
    """What F4 says of the real governor's decision on these readings, one a second (None: no
    reading that second), through the API's own views of the decision and the limits."""
    decision, last_seen = initial(0.0), 0.0
    for now, reading in enumerate(readings, start=1):
        last_seen = now if reading is not None else last_seen
        decision = decide(decision, reading, budgets, float(now), last_seen)
    body = {"governor": decision_view(decision, float(len(readings))),
            "limits": limits_view(budgets), "latest": {}, "samples": []}
    return explain(telemetry_from(body, {"state": "ready"}), Strings(lang))


@pytest.mark.parametrize(("readings", "expected"), [
    ((_reading(60.0),), {"en": "CPU temperature 60.0 °C, below careful 70 °C.",
                         "zh": "CPU 温度 60.0 °C，低于注意线 70 °C。"}),
    ((_reading(75.0),), {"en": "CPU temperature 75.0 °C reached careful 70 °C: slowing to stay "
                               "under 80 °C.",
                         "ja": "CPU 温度 75.0 °C、注意 70 °C 以上：80 °C 未満に保つため減速中。"}),
    ((_reading(50.0, power=21.0),), {"zh": "整机功率 21 W，已达警告线 20 W：新问题需等待。"}),
    ((_reading(92.0),), {"ja": "CPU 温度 92.0 °C、危険 90 °C 以上：回答を停止しました。"}),
    ((_reading(50.0, mem_gib=1.5),), {"en": "Free memory 1.50 GiB is below the reserve of "
                                            "2.00 GiB: new questions wait."}),
    ((_reading(cpu=None),), {"zh": "读不到温度传感器：为安全起见以 60% 速度运行。"}),
    ((_reading(50.0), *[None] * 6), {"ja": "測定値が古くなっています：安全のため速度 60% で運転中。"}),
    ((_reading(85.0), *[None] * 6), {"zh": "读数已过时：保持上一次的报警。"}),
])
def test_the_governors_reason_is_said_in_the_operators_language(
        readings: tuple[Sample | None, ...], expected: dict[str, str]) -> None:
    for lang, words in expected.items():
        assert _explained(lang, *readings) == words


def test_a_box_without_sensors_says_no_limits_apply() -> None:
    unwatched = replace(REASON_BUDGETS, box_power_w=None, sensors_expected=False)
    assert _explained("ja", _reading(cpu=None), budgets=unwatched) == \
        "この装置にはセンサーがないため、制限はありません。"


def test_a_cause_this_console_does_not_know_reads_in_the_daemons_words() -> None:
    body = {"governor": {"mode": "slowed", "duty": 0.5, "reason": "fan failed: slowing",
                         "cause": "fan"}, "latest": {}, "limits": {}, "samples": []}
    assert explain(telemetry_from(body, None), Strings("zh")) == "fan failed: slowing"
    older = {"governor": {"mode": "slowed", "duty": 0.5, "reason": "cpu temperature 75 °C"}}
    assert explain(telemetry_from(older, None), Strings("ja")) == "cpu temperature 75 °C"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_failed_question_says_what_to_do_and_unknown_failures_keep_the_daemons_words(
        lang: str) -> None:
    t = Strings(lang)
    for kind in ("busy", "not_ready", "daemon_unavailable", "engine_error", "unauthorized",
                 "request_too_large"):
        said = t.failure(kind, "english detail")
        assert said and said != "english detail"
        assert lang == "en" or said != Strings("en").failure(kind, ""), "translated"
    assert t.failure("storage_error", "the disk is full") == "the disk is full"


# -- 5. one health row ----------------------------------------------------------------------------
@pytest.mark.parametrize(("lang", "word"), [("en", "WARNING"), ("zh", "警告"), ("ja", "警告")])
def test_figure_row_shows_value_severity_and_class(lang: str, word: str) -> None:
    t = Strings(lang)

    async def main() -> None:
        app = Host(FigureRow("cpu_temp_c", t))
        async with app.run_test(size=(80, 24)) as pilot:
            row = app.query_one(FigureRow)
            row.show(Figure("cpu_temp_c", 71.5, "warning", (60.0, 71.5), 95.0))
            await pilot.pause()
            texts = [text_of(s) for s in row.query(Static)]
            assert word in texts and "71.5 °C" in texts
            assert row.has_class("warning")
            assert not row.has_class("ok", "careful", "critical", "unmeasured")
            row.show(Figure("cpu_temp_c", None, None, (), None))
            await pilot.pause()
            texts = [text_of(s) for s in row.query(Static)]
            assert t("health.no_reading") in texts and word not in texts
            assert row.has_class("unmeasured") and not row.has_class("warning")

    asyncio.run(main())


# -- 6. the governor's view of one figure ---------------------------------------------------------
BUDGETS = Budgets(cpu_temp_c=Limits(80.0, 90.0, 95.0), box_power_w=100.0,
                  mem_reserve_bytes=2**30)


@pytest.mark.parametrize(("name", "value", "severity"), [
    ("cpu_temp_c", 79.9, Severity.OK), ("cpu_temp_c", 80.0, Severity.CAREFUL),
    ("cpu_temp_c", 90.0, Severity.WARNING), ("cpu_temp_c", 95.0, Severity.CRITICAL),
    ("box_power_w", 89.0, Severity.OK), ("box_power_w", 95.0, Severity.CAREFUL),
    ("box_power_w", 100.0, Severity.WARNING), ("box_power_w", 111.0, Severity.CRITICAL),
    ("mem_available_bytes", 2**30 - 1, Severity.WARNING),
    ("mem_available_bytes", 2**30 + 1, Severity.OK),
    ("gpu_temp_c", 99.0, None), ("gpu_power_w", 300.0, None), ("tok_per_s", 1.0, None),
    ("cpu_temp_c", None, None), ("mem_available_bytes", None, None)])
def test_figure_severity_against_the_budgets(name: str, value: float | None,
                                             severity: Severity | None) -> None:
    assert figure_severity(name, value, BUDGETS) == severity


def test_only_budgeted_figures_have_limits() -> None:
    limits = limits_for(BUDGETS)
    assert set(limits) == {"cpu_temp_c", "box_power_w"}
    power = limits["box_power_w"]
    assert (power.careful, power.warning, power.critical) == pytest.approx((90.0, 100.0, 110.0))
    gpu = Limits(75.0, 85.0, 92.0)
    assert limits_for(Budgets(BUDGETS.cpu_temp_c, gpu_temp_c=gpu)) == {
        "cpu_temp_c": BUDGETS.cpu_temp_c, "gpu_temp_c": gpu}
    no_reserve = Budgets(BUDGETS.cpu_temp_c)  # memory without a reserve is never a warning
    assert figure_severity("mem_available_bytes", 1, no_reserve) == Severity.OK


# -- 7/8. stores ----------------------------------------------------------------------------------
def _history(tmp_path: Path) -> tuple[Any, dict[str, int]]:
    db = open_store(tmp_path / "gemba.db")
    ids = {}
    for key, operator, question in [("li_alarm", "Li", "Alarm E-104 on line 3"),
                                    ("li_sop", "Li", "Next step of SOP-12"),
                                    ("wang_alarm", "Wang", "Alarm E-104 again"),
                                    ("lin_alarm", "Lin", "E-104 on press 7"),
                                    ("nobody", None, "E-104?")]:
        ids[key] = start_conversation(db, question, "m", operator=operator)
        add_question(db, ids[key], question)
    return db, ids


def test_list_conversations_keeps_only_that_operators(tmp_path: Path) -> None:
    db, ids = _history(tmp_path)
    assert {c["id"] for c in list_conversations(db, operator="Li")} == {
        ids["li_alarm"], ids["li_sop"]}
    assert [c["id"] for c in list_conversations(db, query="E-104", operator="Li")] == [
        ids["li_alarm"]]
    assert len(list_conversations(db)) == 5
    assert list_conversations(db, operator="Zhao") == []


def _sample(cpu: float) -> Sample:
    return Sample(at_s=0.0, cpu_temp_c=cpu, gpu_temp_c=None, gpu_power_w=None, box_power_w=None,
                  gpu_throttle=(), mem_available_bytes=4 * 2**30, process_rss_bytes=None,
                  cpu_percent=10.0)


def test_telemetry_recent_returns_the_window_oldest_first(tmp_path: Path) -> None:
    store = TelemetryStore(tmp_path / "telemetry.db")
    try:
        for wall_t, cpu in [(1290.0, 74.0), (1000.0, 60.0), (1250.0, 72.0), (1100.0, 65.0)]:
            store.record(_sample(cpu), "normal", 1.0, None, wall_t=wall_t)
        rows = store.recent(200, now=1300.0)
        assert [(r["t"], r["cpu_temp_c"]) for r in rows] == [
            (1100.0, 65.0), (1250.0, 72.0), (1290.0, 74.0)]
        assert [r["t"] for r in store.recent(60, now=1300.0)] == [1250.0, 1290.0]
        assert store.recent(5, now=1300.0) == []
    finally:
        store.close()


# -- 9. the API -----------------------------------------------------------------------------------
TELEMETRY = "/v1/appliance/telemetry"


def api_get(db: Any, url: str, telemetry: Callable[[float], dict[str, Any]] | None = None,
            **params: Any) -> httpx.Response:
    """The real routes over a real store, called in-process; no engine (never reached)."""
    service = ChatService(db, cast(Any, None), cast(Any, None), "m", "a" * 64, "")
    app = create_app(service, Settings(), lambda: {"ready": True}, telemetry=telemetry)

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://localhost") as client:
            return await client.get(url, params=params)

    return asyncio.run(call())


@pytest.mark.parametrize("seconds", ["0", "100000", "-5"])
def test_telemetry_route_refuses_a_window_out_of_range(tmp_path: Path, seconds: str) -> None:
    response = api_get(open_store(tmp_path / "gemba.db"), TELEMETRY, seconds=seconds)
    assert response.status_code == 400
    assert "'seconds'" in response.json()["error"]["message"]


def test_telemetry_route_passes_the_window_on(tmp_path: Path) -> None:
    asked: list[float] = []

    def telemetry(seconds: float) -> dict[str, Any]:
        asked.append(seconds)
        return BODY

    db = open_store(tmp_path / "gemba.db")
    # The health rides along, so the Health screen needs one request per refresh.
    assert api_get(db, TELEMETRY, telemetry, seconds=60).json() == {**BODY, "health": {"ready": True}}
    assert api_get(db, TELEMETRY, telemetry).status_code == 200
    assert asked == [60.0, 300.0]


def test_conversations_route_honours_operator(tmp_path: Path) -> None:
    db, ids = _history(tmp_path)
    url = "/v1/appliance/conversations"
    mine = api_get(db, url, operator="Li").json()["data"]
    assert {c["id"] for c in mine} == {ids["li_alarm"], ids["li_sop"]}
    assert {c["operator"] for c in mine} == {"Li"}
    both = api_get(db, url, operator="Li", q="E-104").json()["data"]
    assert [c["id"] for c in both] == [ids["li_alarm"]]
    assert len(api_get(db, url, operator="").json()["data"]) == 5  # empty: everyone


@pytest.mark.model
def test_real_daemon_telemetry_feeds_the_health_screen(daemon: GembaHome) -> None:
    deadline = time.monotonic() + 10  # the governor's first sample comes a tick after start
    while True:
        response = httpx.get(daemon.url + TELEMETRY, params={"seconds": 60})
        assert response.status_code == 200
        body = response.json()
        if body["latest"]["mem_available_bytes"]["value"] is not None or \
                time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {"latest", "limits", "samples", "governor"} <= set(body)
    assert body["latest"]["mem_available_bytes"]["value"] > 0
    for name, figure in body["latest"].items():
        if figure["value"] is None:
            assert figure["severity"] is None, name
    telemetry = telemetry_from(body, daemon.health())
    assert telemetry.engine_state == "ready"
    assert telemetry.mode in ("normal", "slowed", "paused", "refused")


# -- 10. sources, passages, documents -------------------------------------------------------------
CITATION = {"n": 1, "document": "SOP-PR-012", "title": "SOP-PR-012 Die change", "file": "x.pdf",
            "revision": "3", "section": "4 Die change", "page": 3, "text": "…", "passage_id": 7}


@pytest.mark.parametrize(("lang", "line"), [
    ("en", "[1] SOP-PR-012 · rev 3 · 4 Die change · p. 3"),
    ("zh", "[1] SOP-PR-012 · rev 3 · 4 Die change · 第 3 页"),
    ("ja", "[1] SOP-PR-012 · rev 3 · 4 Die change · 3 ページ"),
])
def test_a_citation_reads_document_revision_section_page(lang: str, line: str) -> None:
    assert cite_line(CITATION, Strings(lang)) == line


def test_a_citation_leaves_out_what_the_passage_lacks_and_never_carries_controls() -> None:
    t = Strings("en")
    bare = CITATION | {"section": "", "page": None}
    assert cite_line(bare, t) == "[1] SOP-PR-012 · rev 3"
    hostile = CITATION | {"document": "SOP\x1b[31m-9", "section": "4\n[bold]Die[/bold]"}
    assert cite_line(hostile, t) == "[1] SOP-9 · rev 3 · 4 [bold]Die[/bold] · p. 3"
    # A refusal's nearest documents go by title (with the number when the title lacks it).
    assert nearest_line(CITATION, t) == "[1] SOP-PR-012 Die change · rev 3 · 4 Die change · p. 3"
    assert nearest_line(CITATION | {"title": "Die change"}, t).startswith(
        "[1] SOP-PR-012 Die change · rev 3")


def test_snippet_cuts_by_terminal_cells_not_characters() -> None:
    assert snippet("a  b\n c", 10) == "a b c"
    cut = snippet("泵" * 100, 21)
    assert cut == "泵" * 10 + "…" and cell_len(cut) <= 21
    assert snippet("Check\x07 the valve", 40) == "Check the valve"


def test_passage_heading_shows_only_the_fields_the_passage_has() -> None:
    passage = {"document": "LOTO-001", "title": "Lockout", "revision": "4", "section": "",
               "page": None, "file": "LOTO-001_rev4.md", "text": "…"}
    assert passage_heading(passage, Strings("zh")).splitlines() == [
        "文件：LOTO-001", "标题：Lockout", "版本：4", "文件名：LOTO-001_rev4.md"]


def _unreachable() -> ApplianceClient:
    return ApplianceClient(f"http://127.0.0.1:{free_port()}")


def _keys_at_once(app: Host, *keys: str) -> None:
    """Keys in one read, as a laggy line delivers them (see `_burst`), function keys too."""
    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else None))


def test_a_number_typed_right_behind_f8_opens_that_source() -> None:
    """A glove presses F8 then 2 faster than the screen redraws: the second source opens; the
    daemon is out of reach, so the passage screen says so in the operator's language."""
    t, client = Strings("en"), _unreachable()
    cited = [CITATION, CITATION | {"n": 2, "section": "5 Tools", "passage_id": 8}]

    async def scenario(pilot: Pilot[None], app: Host) -> None:
        ask = app.screen
        assert isinstance(ask, AskScreen)
        await ask.query_one("#transcript").mount(Sources(cited, t("sources.title"), t))
        await pilot.pause()
        _keys_at_once(app, "f8", "2")
        await wait_for(pilot, lambda: isinstance(app.screen, PassageScreen), "the passage", 15)
        passage = app.screen
        assert isinstance(passage, PassageScreen) and passage.passage_id == 8
        text = passage.query_one("#passage-text", Static)
        await wait_for(pilot, lambda: text.has_class("error"), "why it cannot open", 15)
        # As History says it: the reason in the appliance's words, for the engineer.
        assert text_of(text).startswith(t("passage.failed", message="lost the connection"))
        await wait_for(pilot, lambda: "Esc Back" in screen_text(app).splitlines()[-1],
                       "Esc in the footer, going back", 15)
        await pilot.press("escape")
        assert app.screen is ask

    try:
        run_modal(AskScreen(client, t, lambda state: None), scenario)
    finally:
        client.close()


def test_f8_without_sources_says_there_are_none() -> None:
    t, client = Strings("zh"), _unreachable()

    async def main() -> None:
        app = Host()
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await app.push_screen(AskScreen(client, t, lambda state: None))
            await pilot.press("f8")
            said = t("sources.missing").split("：")[0]  # the toast wraps the rest
            await wait_for(pilot, lambda: said in screen_text(app), "the notice", 15)
            assert app.focused is app.screen.query_one("#question"), "the cursor stays put"

    try:
        asyncio.run(main())
    finally:
        client.close()


def test_a_passage_of_a_replaced_revision_says_so() -> None:
    t, client = Strings("ja"), _unreachable()

    async def scenario(pilot: Pilot[None], app: Host) -> None:
        screen = app.screen
        assert isinstance(screen, PassageScreen)
        text = screen.query_one("#passage-text", Static)
        await wait_for(pilot, lambda: text.has_class("error"), "no daemon", 15)  # first
        old = {"document": "SOP-PR-012", "revision": "2", "text": "古い\x1b[31m手順", "current": False}
        screen.post_message(PassageLoaded(old))
        await wait_for(pilot, lambda: screen.shown is not None, "the passage", 15)
        assert screen.query_one("#passage-superseded").display
        assert t("passage.superseded") in screen_text(app)
        assert text_of(text) == "古い手順" and not text.has_class("error")

    try:
        run_modal(PassageScreen(client, t, 5), scenario)
    finally:
        client.close()


def test_documents_screen_says_when_the_appliance_is_out_of_reach() -> None:
    t, client = Strings("zh"), _unreachable()

    async def scenario(pilot: Pilot[None], app: Host) -> None:
        note = app.screen.query_one("#documents-note", Static)
        assert text_of(note) == t("documents.hint")
        await pilot.press("enter")  # nothing typed: the hint again, nothing asked
        assert text_of(note) == t("documents.hint")
        await pilot.press("泵", "enter")
        said = t("documents.failed", message="lost the connection to the appliance")
        await wait_for(pilot, lambda: text_of(note).startswith(said), "why", 15)
        assert note.has_class("error")

    try:
        run_modal(DocumentsScreen(client, t), scenario)
    finally:
        client.close()

