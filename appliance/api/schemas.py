"""Request bodies the API accepts. Unknown fields are refused, so a typo is a 400, not ignored."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_MESSAGE_CHARS = 200_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContentPart(BaseModel):
    """One part of a message's content as OpenAI clients send it. Only text parts are read;
    any other type is refused by name when the question is checked."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(max_length=40)
    text: str | None = Field(None, max_length=MAX_MESSAGE_CHARS)


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    """`developer` is what newer OpenAI clients call the system message."""
    content: str | list[ContentPart] = Field(max_length=MAX_MESSAGE_CHARS)
    name: str | None = Field(None, max_length=64)


class StreamOptions(_Strict):
    include_usage: bool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")  # json_schema's own fields ride along
    type: Literal["text", "json_object", "json_schema"]


class ChatCompletionRequest(_Strict):
    model: str | None = Field(None, max_length=80)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False)
    stop: str | list[str] | None = Field(None)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    n: int = Field(1, ge=1, le=1)
    """One answer per request: the engine answers questions in turn, not in copies."""
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0, allow_inf_nan=False)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0, allow_inf_nan=False)
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    user: str | None = Field(None, max_length=128)
    """Who asks: stored with the question as the operator."""
    conversation_id: int | None = Field(None, ge=1, le=2**63 - 1)
    """Gemba extension: add this exchange to an existing conversation."""
    knowledge: Literal["grounded", "off"] | None = None
    """Gemba extension: "off" answers without the plant documents (a task that composes from
    what the operator typed); unset follows `[knowledge] mode`."""

    def stop_strings(self) -> tuple[str, ...]:
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return tuple(stops)
