"""HTTP client for the appliance API, used by `gemba ask`, the console and tests.

Synchronous on purpose: the console calls it from thread workers, the CLI from its main thread.
API errors come back as the same `GembaError` kinds the daemon raised.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from appliance.errors import DaemonUnavailable, GembaError


@dataclass(frozen=True)
class Started:
    answer_id: int
    conversation_id: int
    prompt_tokens: int
    basis: str | None = None
    """documents (cited passages follow), none (no basis in the plant documents), or None
    (plain chat)."""
    citations: tuple[dict[str, Any], ...] = ()
    nearest: tuple[dict[str, Any], ...] = ()
    """With basis none: the closest documents' passages (same fields as citations)."""


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Done:
    finish_reason: str
    usage: dict[str, int]
    gemba: dict[str, Any]


StreamEvent = Started | Text | Done


def _error_classes() -> dict[str, type[GembaError]]:
    found: dict[str, type[GembaError]] = {}
    pending: list[type[GembaError]] = [GembaError]
    while pending:
        cls = pending.pop()
        found[cls.kind] = cls
        pending.extend(cls.__subclasses__())
    return found


def error_from_body(status: int, body: Any) -> GembaError:
    detail = body.get("error", {}) if isinstance(body, dict) else {}
    cls = _error_classes().get(detail.get("type", ""), GembaError)
    error = GembaError.__new__(cls)
    GembaError.__init__(error, detail.get("message") or f"the appliance answered HTTP {status}",
                        detail.get("hint", ""))
    if cls is GembaError and status == 400:
        error.exit_code = 65
    return error


