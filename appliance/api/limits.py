"""ASGI guards in front of the app: oversized bodies (413) and a missing or wrong API key (401)."""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


_log = logging.getLogger("gemba.api")


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: checks Content-Length up front and counts chunked bodies as they arrive."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]],
                 max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}
        """Paths that take bigger bodies (document imports), with their own limit."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope.get("path", ""), self.max_bytes)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(send, limit, scope.get("path", "") in self.larger)
            return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, limit, scope.get("path", "") in self.larger)

    async def _refuse(self, send: Send, limit: int, document: bool) -> None:
        setting = "knowledge.max_file_bytes" if document else "daemon.max_body_bytes"
        await _send_json(send, 413, {"error": {
            "type": "request_too_large",
            "message": f"the request body is larger than {limit} bytes",
            "hint": f"send a smaller one; an engineer can raise {setting}"}})


class RequireKey:
    """ASGI middleware: every route but /healthz needs `Authorization: Bearer KEY`.

    Compared in constant time; the answer never says whether the scheme or the key was wrong.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]],
                 api_key: str) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode()
        self._refused_since_log = 0
        self._last_log = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") != "/healthz":
            sent = dict(scope.get("headers", [])).get(b"authorization", b"")
            if not hmac.compare_digest(sent, self.expected):
                self._log_refusal(scope)
                await _send_json(send, 401, {"error": {
                    "type": "unauthorized", "message": "a valid API key is required",
                    "hint": "send the appliance's key as `Authorization: Bearer KEY`"}})
                return
        await self.app(scope, receive, send)


    def _log_refusal(self, scope: Scope) -> None:
        """Each refused key goes to the daemon log with who and what; a flood is summed up
        once a second instead of filling the disk."""
        self._refused_since_log += 1
        now = time.monotonic()
        if now - self._last_log < 1.0:
            return
        client = scope.get("client") or ("?", 0)
        _log.warning("refused %d request(s) without a valid API key; last: %s %s from %s",
                     self._refused_since_log, scope.get("method"), scope.get("path"), client[0])
        self._refused_since_log, self._last_log = 0, now


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
