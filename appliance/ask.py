"""`gemba ask`: one question to the local daemon, the answer streamed as it is generated."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

from appliance.client import ApplianceClient, Done, Started, Text
from appliance.config import Paths, Settings
from appliance.launcher import ensure_daemon

CITATION_FIELDS = ("n", "document", "file", "revision", "section", "page", "text")


def _prior_messages(client: ApplianceClient, conversation_id: int) -> list[dict[str, str]]:
    conversation = client.conversation(conversation_id)
    return [{"role": m["role"], "content": m["content"]} for m in conversation["messages"]
            if m["role"] in ("user", "assistant") and m["content"]]


def run_ask(settings: Settings, paths: Paths, question: str, *,
            echo: Callable[[str], None] | None, say: Callable[[str], None],
            conversation_id: int | None = None, **params: Any) -> dict[str, Any]:
    """Ask and stream; returns the result object that `--json` prints.

    Ctrl-C closes the stream: the daemon stops generating and stores the partial answer.
    """
    url = ensure_daemon(settings, paths, say)
    client = ApplianceClient(url, settings.daemon.api_key)
    try:
        messages = _prior_messages(client, conversation_id) if conversation_id else []
    except BaseException:
        client.close()
        raise
    messages.append({"role": "user", "content": question})
    pieces: list[str] = []
    result: dict[str, Any] = {"conversation_id": conversation_id, "finish_reason": None}
    sent = time.perf_counter()
    first_at: float | None = None
    try:
        with closing(client.stream_chat(messages, conversation_id=conversation_id,
                                        user=params.pop("operator", None), **params)) as stream:
            for event in stream:
                if isinstance(event, Started):
                    result.update(conversation_id=event.conversation_id,
                                  prompt_tokens=event.prompt_tokens)
                elif isinstance(event, Text):
                    first_at = first_at or time.perf_counter()
                    pieces.append(event.text)
                    if echo is not None:
                        echo(event.text)
                elif isinstance(event, Done):
                    result.update(finish_reason=event.finish_reason, done=event)
    except KeyboardInterrupt:
        result["finish_reason"] = "cancelled"
    finally:
        client.close()
    if echo is not None and pieces and not pieces[-1].endswith("\n"):
        echo("\n")
    done: Done | None = result.pop("done", None)
    usage = done.usage if done else {}
    gemba = done.gemba if done else {}
    return {
        "answer": "".join(pieces),
        "model_id": gemba.get("model_id", settings.model.id),
        "model_sha256": gemba.get("model_sha256"),
        "prompt_tokens": usage.get("prompt_tokens", result.get("prompt_tokens")),
        "completion_tokens": usage.get("completion_tokens", len(pieces)),
        "ttft_s": None if first_at is None else round(first_at - sent, 4),
        "tok_per_s": gemba.get("tok_per_s"),
        "finish_reason": result["finish_reason"],
        "conversation_id": result["conversation_id"],
        "message_id": gemba.get("message_id"),
        "basis": gemba.get("basis"),
        "citations": [{key: c.get(key) for key in CITATION_FIELDS}
                      for c in gemba.get("citations") or []],
        "nearest": [{key: c.get(key) for key in CITATION_FIELDS if key != "text"}
                    for c in gemba.get("nearest") or []],
    }