def _unreachable(exc: BaseException) -> bool:
    """The connection failed because no route leads to the address (not: nobody listens)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class ApplianceClient:
    def __init__(self, base_url: str, api_key: str | None = None,
                 timeout_s: float = 600.0, client_kind: str | None = None) -> None:
        """`client_kind="console"` marks an open console, which keeps a local daemon alive."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if client_kind:
            headers["X-Gemba-Client"] = client_kind
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers,
                                  timeout=httpx.Timeout(timeout_s, connect=5.0), trust_env=False)

    def close(self) -> None:
        self._http.close()

    def health(self) -> dict[str, Any] | None:
        """The daemon's /healthz body (also while loading), or None when nothing answers.

        A network that cannot reach the daemon's address at all (the loopback interface down,
        as in a fresh network namespace) is said at once: waiting would not help."""
        try:
            response = self._http.get("/healthz", timeout=2.0)
            return response.json()
        except httpx.ConnectError as exc:
            if _unreachable(exc):
                loopback = self._http.base_url.host in ("127.0.0.1", "localhost", "::1")
                raise DaemonUnavailable(
                    f"cannot reach the appliance at {self.base_url}: no network route leads "
                    "there" + (" (this machine's loopback interface is down)" if loopback else ""),
                    ("bring it up (`ip link set lo up`, e.g. in a container or network "
                     "namespace), then try again" if loopback else
                     "check the network and the address, then try again")) from exc
            return None
        except (httpx.HTTPError, ValueError):
            return None

    def stream_chat(self, messages: list[dict[str, str]], **params: Any) -> Iterator[StreamEvent]:
        body = {"messages": messages, "stream": True,
                **{k: v for k, v in params.items() if v is not None}}
        try:
            with self._http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise error_from_body(response.status_code, _json(response.text))
                yield from _events(response.iter_lines())
        except httpx.TransportError as exc:
            raise DaemonUnavailable(f"lost the connection to the appliance at {self.base_url}: "
                                    f"{exc}", "check that `gemba serve` is running") from exc

    def conversations(self, limit: int = 50, query: str | None = None,
                      operator: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, **({"q": query} if query else {}),
                                  **({"operator": operator} if operator else {})}
        return self._get("/v1/appliance/conversations", params)["data"]

    def conversation(self, conversation_id: int) -> dict[str, Any]:
        return self._get(f"/v1/appliance/conversations/{conversation_id}", {})

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = self._http.get(path, params=params, timeout=10.0)
        except httpx.TransportError as exc:
            raise DaemonUnavailable(f"lost the connection to the appliance at {self.base_url}: "
                                    f"{exc}", "check that `gemba serve` is running") from exc
        if response.status_code != 200:
            raise error_from_body(response.status_code, _json(response.text))
        return response.json()

    # -- plant documents ---------------------------------------------------------------------
    def import_document(self, name: str, data: bytes) -> dict[str, Any]:
        """One file's import outcome (a refused file is an outcome, not an exception)."""
        response = self._send("POST", "/v1/appliance/documents", params={"name": name},
                              content=data, timeout=600.0,
                              headers={"Content-Type": "application/octet-stream"})
        body = _json(response.text)
        if response.status_code in (200, 201, 422) and isinstance(body, dict) \
                and "status" in body:
            return body
        error = error_from_body(response.status_code, body)
        if response.status_code in (401, 503):
            raise error  # no file can go in: a wrong key, or the appliance is not ready
        reason = "too_large" if response.status_code == 413 else error.kind
        return {"file": name, "status": "failed",
                "error": {"reason": reason, "message": f"{name}: {error.message}",
                          "hint": error.hint}}

    def documents(self) -> list[dict[str, Any]]:
        return self._get("/v1/appliance/documents", {})["data"]

    def document(self, key: str) -> dict[str, Any]:
        return self._get(f"/v1/appliance/documents/{quote(key, safe='')}", {})

    def revisions(self, key: str) -> list[dict[str, Any]]:
        return self._get(f"/v1/appliance/documents/{quote(key, safe='')}/revisions", {})["data"]

    def remove_document(self, key: str) -> dict[str, Any]:
        response = self._send("DELETE", f"/v1/appliance/documents/{quote(key, safe='')}")
        if response.status_code != 200:
            raise error_from_body(response.status_code, _json(response.text))
        return response.json()

    def search(self, query: str, limit: int = 10) -> list[dict[str, Any]]:
        return self._get("/v1/appliance/search", {"q": query, "limit": limit})["data"]

    def passage(self, passage_id: int) -> dict[str, Any]:
        return self._get(f"/v1/appliance/passages/{passage_id}", {})

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise DaemonUnavailable(f"lost the connection to the appliance at {self.base_url}: "
                                    f"{exc}", "check that `gemba serve` is running") from exc

    def telemetry(self, seconds: float = 300) -> dict[str, Any]:
        """Recent figures, their budgets and severities (GET /v1/appliance/telemetry)."""
        return self._get("/v1/appliance/telemetry", {"seconds": seconds})

    def status(self) -> dict[str, Any]:
        response = self._http.get("/v1/appliance/status", timeout=5.0)
        if response.status_code != 200:
            raise error_from_body(response.status_code, _json(response.text))
        return response.json()

    def cancel(self, answer_id: int) -> None:
        self._http.post(f"/v1/appliance/answers/{answer_id}/cancel")


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _events(lines: Iterator[str]) -> Iterator[StreamEvent]:
    for line in lines:
        if not line.startswith("data: "):
            continue
        payload = line[6:]
        if payload == "[DONE]":
            return
        chunk = json.loads(payload)
        if "error" in chunk:
            raise error_from_body(200, chunk)
        if not chunk.get("choices"):
            continue  # OpenAI's usage-only chunk (stream_options.include_usage)
        choice = chunk["choices"][0]
        if "gemba" in chunk and choice["finish_reason"] is None:
            info = chunk["gemba"]
            yield Started(info["answer_id"], info["conversation_id"], info["prompt_tokens"],
                          info.get("basis"), tuple(info.get("citations") or ()),
                          tuple(info.get("nearest") or ()))
        if choice["delta"].get("content"):
            yield Text(choice["delta"]["content"])
        if choice["finish_reason"] is not None:
            yield Done(choice["finish_reason"], chunk.get("usage", {}), chunk.get("gemba", {}))
