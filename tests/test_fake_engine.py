"""The scripted engine runs in the real worker behind the real supervisor: answers at a known
pace, refusals, crashes and bad scripts, so tests of the queue, API and console need no model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from appliance.config import GenerationSettings, ModelSettings
from appliance.errors import ConfigError
from appliance.inference.factory import engine_config
from appliance.inference.fake import FakeEngine, FakeScript
from appliance.inference.protocol import (
    Finished,
    GenerationRequest,
    Piece,
    Prompt,
    Refused,
    generate,
)
from tests.conftest import GembaHome

SCRIPT = {"answer": "Check the belt tension, then reset the alarm.", "tokens_per_s": 500,
          "rules": [{"when": "E-999", "refuse": "prompt_too_long"},
                    {"when": "crash", "crash_after": 2}]}


def _engine(script: dict, n_ctx: int = 512) -> FakeEngine:
    config = engine_config(ModelSettings(n_ctx=n_ctx), GenerationSettings(), "fake",
                           Path("/nonexistent"), "0" * 64, {"GEMBA_FAKE_ENGINE": json.dumps(script)})
    return FakeEngine(config)


def _run(engine: FakeEngine, question: str, **kwargs: object) -> list[object]:
    request = GenerationRequest(({"role": "user", "content": question},), **{
        "max_tokens": 64, "temperature": 0.0, **kwargs})
    return list(generate(engine, request, lambda: False))


def test_the_script_is_answered_word_by_word_and_stops_where_asked() -> None:
    engine = _engine(SCRIPT)
    events = _run(engine, "What now?")
    assert isinstance(events[0], Prompt)
    assert "".join(e.text for e in events if isinstance(e, Piece)) == SCRIPT["answer"]
    assert events[-1] == Finished("stop", events[0].prompt_tokens, 8, events[-1].ttft_s,
                                  events[-1].decode_s)
    short = _run(engine, "What now?", max_tokens=3)
    assert "".join(e.text for e in short if isinstance(e, Piece)) == "Check the belt "
    assert short[-1].finish_reason == "length"
    stopped = _run(engine, "What now?", stop=(", then",))
    assert "".join(e.text for e in stopped if isinstance(e, Piece)) == "Check the belt tension"
    assert stopped[-1].finish_reason == "stop"


def test_rules_refuse_by_question() -> None:
    events = _run(_engine(SCRIPT), "What is E-999?")
    assert events == [Refused("prompt_too_long", "the fake engine refuses: prompt_too_long",
                              "this is a test script")]


@pytest.mark.parametrize("script", ["[1]", "{\"answr\": \"x\"}", "{\"rules\": [{\"x\": 1}]}",
                                    "not json"])
def test_a_bad_script_is_a_config_error_naming_the_variable(script: str) -> None:
    with pytest.raises(ConfigError) as error:
        engine_config(ModelSettings(), GenerationSettings(), "fake", Path("x"), "0" * 64,
                      {"GEMBA_FAKE_ENGINE": script})
    assert "GEMBA_FAKE_ENGINE" in error.value.message


def test_a_daemon_on_the_fake_engine_answers_and_restarts_after_a_crash(
        gemba_home: GembaHome) -> None:
    gemba_home.extra_env["GEMBA_FAKE_ENGINE"] = json.dumps(SCRIPT)
    gemba_home.start_daemon()
    chat = f"{gemba_home.url}/v1/chat/completions"
    answered = httpx.post(chat, timeout=30, json={
        "messages": [{"role": "user", "content": "What now?"}], "knowledge": "off"})
    assert answered.json()["choices"][0]["message"]["content"] == SCRIPT["answer"]
    crashed = httpx.post(chat, timeout=30, json={
        "messages": [{"role": "user", "content": "crash please"}], "knowledge": "off"})
    assert crashed.status_code == 503
    deadline = time.monotonic() + 30
    while (gemba_home.health() or {}).get("state") != "ready":
        assert time.monotonic() < deadline, "the worker was not restarted"
        time.sleep(0.1)
    assert gemba_home.health()["restarts"] == 1
    again = httpx.post(chat, timeout=30, json={
        "messages": [{"role": "user", "content": "What now?"}], "knowledge": "off"})
    assert again.json()["choices"][0]["message"]["content"] == SCRIPT["answer"]


def test_fake_script_parses_rules_as_replacements() -> None:
    script = FakeScript.parse(json.dumps(SCRIPT))
    assert script.for_question("crash now").crash_after == 2
    assert script.for_question("hello").crash_after is None
