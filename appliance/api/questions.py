"""From an OpenAI chat request to the service's `Question`: what real clients send is read,
what this appliance cannot honour is refused by name, and text is checked before it is stored.

A question is stored as it was asked or not at all: a NUL once cut "pump\\0 E-104?" to "pump"
in the history, so control characters are refused, never stripped.
"""

from __future__ import annotations

import re
import unicodedata

from appliance.api.schemas import ChatCompletionRequest, ChatMessage
from appliance.chat import ChatService, Question
from appliance.config import Settings
from appliance.errors import RequestError
from appliance.knowledge.library import has_documents

STOP_LIMIT = 8
STOP_CHARS = 64
# C0 and C1 controls and DEL, except tab, line feed and carriage return (CRLF text is text).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def question_from(body: ChatCompletionRequest, service: ChatService,
                  settings: Settings) -> Question:
    if body.model not in (None, service.model_id, "gemba", "default"):
        raise RequestError(f"model '{body.model}' is not loaded on this appliance "
                           f"(loaded: {service.model_id})",
                           "omit `model` or use the id from GET /v1/models", "model")
    messages = tuple({"role": "system" if m.role == "developer" else m.role,
                      "content": _text(m, i)} for i, m in enumerate(body.messages))
    last = len(messages) - 1
    if messages[last]["role"] != "user":
        raise RequestError("the last message must come from the user (role 'user')",
                           "end `messages` with the question to answer", f"messages.{last}.role")
    if not messages[last]["content"].strip():
        raise RequestError("the question is empty: the last user message has no text",
                           "type the question, then send it", f"messages.{last}.content")
    _check_text(body.user, "user")
    stops = body.stop_strings()
    if len(stops) > STOP_LIMIT or any(len(s) > STOP_CHARS or not s for s in stops):
        raise RequestError(f"field 'stop': at most {STOP_LIMIT} non-empty strings of at most "
                           f"{STOP_CHARS} characters", "send fewer or shorter stop strings",
                           "stop")
    if body.logprobs or body.top_logprobs:
        raise RequestError("field 'logprobs': this appliance does not return log probabilities",
                           "omit `logprobs` and `top_logprobs` or set logprobs to false",
                           "logprobs")
    json_mode = _json_mode(body, service, settings)
    gen = settings.generation
    wanted = body.max_completion_tokens or body.max_tokens or gen.max_tokens
    return Question(
        messages=messages,
        max_tokens=min(wanted, gen.max_tokens_limit),
        temperature=gen.temperature if body.temperature is None else body.temperature,
        top_p=0.95 if body.top_p is None else body.top_p,
        stop=stops, seed=body.seed, conversation_id=body.conversation_id, operator=body.user,
        knowledge=body.knowledge,
        presence_penalty=_given(body.presence_penalty, gen.presence_penalty),
        frequency_penalty=_given(body.frequency_penalty, gen.frequency_penalty),
        repeat_penalty=gen.repeat_penalty, penalty_last_n=gen.penalty_last_n,
        json=json_mode)


def _given(value: float | None, default: float) -> float:
    """The request's value when it sent one (0 included), else the configured default."""
    return default if value is None else value


def _text(message: ChatMessage, index: int) -> str:
    """The message's text: a string, or its text parts joined by newlines."""
    field = f"messages.{index}.content"
    if isinstance(message.content, str):
        text = message.content
    else:
        texts = []
        for n, part in enumerate(message.content):
            if part.type != "text" or part.text is None:
                raise RequestError(
                    f"field '{field}.{n}': content of type '{part.type}' is not accepted; "
                    "this appliance reads text only", "send the question as text parts "
                    "(type 'text') or as a plain string", f"{field}.{n}.type")
            texts.append(part.text)
        text = "\n".join(texts)
    _check_text(text, field)
    return text


def _check_text(text: str | None, field: str) -> None:
    if not text:
        return
    bad = _CONTROL.search(text) or _SURROGATE.search(text)
    if bad is None:
        return
    char = bad.group()
    name = unicodedata.name(char, "") or {"\x00": "NUL", "\x7f": "DELETE"}.get(char, "control")
    what = "an unpaired surrogate" if _SURROGATE.match(char) else "a control character"
    raise RequestError(
        f"field '{field}' contains {what} (U+{ord(char):04X} {name}) at position {bad.start()}; "
        "questions are stored exactly as asked, so it is refused rather than cut",
        "remove the character (only tab and line breaks are allowed) and send again", field)


def _json_mode(body: ChatCompletionRequest, service: ChatService, settings: Settings) -> bool:
    """OpenAI's JSON mode: honoured with a grammar when the answer is the model's alone."""
    kind = body.response_format.type if body.response_format else "text"
    if kind == "text":
        return False
    if kind == "json_schema":
        raise RequestError("field 'response_format': type 'json_schema' is not supported; "
                           "only 'text' and 'json_object'",
                           "use {\"type\": \"json_object\"} and describe the fields in the prompt",
                           "response_format.type")
    mode = body.knowledge or settings.knowledge.mode
    if mode != "off" and has_documents(service.db):
        raise RequestError(
            "field 'response_format': a JSON answer cannot carry the plant documents' passages "
            "and citations, and this request would be answered from them",
            "send \"knowledge\": \"off\" with a json_object response_format, or ask for text",
            "response_format.type")
    return True
