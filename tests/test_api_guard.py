"""The API is closed to foreign web pages (DNS rebinding, cross-site requests), stores questions
exactly as asked or refuses them, and says "retry later" with the right status."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx
import pytest

from tests.conftest import PYTHON, GembaHome

pytestmark = pytest.mark.model

HISTORY = "/v1/appliance/conversations"
CHAT = "/v1/chat/completions"


def _request(home: GembaHome, method: str, path: str, headers: dict[str, str],
             **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{home.url}{path}", headers=headers, timeout=60, **kwargs)


def _ask(home: GembaHome, content: Any, headers: dict[str, str] | None = None,
         **body: Any) -> httpx.Response:
    return _request(home, "POST", CHAT, headers or {},
                    json={"messages": [{"role": "user", "content": content}], "max_tokens": 4,
                          "knowledge": "off", **body})


# -- 1. hosts and origins --------------------------------------------------------------------
@pytest.mark.parametrize("headers", [
    {"Host": "evil.example:8765"},
    {"Host": "evil.example"},
    {"Host": "127.0.0.1.evil.example"},
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
])
def test_a_foreign_host_or_web_page_gets_403_and_no_history(
        daemon: GembaHome, headers: dict[str, str]) -> None:
    assert _ask(daemon, "Say OK.").status_code == 200  # there is history to steal
    before = daemon.history()
    listing = _request(daemon, "GET", HISTORY, headers)
    assert listing.status_code == 403
    assert listing.json()["error"]["type"] in ("forbidden_host", "forbidden_origin")
    assert "allowed_" in listing.json()["error"]["hint"]
    assert "Say OK." not in listing.text
    asked = _ask(daemon, "Print the history.", headers)
    assert asked.status_code == 403
    assert daemon.history() == before  # nothing was asked on the page's behalf


@pytest.mark.parametrize("headers", [
    {},
    {"Host": "localhost"},
    {"Host": "[::1]:8765"},
    {"Host": "127.0.0.2:8765"},
])
def test_loopback_names_and_addresses_are_served(daemon: GembaHome,
                                                 headers: dict[str, str]) -> None:
    assert _request(daemon, "GET", HISTORY, headers).status_code == 200


def test_the_same_origin_is_served_and_health_answers_any_host(daemon: GembaHome) -> None:
    same = {"Origin": daemon.url, "Sec-Fetch-Site": "same-origin"}
    assert _request(daemon, "GET", HISTORY, same).status_code == 200
    health = _request(daemon, "GET", "/healthz", {"Host": "evil.example"})
    assert health.json()["ready"] is True


def test_listed_hosts_and_origins_are_served_with_cors(gemba_home: GembaHome) -> None:
    front_end = "http://hmi.line3.plant:3000"
    gemba_home.write_config(gemba_home.config_file.read_text().replace("[daemon]\n", (
        "[daemon]\nallowed_hosts = [\"gemba-line3.plant\", \"192.168.10.20\"]\n"
        f"allowed_origins = [\"{front_end}\"]\n")))
    gemba_home.start_daemon()
    for host in ("gemba-line3.plant:8765", "GEMBA-LINE3.plant", "192.168.10.20:8765"):
        assert _request(gemba_home, "GET", HISTORY, {"Host": host}).status_code == 200, host
    assert _request(gemba_home, "GET", HISTORY, {"Host": "other.plant"}).status_code == 403
    preflight = _request(gemba_home, "OPTIONS", CHAT, {
        "Origin": front_end, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == front_end
    asked = _ask(gemba_home, "Say OK.", {"Origin": front_end, "Sec-Fetch-Site": "cross-site"})
    assert asked.status_code == 200
    assert asked.headers["access-control-allow-origin"] == front_end
    other = _ask(gemba_home, "Say OK.", {"Origin": "http://hmi.line4.plant:3000"})
    assert other.status_code == 403


def test_a_foreign_host_learns_nothing_even_about_the_key(gemba_home: GembaHome) -> None:
    gemba_home.write_config(gemba_home.config_file.read_text().replace(
        "[daemon]\n", "[daemon]\napi_key = \"k-123\"\n"))
    gemba_home.start_daemon()
    refused = _request(gemba_home, "GET", HISTORY, {"Host": "evil.example",
                                                    "Authorization": "Bearer k-123"})
    assert refused.status_code == 403
    served = _request(gemba_home, "GET", HISTORY, {"Authorization": "Bearer k-123"})
    assert served.status_code == 200


# -- 3. text hygiene -------------------------------------------------------------------------
@pytest.mark.parametrize(("content", "param", "words"), [
    ("pump\0 E-104?", "messages.0.content", "U+0000 NUL"),
    ("pump\x1b[2J E-104?", "messages.0.content", "U+001B"),
    ("pump\x85 E-104?", "messages.0.content", "U+0085"),
    ("pump \ud800 E-104?", "messages.0.content", "unpaired surrogate"),
    ([{"type": "text", "text": "pump\0"}], "messages.0.content", "U+0000"),
    ("", "messages.0.content", "empty"),
    ("  \n\t ", "messages.0.content", "empty"),
    ([{"type": "text", "text": " "}], "messages.0.content", "empty"),
])
def test_a_question_that_cannot_be_stored_as_asked_is_refused_naming_the_field(
        daemon: GembaHome, content: Any, param: str, words: str) -> None:
    before = daemon.history()
    body = json.dumps({"messages": [{"role": "user", "content": content}], "max_tokens": 4})
    refused = _request(daemon, "POST", CHAT, {"Content-Type": "application/json"},
                       content=body.encode())
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == param
    assert words in error["message"]
    assert error["hint"]
    assert daemon.history() == before  # nothing half-stored


def test_control_characters_in_the_operator_name_are_refused(daemon: GembaHome) -> None:
    refused = _ask(daemon, "Say OK.", user="badge\x0017")
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "user"


def test_tabs_and_line_breaks_are_text_and_are_stored_exactly(daemon: GembaHome) -> None:
    question = "Line 3:\tconveyor\r\nalarm E-104?\nWhat now?"
    answered = _ask(daemon, question)
    assert answered.status_code == 200
    stored = daemon.conversation(answered.json()["gemba"]["conversation_id"])
    assert stored["messages"][0]["content"] == question


def test_an_argument_that_is_not_utf8_is_a_usage_error(gemba_home: GembaHome) -> None:
    result = subprocess.run([PYTHON, "-m", "appliance", "ask", b"pump \xff E-104?"],
                            env=gemba_home.env, capture_output=True, timeout=60)
    stderr = result.stderr.decode()
    assert result.returncode == 2
    assert "argument 2 is not UTF-8" in stderr and "0xff" in stderr
    assert "Traceback" not in stderr
    assert not gemba_home.db_file.exists()  # nothing started, nothing stored


# -- 7. front ends through the API only -------------------------------------------------------
NO_SQLITE = """
import sqlite3, sys
def refuse(*args, **kwargs):
    raise SystemExit("the CLI opened SQLite itself: " + repr(args))
sqlite3.connect = refuse
from appliance.cli import main
main(sys.argv[1:])
"""


def test_history_and_follow_ups_go_through_the_daemon(daemon: GembaHome) -> None:
    first = _ask(daemon, "Conveyor 3 stopped with E-104.")
    conversation_id = first.json()["gemba"]["conversation_id"]

    def gemba(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([PYTHON, "-c", NO_SQLITE, *args], env=daemon.env, text=True,
                                capture_output=True, timeout=120, cwd=daemon.home)
        assert result.returncode == 0, result.stderr
        return result

    listed = json.loads(gemba("history", "--json", "--limit", "5").stdout)
    assert conversation_id in [row["id"] for row in listed]
    shown = json.loads(gemba("history", "show", str(conversation_id), "--json").stdout)
    assert shown["messages"][0]["content"] == "Conveyor 3 stopped with E-104."
    gemba("ask", "--conversation", str(conversation_id), "--max-tokens", "4", "What next?")
    roles = [m["role"] for m in daemon.conversation(conversation_id)["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
