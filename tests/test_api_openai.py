"""The official `openai` client against the real daemon and model, with the parameters real chat
front ends send: what it can honour works, what it cannot is refused by name."""

from __future__ import annotations

import collections
import json
from typing import Any

import openai
import pytest

from tests.conftest import GembaHome

pytestmark = pytest.mark.model

LOOPING = "List the alarms of a conveyor."
"""At temperature 0, without penalties, the embedded model loops on this ("1.1.1: 1.1.1: ...")
until the limit."""


def _client(daemon: GembaHome) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{daemon.url}/v1", api_key="unused", max_retries=0,
                         timeout=120)


def _ask(daemon: GembaHome, **params: Any) -> Any:
    params.setdefault("model", "gemba")
    params.setdefault("messages", [{"role": "user", "content": "Say OK."}])
    return _client(daemon).chat.completions.create(**params)


def test_a_front_ends_full_request_is_answered_and_stored_as_asked(daemon: GembaHome) -> None:
    parts = [{"type": "text", "text": "Conveyor 3 stopped."},
             {"type": "text", "text": "What does alarm E-104 mean?"}]
    reply = _ask(daemon, messages=[{"role": "developer", "content": "Answer briefly."},
                                   {"role": "user", "content": parts}],
                 temperature=0, max_tokens=24, presence_penalty=0.5, frequency_penalty=0.5,
                 response_format={"type": "text"}, n=1, user="badge-42", seed=11,
                 stop=["\n\n\n"], logprobs=False, extra_body={"knowledge": "off"})
    answer = reply.choices[0].message.content
    assert answer.strip()
    assert reply.usage.completion_tokens >= 1
    conversation = daemon.conversation(reply.model_extra["gemba"]["conversation_id"])
    assert conversation["operator"] == "badge-42"
    # The text parts are the question, joined as the model read them.
    assert conversation["messages"][0]["content"] == \
        "Conveyor 3 stopped.\nWhat does alarm E-104 mean?"
    assert conversation["messages"][1]["content"] == answer


def test_streaming_with_usage_gives_the_text_and_a_usage_chunk_at_the_end(
        daemon: GembaHome) -> None:
    stream = _ask(daemon, stream=True, stream_options={"include_usage": True}, temperature=0,
                  max_tokens=12, extra_body={"knowledge": "off"})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens >= 1
    assert chunks[-1].usage.total_tokens == \
        chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
    plain = _ask(daemon, temperature=0, max_tokens=12, extra_body={"knowledge": "off"})
    assert plain.choices[0].message.content == text  # the same answer either way


def _most_repeated(reply: Any) -> int:
    words = collections.Counter(reply.choices[0].message.content.split())
    return words.most_common(1)[0][1]


_LOOPING_REQUEST = dict(messages=[{"role": "user", "content": LOOPING}], temperature=0,
                        max_tokens=120, extra_body={"knowledge": "off"})


def test_frequency_and_presence_penalties_break_a_repetition_loop(gemba_home: GembaHome) -> None:
    gemba_home.write_config(gemba_home.config_file.read_text(encoding="utf-8")
                            + "[generation]\nrepeat_penalty = 1.0\n")  # the default one off
    gemba_home.start_daemon()
    looping = _ask(gemba_home, **_LOOPING_REQUEST)
    assert looping.choices[0].finish_reason == "length"
    assert _most_repeated(looping) >= 10  # the loop this test is about
    for penalty in ({"frequency_penalty": 2.0}, {"presence_penalty": 2.0}):
        penalised = _ask(gemba_home, **_LOOPING_REQUEST, **penalty)
        assert _most_repeated(penalised) < _most_repeated(looping) / 2, penalty


def test_the_default_repeat_penalty_breaks_that_loop(daemon: GembaHome) -> None:
    reply = _ask(daemon, **_LOOPING_REQUEST)
    assert _most_repeated(reply) < 5


def test_json_mode_is_held_to_json_by_a_grammar(daemon: GembaHome) -> None:
    reply = _ask(daemon, messages=[{"role": "user",
                                    "content": "Give a JSON object: alarm E-104, action."}],
                 temperature=0, max_tokens=200, response_format={"type": "json_object"},
                 frequency_penalty=1.0, extra_body={"knowledge": "off"})
    content = reply.choices[0].message.content
    assert content.lstrip().startswith("{")
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)


@pytest.mark.parametrize(("params", "field", "words"), [
    ({"n": 2}, "n", "less than or equal to 1"),
    ({"logprobs": True}, "logprobs", "log probabilities"),
    ({"response_format": {"type": "json_schema",
                          "json_schema": {"name": "x", "schema": {"type": "object"}}}},
     "response_format.type", "json_schema"),
    ({"presence_penalty": 3.0}, "presence_penalty", "less than or equal to 2"),
    ({"extra_body": {"temprature": 0.2}}, "temprature", "not accepted"),
    ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is on this label?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
     "messages.0.content.1.type", "text only"),
])
def test_what_cannot_be_honoured_is_refused_naming_the_field(
        daemon: GembaHome, params: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        _ask(daemon, max_tokens=8, **params)
    error = refused.value.body
    assert error["param"] == field, error
    assert f"field '{field.split('.')[0]}" in error["message"], error
    assert words in error["message"], error
    assert error["hint"]


def test_json_mode_is_refused_when_the_answer_would_come_from_the_documents(
        gemba_home: GembaHome, tmp_path: Any) -> None:
    gemba_home.start_daemon()
    sop = tmp_path / "SOP-7.txt"
    sop.write_text("SOP-7 Conveyor alarms\n\nE-104: belt slip. Stop the line and check the "
                   "tension.\n", encoding="utf-8")
    gemba_home.gemba("docs", "import", str(sop), check=True)
    with pytest.raises(openai.BadRequestError) as refused:
        _ask(gemba_home, response_format={"type": "json_object"}, max_tokens=8)
    assert "citations" in refused.value.body["message"]
    assert "knowledge" in refused.value.body["hint"]
