"""The daemon's HTTP API with the real model: health, answers, streaming, history, bad input.

Cancelling on disconnect, the queue and the max_tokens clamp are the daemon's own work around
an answer: those talk to a daemon on the scripted engine, whose exact text they check."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.conftest import FAKE_ANSWER, FAKE_LONG_ANSWER, LONG_ANSWER_PROMPT, GembaHome

QUESTION = "What should an operator check when a conveyor stops with alarm E-104?"


def _chat(daemon: GembaHome, **body: Any) -> httpx.Response:
    body.setdefault("messages", [{"role": "user", "content": QUESTION}])
    return httpx.post(f"{daemon.url}/v1/chat/completions", json=body, timeout=120)


def _sse_chunks(response: httpx.Response) -> list[dict[str, Any]]:
    chunks = []
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunks.append(json.loads(line[6:]))
    return chunks


def test_health_reports_ready_with_model_and_engine(daemon: GembaHome) -> None:
    response = httpx.get(f"{daemon.url}/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "ready"
    assert body["model_id"] == "smollm2-135m-instruct-q4_1"
    assert body["worker_pid"] != body["pid"]  # the model lives in its own process


def test_models_lists_the_loaded_model(daemon: GembaHome) -> None:
    data = httpx.get(f"{daemon.url}/v1/models").json()["data"]
    assert [m["id"] for m in data] == ["smollm2-135m-instruct-q4_1"]


def test_answer_is_returned_and_stored_in_history(daemon: GembaHome) -> None:
    response = _chat(daemon, max_tokens=40, temperature=0, user="badge-17")
    assert response.status_code == 200
    body = response.json()
    answer = body["choices"][0]["message"]["content"]
    assert answer.strip()
    assert body["usage"]["completion_tokens"] >= 1
    conversation = daemon.conversation(body["gemba"]["conversation_id"])
    assert conversation["operator"] == "badge-17"
    assert [m["role"] for m in conversation["messages"]] == ["user", "assistant"]
    assert conversation["messages"][0]["content"] == QUESTION
    assert conversation["messages"][1]["content"] == answer
    assert conversation["messages"][1]["model_sha256"] == body["gemba"]["model_sha256"]


def test_streamed_answer_arrives_piece_by_piece(daemon: GembaHome) -> None:
    arrivals: list[float] = []
    with httpx.stream("POST", f"{daemon.url}/v1/chat/completions", timeout=120,
                      json={"messages": [{"role": "user", "content": LONG_ANSWER_PROMPT}],
                            "stream": True, "max_tokens": 60, "temperature": 0}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = []
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
                arrivals.append(time.monotonic())
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks]
    pieces = [p for p in pieces if p]
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] == "length"
    assert final["usage"]["completion_tokens"] == 60
    # Pieces spread in time: tokens faster than generation.stream_interval_ms (50) go together,
    # so at about 80 tokens/s the 60 tokens come in a dozen or more pieces, never all at once.
    assert len(pieces) >= 5
    assert arrivals[-1] > arrivals[1]
    stored = daemon.conversation(final["gemba"]["conversation_id"])["messages"][-1]
    assert stored["content"] == "".join(pieces)
    assert stored["finish_reason"] == "length"  # an answer cut by the limit is marked


def test_client_disconnect_cancels_and_keeps_the_partial_answer(fake_daemon: GembaHome) -> None:
    daemon = fake_daemon
    conversation_id = None
    pieces: list[str] = []
    with httpx.stream("POST", f"{daemon.url}/v1/chat/completions", timeout=120,
                      json={"messages": [{"role": "user", "content": LONG_ANSWER_PROMPT}],
                            "stream": True, "max_tokens": 1500, "temperature": 0}) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            chunk = json.loads(line[6:])
            conversation_id = conversation_id or chunk.get("gemba", {}).get("conversation_id")
            if chunk["choices"][0]["delta"].get("content"):
                pieces.append(chunk["choices"][0]["delta"]["content"])
            if len(pieces) >= 5:
                break  # leaving the block closes the connection
    answer = _wait_for_answer(daemon, conversation_id)
    assert answer["finish_reason"] == "cancelled"
    assert answer["content"].startswith("".join(pieces))
    assert FAKE_LONG_ANSWER.startswith(answer["content"])
    assert answer["completion_tokens"] < 1000
    assert daemon.health()["state"] == "ready"  # the slot is free again


def _wait_for_answer(daemon: GembaHome, conversation_id: int | None) -> dict[str, Any]:
    assert conversation_id is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        messages = daemon.conversation(conversation_id)["messages"]
        if messages[-1]["role"] == "assistant":
            return messages[-1]
        time.sleep(0.1)
    raise AssertionError("the partial answer was never stored")


def test_prompt_longer_than_context_is_refused_with_token_counts(daemon: GembaHome) -> None:
    before = daemon.history()
    response = _chat(daemon, messages=[{"role": "user", "content": "belt tension " * 3000}])
    assert response.status_code == 400
    error = response.json()["error"]
    assert "context window is 2048 tokens" in error["message"]
    assert "tokens but" in error["message"]
    assert error["hint"]
    assert daemon.history() == before  # history unchanged


def test_huge_max_tokens_is_clamped_not_refused(fake_daemon: GembaHome) -> None:
    response = _chat(fake_daemon, max_tokens=10**9, temperature=0,
                     messages=[{"role": "user", "content": "Say OK."}])
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == FAKE_ANSWER


@pytest.mark.parametrize("body, field", [
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": "NaN"}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "temprature": 0.1}, "temprature"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": ["x"] * 5000}, "stop"),
])
def test_bad_fields_get_400_naming_the_field(daemon: GembaHome, body: dict[str, Any],
                                             field: str) -> None:
    before = daemon.history()
    response = httpx.post(f"{daemon.url}/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert f"'{field}'" in response.json()["error"]["message"]
    assert daemon.history() == before  # nothing stored


def test_malformed_json_gets_400_saying_where(daemon: GembaHome) -> None:
    response = httpx.post(f"{daemon.url}/v1/chat/completions", content=b'{"messages": [}',
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "line 1 column" in response.json()["error"]["message"]


def test_huge_body_gets_413_before_parsing(daemon: GembaHome) -> None:
    response = httpx.post(f"{daemon.url}/v1/chat/completions", content=b"x" * 5_000_000,
                          headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert daemon.health()["ready"]


def test_last_message_must_be_the_question(daemon: GembaHome) -> None:
    response = _chat(daemon, messages=[{"role": "user", "content": "hi"},
                                       {"role": "assistant", "content": "hello"}])
    assert response.status_code == 400
    assert "last message" in response.json()["error"]["message"]


def test_requests_wait_their_turn_and_all_get_answers(fake_daemon: GembaHome) -> None:
    import concurrent.futures

    def ask(n: int) -> tuple[int, str]:
        response = _chat(fake_daemon, max_tokens=8, temperature=0,
                         messages=[{"role": "user", "content": f"Name machine part number {n}."}])
        return response.status_code, response.json()["choices"][0]["message"]["content"]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(ask, range(4))) == [(200, FAKE_ANSWER)] * 4


def test_history_is_listed_and_searchable_through_the_api(daemon: GembaHome) -> None:
    question = "コンベア3の警報 E-104 at 100% load: what first?"
    answer = _chat(daemon, max_tokens=8, temperature=0,
                   messages=[{"role": "user", "content": question}]).json()
    conversation_id = answer["gemba"]["conversation_id"]
    listed = httpx.get(f"{daemon.url}/v1/appliance/conversations").json()["data"]
    assert listed[0]["id"] == conversation_id  # newest first
    for text in ("警報 E-104", "100%", "e-104"):
        found = httpx.get(f"{daemon.url}/v1/appliance/conversations",
                          params={"q": text}).json()["data"]
        assert [row["id"] for row in found][:1] == [conversation_id], text
    nothing = httpx.get(f"{daemon.url}/v1/appliance/conversations",
                        params={"q": "1000%"}).json()["data"]  # % is literal, not a wildcard
    assert conversation_id not in [row["id"] for row in nothing]
    shown = httpx.get(f"{daemon.url}/v1/appliance/conversations/{conversation_id}").json()
    assert shown["messages"][0]["content"] == question


def test_unknown_conversation_is_404_with_the_error_shape(daemon: GembaHome) -> None:
    response = httpx.get(f"{daemon.url}/v1/appliance/conversations/999999")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


@pytest.mark.parametrize("path, body", [
    ("/v1/appliance/conversations/100000000000000000000", None),
    ("/v1/appliance/conversations/9223372036854775808", None),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                              "conversation_id": 10**20}),
    ("/v1/chat/completions", "[" * 100_000 + "]" * 100_000),
    ("/v1/appliance/passages/100000000000000000000", None),
])
def test_huge_ids_and_deep_nesting_get_4xx_never_500(daemon: GembaHome, path: str,
                                                     body: Any) -> None:
    """FAULTS.md 3, 7, 8: an id past SQLite's integers or JSON nested past Python's recursion
    limit is the client's mistake, answered as such."""
    url = f"{daemon.url}{path}"
    if body is None:
        response = httpx.get(url, timeout=10)
    else:
        content = body if isinstance(body, str) else json.dumps(body)
        response = httpx.post(url, content=content, timeout=10,
                              headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["message"]
