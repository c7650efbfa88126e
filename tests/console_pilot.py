"""Helpers for driving the console with Textual's Pilot: what the screen shows, waiting for it,
and running a scenario with its client closed afterwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from textual.app import App
from textual.pilot import Pilot

from appliance.client import ApplianceClient

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
