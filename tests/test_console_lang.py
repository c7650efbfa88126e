"""The console speaks the operator's language and says when the appliance is out of reach."""

from __future__ import annotations

import re

import pytest

from appliance.client import ApplianceClient
from appliance.console.app import ConsoleApp
from appliance.console.i18n import CATALOG, LANGUAGES, Strings
from tests.conftest import free_port
from tests.console_pilot import run_closing, screen_text, wait_for

PLACEHOLDER = re.compile(r"{(\w+)}")


def test_every_language_has_every_string_with_the_same_placeholders() -> None:
    english = CATALOG["en"]
    for lang in LANGUAGES:
        assert set(CATALOG[lang]) == set(english), lang
        for key, text in CATALOG[lang].items():
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(english[key])), \
                (lang, key)


def test_unknown_language_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'fr'"):
        Strings("fr")


@pytest.mark.parametrize("lang, offline, placeholder, cancel_key", [
    ("en", "offline: reconnecting", "Type a question and press Enter", "Cancel"),
    ("zh", "离线：正在重连", "输入问题后按回车", "取消"),
    ("ja", "オフライン：再接続中", "質問を入力して Enter", "取消"),
])
def test_console_in_each_language_says_it_is_offline(lang: str, offline: str, placeholder: str,
                                                     cancel_key: str) -> None:
    client = ApplianceClient(f"http://127.0.0.1:{free_port()}")
    app = ConsoleApp(client, "smollm2-135m-instruct-q4_1", operator="tester", lang=lang)

    async def scenario() -> str:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: offline in screen_text(app)
                           and cancel_key in screen_text(app), "the offline status", 15)
            return screen_text(app)

    screen = run_closing(client, scenario)
    first_line = screen.splitlines()[0]
    assert offline in first_line
    assert placeholder in screen
    assert cancel_key in screen  # the footer's keys are translated too
    assert not app.use_command_palette  # operators get no developer palette
