"""The FastAPI application. Thin: validation and HTTP shapes here, decisions in the service."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from appliance import __version__
from appliance.api.documents import DOCUMENTS, documents_router
from appliance.api.guards import BodyLimit, HostGuard, RequireKey
from appliance.api.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from appliance.api.metrics import AnswerWatch, Metrics, MetricsMiddleware
from appliance.api.questions import question_from
from appliance.api.schemas import ChatCompletionRequest
from appliance.chat import Accepted, Answered, AnswerJob, ChatService, Failed
from appliance.config import Settings
from appliance.errors import GembaError, NotFound, RequestError
from appliance.inference.protocol import Piece
from appliance.store.conversations import get_conversation, list_conversations

T = TypeVar("T")


def create_app(service: ChatService, settings: Settings,
               health: Callable[[], dict[str, Any]],
               report: Callable[[], dict[str, Any]] | None = None,
               telemetry: Callable[[float], dict[str, Any]] | None = None,
               metrics: Metrics | None = None) -> FastAPI:
    app = FastAPI(title="Gemba appliance API", version="1", docs_url=None, redoc_url=None)
    # Pure ASGI middlewares: Starlette's BaseHTTPMiddleware would re-wrap every streamed token.
    app.add_middleware(BodyLimit, max_bytes=settings.daemon.max_body_bytes,
                       larger={DOCUMENTS: settings.knowledge.max_file_bytes})
    if settings.daemon.api_key:
        app.add_middleware(RequireKey, api_key=settings.daemon.api_key)
    # Outside the key check: a foreign host or web page learns nothing, not even whether a
    # key is needed.
    app.add_middleware(HostGuard, listen_host=settings.daemon.host,
                       allowed_hosts=settings.daemon.allowed_hosts,
                       allowed_origins=settings.daemon.allowed_origins)
    # Last, so outside every guard: their 403, 401 and 413 are counted (it only counts).
    metrics = metrics or Metrics(__version__, service.model_id, service.model_sha256)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc.errors())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kinds = {404: "not_found", 405: "method_not_allowed"}
        return _error(exc.status_code, kinds.get(exc.status_code, "http_error"), str(exc.detail),
                      "see docs/api.md for the routes")

    @app.exception_handler(OverflowError)
    async def out_of_range(_: Request, exc: OverflowError) -> JSONResponse:
        # SQLite takes 64-bit integers; a bigger number in a request is the client's mistake.
        return _error(400, "invalid_request", f"a number in the request is out of range: {exc}",
                      "numbers and ids must fit in 64 bits")

    @app.exception_handler(_ClientGone)
    async def client_gone(_: Request, __: _ClientGone) -> Response:
        return Response(status_code=499)  # nginx's "client closed request"; nobody reads it

    @app.exception_handler(GembaError)
    async def gemba_error(_: Request, exc: GembaError) -> JSONResponse:
        return _gemba_error(exc)

    @app.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        if request.headers.get("x-gemba-client") == "console":
            service.touch()  # an open console is a user: the idle timeout must not end it
        body = health()
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_text() -> Response:
        return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": service.model_id, "object": "model",
                                            "owned_by": "gemba",
                                            "sha256": service.model_sha256}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        watch = metrics.watch()
        body = await _parse(request)
        question = question_from(body, service, settings)
        job = service.submit(question)
        if body.stream:
            first = await _unless_gone(request, job, _first_event(job))
            if isinstance(first, Failed):
                return _gemba_error(first.error)
            usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(_sse(job, first, service.model_id, usage, watch=watch),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache",
                                              "X-Accel-Buffering": "no"})
        # A plain request has no stream to break: watch the connection, or a client that gave
        # up would keep the engine answering nobody.
        return await _unless_gone(request, job, _complete(job, service.model_id, watch))

    @app.get("/v1/appliance/status")
    async def status() -> dict[str, Any]:
        return {"health": health(), **(report() if report else {})}

    @app.get("/v1/appliance/telemetry")
    async def telemetry_recent(seconds: float = 300) -> dict[str, Any]:
        if not 1 <= seconds <= 86400:
            raise RequestError("field 'seconds' must be between 1 and 86400",
                               "ask for at most a day of per-second telemetry")
        # The health rides along: the Health screen needs both, in one request.
        if telemetry is None:
            return {"seconds": seconds, "governor": None, "latest": {}, "limits": {},
                    "samples": [], "health": health()}
        return {**telemetry(seconds), "health": health()}

    @app.get("/v1/appliance/conversations")
    async def conversations_list(limit: int = 50, q: str | None = None,
                                 operator: str | None = None) -> dict[str, Any]:
        if not 1 <= limit <= 1000:
            raise RequestError("field 'limit' must be between 1 and 1000",
                               "ask for fewer conversations")
        return {"data": list_conversations(service.db, limit, q or None, operator or None)}

    @app.get("/v1/appliance/conversations/{conversation_id}")
    async def conversation_show(conversation_id: int) -> dict[str, Any]:
        if not 1 <= conversation_id < 2**63:
            raise NotFound(f"conversation {conversation_id} does not exist",
                           "run `gemba history` to list conversations")
        return get_conversation(service.db, conversation_id)

    app.include_router(documents_router(service, settings.knowledge))

    @app.post("/v1/appliance/answers/{job_id}/cancel")
    async def cancel(job_id: int) -> dict[str, Any]:
        job = service.jobs.get(job_id)
        if job is None:
            return {"cancelled": False, "detail": "no answer in progress with that id"}
        job.cancel()
        return {"cancelled": True}

    return app


async def _parse(request: Request) -> ChatCompletionRequest:
    raw = await request.body()
    try:
        data = json.loads(raw)
    except RecursionError as exc:
        raise RequestError("the request body is nested too deeply to be a chat request",
                           "send a JSON object in the OpenAI chat completions shape") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}" if isinstance(
            exc, json.JSONDecodeError) else "it is not UTF-8 text"
        raise RequestError(f"the request body is not valid JSON: {detail}",
                           "send a JSON object in the OpenAI chat completions shape") from exc
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object",
                           "send {\"messages\": [{\"role\": \"user\", \"content\": \"…\"}]}")
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


async def _until_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read; nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_gone(request: Request, job: AnswerJob, work: Awaitable[T]) -> T:
    """`work`'s result, unless the client disconnects first: then the job is cancelled (its
    partial answer stored as `cancelled`) and there is nobody to answer."""
    working = asyncio.ensure_future(work)
    watching = asyncio.ensure_future(_until_gone(request))
    try:
        await asyncio.wait({working, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
        if not working.done():
            working.cancel()
            job.cancel("the client disconnected")
    if not working.done() or working.cancelled():
        raise _ClientGone
    return working.result()


class _ClientGone(Exception):
    """The client disconnected; no response can reach it."""


async def _first_event(job: AnswerJob) -> Any:
    try:
        return await job.events.get()
    except BaseException:
        job.cancel()  # the client left while the question waited
        raise


def _chunk(job: AnswerJob, model_id: str, delta: dict[str, str], finish: str | None = None,
           **extra: Any) -> str:
    body = {"id": f"chatcmpl-{job.id}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model_id,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _sse(job: AnswerJob, first: Accepted, model_id: str,
               include_usage: bool = False, *, watch: AnswerWatch) -> AsyncIterator[str]:
    """The answer as OpenAI's chunks. The last one carries `usage` too; with
    `stream_options.include_usage` a chunk with no choices follows, as OpenAI sends it."""
    try:
        yield _chunk(job, model_id, {"role": "assistant", "content": ""},
                     gemba={"answer_id": job.id, "conversation_id": first.conversation_id,
                            "prompt_tokens": first.prompt_tokens, "basis": first.basis,
                            "citations": list(first.citations),
                            "nearest": list(first.nearest)})
        while True:
            event = await job.events.get()
            if isinstance(event, Piece):
                watch.piece(event)
                yield _chunk(job, model_id, {"content": event.text})
            elif isinstance(event, Answered):
                yield _chunk(job, model_id, {}, event.record.finish_reason,
                             usage=_usage(event), gemba=_gemba(event))
                watch.answered(event.record)  # once handed over: counted answers were given
                if include_usage:
                    yield _usage_chunk(job, model_id, event)
                break
            elif isinstance(event, Failed):
                watch.failed()
                yield f"data: {json.dumps({'error': event.error.to_dict()})}\n\n"
                break
        yield "data: [DONE]\n\n"
    finally:
        job.cancel()  # no-op when finished; stops generation when the client went away


def _usage_chunk(job: AnswerJob, model_id: str, event: Answered) -> str:
    body = {"id": f"chatcmpl-{job.id}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model_id, "choices": [],
            "usage": _usage(event)}
    return f"data: {json.dumps(body)}\n\n"


async def _complete(job: AnswerJob, model_id: str, watch: AnswerWatch) -> JSONResponse:
    first = await _first_event(job)
    if isinstance(first, Failed):
        return _gemba_error(first.error)
    try:
        while True:
            event = await job.events.get()
            if isinstance(event, Answered):
                break
            if isinstance(event, Failed):
                watch.failed()
                return _gemba_error(event.error)
    finally:
        job.cancel()
    record = event.record
    watch.answered(record)
    return JSONResponse({
        "id": f"chatcmpl-{job.id}", "object": "chat.completion", "created": int(time.time()),
        "model": model_id,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": record.content},
                     "finish_reason": record.finish_reason}],
        "usage": _usage(event), "gemba": _gemba(event)})


def _usage(event: Answered) -> dict[str, Any]:
    r = event.record
    return {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
            "total_tokens": r.prompt_tokens + r.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": event.cached_tokens}}


def _gemba(event: Answered) -> dict[str, Any]:
    r = event.record
    return {"conversation_id": event.conversation_id, "message_id": event.message_id,
            "model_id": r.model_id, "model_sha256": r.model_sha256, "finish_reason": r.finish_reason,
            "engine_ttft_s": r.ttft_s, "tok_per_s": r.tok_per_s, "basis": r.basis,
            "citations": list(r.citations), "nearest": list(r.nearest)}


def _error(status: int, kind: str, message: str, hint: str = "",
           headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, "hint": hint, **extra}},
                        status_code=status, headers=headers)


def _gemba_error(exc: GembaError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status, headers=headers)


def _validation_error(errors: Any) -> JSONResponse:
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    field = ".".join(location) or "body"
    if first.get("type") == "extra_forbidden":
        message = f"field '{field}' is not accepted by this API"
    else:
        message = f"field '{field}': {first.get('msg')}"
    return _error(400, "invalid_request", message,
                  "see docs/api.md for the accepted fields and their ranges", param=field)
