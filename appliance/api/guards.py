"""ASGI guards in front of the app: foreign hosts and origins (403), oversized bodies (413) and
a missing or wrong API key (401)."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

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


LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


class HostGuard:
    """ASGI middleware: only requests addressed to this box, from no foreign web page.

    A web page an operator opens can reach a loopback API through DNS rebinding (its own name,
    resolved to 127.0.0.1: the request's Host is that name) or a cross-site request (the
    browser says where it comes from in Origin and Sec-Fetch-Site). So the Host must be a
    loopback name or address, the address the daemon listens on, or one of
    `daemon.allowed_hosts`; a browser request must come from the same origin or one of
    `daemon.allowed_origins`, which also get CORS headers. /healthz stays open to any host:
    it says only whether the appliance is up.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]],
                 listen_host: str, allowed_hosts: list[str], allowed_origins: list[str]) -> None:
        self.app = app
        self.hosts = {h.lower() for h in allowed_hosts}
        if listen_host.lower() not in WILDCARDS:
            self.hosts.add(listen_host.strip("[]").lower())
        self.origins = {o.rstrip("/").lower() for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == "/healthz":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        host = headers.get(b"host", b"").decode("latin-1")
        if host and not self._host_allowed(host):
            await _send_json(send, 403, {"error": {
                "type": "forbidden_host",
                "message": f"requests addressed to '{_hostname(host)}' are refused: this "
                           "appliance answers only to its own names and addresses",
                "hint": "connect by 127.0.0.1 or localhost, or an engineer adds this name to "
                        "daemon.allowed_hosts"}})
            return
        origin = headers.get(b"origin", b"").decode("latin-1").rstrip("/").lower()
        listed = bool(origin) and origin in self.origins
        if not listed and (_cross_site(origin, host) or
                           headers.get(b"sec-fetch-site") == b"cross-site"):
            await _send_json(send, 403, {"error": {
                "type": "forbidden_origin",
                "message": f"requests from the web page at '{origin or 'another site'}' are "
                           "refused: a browser may reach this appliance only from an origin "
                           "it lists",
                "hint": "an engineer adds the front end's origin (scheme://host:port) to "
                        "daemon.allowed_origins"}})
            return
        if listed and scope.get("method") == "OPTIONS":
            await _preflight(send, origin)
            return
        if listed:
            send = _with_cors(send, origin)
        await self.app(scope, receive, send)

    def _host_allowed(self, host: str) -> bool:
        name = _hostname(host)
        if name in LOOPBACK_NAMES or name in self.hosts:
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False


def _hostname(host: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host[1:]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _cross_site(origin: str, host: str) -> bool:
    """True when a browser sent this from a page of another origin. No Origin (curl, the
    console, plant systems) or Origin "null" from a sandbox: "null" is refused too."""
    if not origin:
        return False
    if origin == "null":
        return True
    parts = urlsplit(origin)
    return parts.scheme not in ("http", "https") or parts.netloc != host.strip().lower()


async def _preflight(send: Send, origin: str) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": [
        (b"access-control-allow-origin", origin.encode()),
        (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
        (b"access-control-allow-headers", b"authorization, content-type"),
        (b"access-control-max-age", b"600"), (b"vary", b"Origin")]})
    await send({"type": "http.response.body", "body": b""})


def _with_cors(send: Send, origin: str) -> Send:
    async def cors_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []),
                                              (b"access-control-allow-origin", origin.encode()),
                                              (b"vary", b"Origin")]}
        await send(message)
    return cors_send


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
