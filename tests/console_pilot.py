"""Helpers for the console tests: what the screen shows, waiting for it, running a Pilot scenario
with its client closed afterwards, and a small plant library to import into a test appliance."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from textual.app import App
from textual.pilot import Pilot

from appliance.client import ApplianceClient
from tests.conftest import GembaHome

T = TypeVar("T")


def screen_text(app: App[Any]) -> str:
    """What the screen shows right now, as plain text lines."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def wait_for(pilot: Pilot[Any], condition: Callable[[], bool],
                   what: str = "what the test expects", timeout_s: float = 120) -> None:
    """Until `condition` holds; on timeout, fail showing the screen."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:.0f} s waiting for {what}; "
                                 f"the screen shows:\n{screen_text(pilot.app)}")
        await pilot.pause(0.05)


def run_closing(client: ApplianceClient, scenario: Callable[[], Awaitable[T]]) -> T:
    """Run the scenario (an exception escaping the app surfaces here), then close the client."""
    try:
        return asyncio.run(scenario())
    finally:
        client.close()


def folded(text: str) -> str:
    """Whitespace folded: a line wrapped at 80 columns reads the same as the text unwrapped."""
    return " ".join(text.split())


def unspaced(text: str) -> str:
    """Without any whitespace: CJK text wrapped mid-word (no spaces to fold) still compares."""
    return "".join(text.split())


# A plant's documents as an engineer writes them: a Chinese pump SOP, an English lockout procedure
# and a Japanese conveyor check, each with its document number and revision in the file name.
PUMP_ALARM = ("吸入压力低于 0.12 MPa 时触发报警 P-22。操作员应立即检查进口过滤器是否堵塞，"
              "并确认储罐液位高于 1.5 米。",
              "报警 P-22 持续 5 分钟以上时，停泵并通知维修班组。")
"""The two paragraphs of SOP-PU-007 section 5: one passage."""
APPLY_LOCKS = ("Switch the main disconnect to OFF. Each person working on the machine applies "
               "their own padlock and tag to the disconnect. Verify zero energy by pressing the "
               "start button: the machine must not move.")
"""LOTO-001 section 4, one passage."""
PLANT_DOCUMENTS = {
    "SOP-PU-007_rev2.md": "\n\n".join([
        "# SOP-PU-007 离心泵操作规程", "## 3 启动前检查", "确认进口阀门全开，出口阀门关闭。检查泵体无泄漏。",
        "## 5 报警处理", *PUMP_ALARM]),
    "LOTO-001_rev4.md": "\n\n".join([
        "# LOTO-001 Lockout and tagout procedure", "## 2 Before you start",
        "Notify all affected operators that the machine will be shut down for service.",
        "## 4 Apply the locks", APPLY_LOCKS, "## 6 Remove the locks",
        "Only the person who applied a lock may remove it. Check that all guards are back in "
        "place before removing the last lock."]),
    "SOP-CV-003_rev1.md": "\n\n".join([
        "# SOP-CV-003 コンベヤ点検手順", "## 2 ベルトの張り",
        "ベルトのたわみが 15 mm を超えたら、テンション調整ボルトで張りを調整する。",
        "## 4 非常停止", "異常音がしたら非常停止ボタンを押し、班長に連絡する。"]),
}


def import_plant_documents(home: GembaHome, folder: Path) -> dict[str, Any]:
    """Write the plant documents into `folder` and import them as an engineer does (`gemba docs
    import FOLDER`); the daemon in `home` is started if it is not running."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in PLANT_DOCUMENTS.items():
        (folder / name).write_text(text + "\n", encoding="utf-8")
    result = home.gemba("docs", "import", str(folder), "--json", check=True)
    report = json.loads(result.stdout)
    assert report["failed"] == 0 and report["imported"] == len(PLANT_DOCUMENTS), report
    return report
