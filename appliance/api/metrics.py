"""GET /metrics: what the appliance does and how it stands, in Prometheus' text format.

One `Metrics` per app, with its own registry (never prometheus_client's global one: tests build
many apps in one process). Three sources feed it:

- `MetricsMiddleware`, a pure ASGI middleware outermost in the app, counts every request by
  route template, method and status, and every refusal by reason: the 401 and 413 that the
  guards in guards.py send before any route runs are counted too;
- an `AnswerWatch` per chat request observes the answer once it is given: time to first token,
  inter-token and end-to-end latency, prompt and completion tokens, how it finished;
- a collector reads the appliance's state at scrape time (queue, engine, governor, temperatures
  and their limits, power, build and model), from attributes only: a scrape never waits on the
  engine, the database or a sensor.

Every label value comes from a closed set (route templates, never paths; reasons from a fixed
table), so no client can grow the number of series. docs/metrics.md lists them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from starlette.routing import Match

from appliance.api.guards import Message, Receive, Scope, Send
from appliance.governor import MODES, Limits, limits_for
from appliance.inference.protocol import Piece
from appliance.store.conversations import AnswerRecord

if TYPE_CHECKING:
    from appliance.governor_loop import GovernorLoop
    from appliance.inference.scheduler import Scheduler
    from appliance.inference.supervisor import EngineSupervisor

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The classic text format: every Prometheus since 2.0 reads it (all names are plain ASCII)."""

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
INTER_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
E2E_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

OTHER = "other"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
FINISH_REASONS = ("stop", "length", "cancelled", "error")
ENGINE_STATES = ("loading", "ready", "answering", "restarting", "failed", "stopped")
LEVELS = ("careful", "warning", "critical")
SENSORS = {"cpu": "cpu_temp_c", "gpu": "gpu_temp_c"}
"""Temperature label value -> the telemetry figure it shows."""
POWER_SOURCES = {"gpu": "gpu_power_w", "box": "box_power_w"}
"""Power label value -> the telemetry figure it shows."""

# The error's `type` says more than its status (503 is busy, not ready, engine or storage).
_REASON_BY_KIND = {
    "invalid_request": "invalid_request", "invalid_model_id": "invalid_request",
    "unauthorized": "unauthorized", "forbidden_host": "forbidden_host",
    "forbidden_origin": "forbidden_origin",
    "not_found": "not_found", "method_not_allowed": "method_not_allowed",
    "request_too_large": "too_large", "import_refused": "import_refused",
    "busy": "queue_full", "not_ready": "not_ready", "engine_error": "engine_error",
    "storage_error": "storage", "internal_error": "internal_error",
}
_REASON_BY_STATUS = {
    400: "invalid_request", 401: "unauthorized", 403: "forbidden_host", 404: "not_found",
    405: "method_not_allowed", 413: "too_large", 422: "import_refused", 429: "queue_full",
    503: "unavailable",
}
REASONS = tuple(sorted({*_REASON_BY_KIND.values(), *_REASON_BY_STATUS.values(), OTHER}))
_ERROR_BODY_LIMIT = 4096
_CLIENT_GONE = 499


def rejection_reason(status: int, kind: str | None) -> str | None:
    """Why a request was refused, from `REASONS`. `kind` is the `type` of the API's error body
    (`internal_error` for a crash); None when nothing was refused: below 400, 499 (the client
    left), or an answer that is not an error (/healthz's 503 says "not ready" to a probe)."""
    if status < 400 or status == _CLIENT_GONE or kind is None:
        return None
    if kind in _REASON_BY_KIND:
        return _REASON_BY_KIND[kind]
    return _REASON_BY_STATUS.get(status, "internal_error" if status >= 500 else OTHER)


def route_template(routes: Iterable[Any], scope: Scope) -> str:
    """The path of the route that takes this request (`/v1/appliance/conversations/{...}`),
    or `other`: never the request's own path.

    After routing, the route the router chose (in `scope["route"]`); before it (a guard refused
    the request), the first route that matches, as the router would pick it.
    """
    routed = getattr(scope.get("route"), "path", None)
    if isinstance(routed, str):
        return routed
    partial = None
    for route in _flat(routes):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route.path
        if match is Match.PARTIAL and partial is None:
            partial = route.path  # the path exists, not with this method
    return partial or OTHER


def route_templates(routes: Iterable[Any]) -> set[str]:
    """Every value the `route` label can take for these routes."""
    return {route.path for route in _flat(routes)} | {OTHER}


def _flat(routes: Iterable[Any]) -> Iterator[Any]:
    """Routes with a path; an included router (FastAPI keeps it whole) gives its own."""
    for route in routes:
        if isinstance(getattr(route, "path", None), str):
            yield route
        else:
            yield from _flat(getattr(getattr(route, "original_router", None), "routes", ()))


@dataclass(frozen=True)
class Gauges:
    """How the appliance stands at one scrape."""

    queue_depth: int
    queue_capacity: int
    engine_state: str
    engine_restarts: int
    governor_mode: str
    governor_duty: float
    figures: Mapping[str, float | None] = field(default_factory=dict)
    """The governor's last sample: cpu_temp_c, gpu_temp_c, gpu_power_w, box_power_w."""
    sample_age_s: float | None = None
    limits: Mapping[str, Limits] = field(default_factory=dict)
    """The limits the governor holds each figure to, by figure name."""


def appliance_gauges(supervisor: EngineSupervisor, scheduler: Scheduler,
                     governor: GovernorLoop) -> Callable[[], Gauges]:
    """A reader of the running daemon's gauges (attributes only: cheap, never blocks)."""
    limits = limits_for(governor.budgets)
    wanted = (*SENSORS.values(), *POWER_SOURCES.values())

    def read() -> Gauges:
        sample, decision = governor.last_sample, governor.decision
        figures = {name: getattr(sample, name) for name in wanted} if sample else {}
        age = time.monotonic() - sample.at_s if sample else None
        return Gauges(scheduler.waiting, scheduler.max_queue, supervisor.status.state,
                      supervisor.status.restarts, decision.mode, decision.duty, figures, age,
                      limits)

    return read


class Metrics:
    """The appliance's metrics: counters the API moves, gauges read at scrape time."""

    def __init__(self, version: str, model_id: str, model_sha256: str,
                 gauges: Callable[[], Gauges] | None = None) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter("gemba_http_requests", "HTTP requests by route template, "
                                "method and status", ("route", "method", "status"),
                                registry=registry)
        self.rejections = Counter("gemba_rejections", "Requests refused with an error "
                                  "answer, by reason", ("reason",), registry=registry)
        self.answers = Counter("gemba_answers", "Chat answers given, by how they finished",
                               ("finish_reason",), registry=registry)
        self.prompt_tokens = Counter("gemba_prompt_tokens", "Prompt tokens of the answers given",
                                     registry=registry)
        self.completion_tokens = Counter("gemba_completion_tokens", "Completion tokens of the "
                                         "answers given (their usage.completion_tokens)",
                                         registry=registry)
        self.ttft = Histogram("gemba_time_to_first_token_seconds", "Engine time from the start "
                              "of generation to the first token (reading the prompt)",
                              buckets=TTFT_BUCKETS, registry=registry)
        self.inter_token = Histogram("gemba_inter_token_latency_seconds", "Time between two "
                                     "tokens of an answer", buckets=INTER_TOKEN_BUCKETS,
                                     registry=registry)
        self.e2e = Histogram("gemba_e2e_request_latency_seconds", "Chat request to its last "
                             "token, queue wait included", buckets=E2E_BUCKETS,
                             registry=registry)
        for reason in REASONS:  # every series exists from the start: rate() needs a zero
            self.rejections.labels(reason)
        for finish in FINISH_REASONS:
            self.answers.labels(finish)
        registry.register(_ApplianceCollector(
            {"version": version, "model_id": model_id, "model_sha256": model_sha256}, gauges))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def request(self, route: str, method: str, status: int, kind: str | None) -> None:
        """One request answered (`kind`: the error body's `type`, if any)."""
        self.requests.labels(route, method if method in METHODS else OTHER, str(status)).inc()
        reason = rejection_reason(status, kind)
        if reason is not None:
            self.rejections.labels(reason).inc()

    def watch(self) -> AnswerWatch:
        """Start timing one chat request."""
        return AnswerWatch(self, time.monotonic())


class AnswerWatch:
    """One chat request's figures, observed when its answer is given: an answer nobody
    received (the client left) is not counted."""

    def __init__(self, metrics: Metrics, started_s: float) -> None:
        self._metrics, self._started_s = metrics, started_s
        self._last_piece_s: float | None = None
        self._gaps: list[tuple[float, int]] = []
        """(seconds since the previous piece, tokens in this piece) for each streamed piece."""

    def piece(self, piece: Piece) -> None:
        now = time.monotonic()
        if self._last_piece_s is not None:
            self._gaps.append((now - self._last_piece_s, max(1, piece.tokens)))
        self._last_piece_s = now

    def answered(self, record: AnswerRecord) -> None:
        metrics = self._metrics
        metrics.e2e.observe(time.monotonic() - self._started_s)
        finish = record.finish_reason
        metrics.answers.labels(finish if finish in FINISH_REASONS else OTHER).inc()
        metrics.prompt_tokens.inc(record.prompt_tokens)
        metrics.completion_tokens.inc(record.completion_tokens)
        if record.ttft_s is not None:
            metrics.ttft.observe(record.ttft_s)
        if record.basis is not None:
            return  # cited passages appear at once: their pieces are not the model's pace
        for gap_s, tokens in self._gaps or _from_rate(record):
            for _ in range(tokens):  # one observation per token, as for a plain answer
                metrics.inter_token.observe(gap_s / tokens)

    def failed(self) -> None:
        """The answer failed after the engine had accepted the question."""
        self._metrics.answers.labels("error").inc()


def _from_rate(record: AnswerRecord) -> list[tuple[float, int]]:
    """A plain answer's gaps from the engine's decode rate (tokens after the first)."""
    if not record.tok_per_s or record.completion_tokens < 2:
        return []
    tokens = record.completion_tokens - 1
    return [(tokens / record.tok_per_s, tokens)]


class MetricsMiddleware:
    """ASGI middleware: counts every HTTP request by route template, method and status, and
    every refusal by reason. Pure ASGI, so a streamed answer's pieces pass through untouched;
    added last in create_app, so it is outermost and sees the guards' refusals too."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Any], metrics: Metrics,
                 routes: Iterable[Any]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        error = _ErrorBody()

        async def watched_send(message: Message) -> None:
            error.see(message)
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception:
            error.crashed()  # Starlette's outermost handler answers 500
            raise
        finally:
            if error.status:  # 0: nothing was sent (the server cancelled the request)
                self.metrics.request(route_template(self.routes, scope),
                                     scope.get("method", ""), error.status, error.kind)


class _ErrorBody:
    """A response's status and, for a JSON error, the `type` in its (small) body."""

    def __init__(self) -> None:
        self.status = 0
        self._json = False
        self._body = bytearray()
        self._crashed = False

    def crashed(self) -> None:
        self.status = self.status or 500
        self._crashed = True

    def see(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            content_type = dict(message.get("headers", ())).get(b"content-type", b"")
            self._json = self.status >= 400 and content_type.startswith(b"application/json")
        elif message["type"] == "http.response.body" and self._json:
            self._body += message.get("body", b"")[:_ERROR_BODY_LIMIT - len(self._body)]

    @property
    def kind(self) -> str | None:
        if not self._body:
            return "internal_error" if self._crashed else None
        try:
            kind = json.loads(self._body)["error"]["type"]
        except (ValueError, KeyError, TypeError):
            return None
        return kind if isinstance(kind, str) else None


class _ApplianceCollector:
    """Gauges read at scrape time: build and model always, the rest from a running daemon."""

    def __init__(self, build: dict[str, str], gauges: Callable[[], Gauges] | None) -> None:
        self.build, self.gauges = build, gauges

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily("gemba_build", "Version of Gemba and the model it serves",
                               value=self.build)
        if self.gauges is None:
            return
        gauges = self.gauges()
        yield GaugeMetricFamily("gemba_queue_depth", "Answers waiting for the engine",
                                value=gauges.queue_depth)
        yield GaugeMetricFamily("gemba_queue_capacity", "Answers that may wait (daemon."
                                "max_queue); more are refused", value=gauges.queue_capacity)
        yield GaugeMetricFamily("gemba_engine_ready", "1 when the engine takes questions",
                                value=float(gauges.engine_state in ("ready", "answering")))
        yield _one_of("gemba_engine_state", "The engine's state (1: current)", "state",
                      ENGINE_STATES, gauges.engine_state)
        yield CounterMetricFamily("gemba_engine_restarts", "Engine worker restarts after a "
                                  "crash", value=gauges.engine_restarts)
        yield _one_of("gemba_governor_mode", "The governor's mode (1: current)", "mode", MODES,
                      gauges.governor_mode)
        yield GaugeMetricFamily("gemba_governor_duty_ratio", "Share of full speed the governor "
                                "allows the engine", value=gauges.governor_duty)
        if gauges.sample_age_s is not None:
            yield GaugeMetricFamily("gemba_telemetry_sample_age_seconds", "Age of the governor's "
                                    "last sensor sample", value=gauges.sample_age_s)
        yield from _temperatures(gauges)
        yield from _power(gauges)


def _one_of(name: str, documentation: str, label: str, values: Iterable[str],
            current: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value in values:
        family.add_metric([value], float(value == current))
    return family


def _temperatures(gauges: Gauges) -> Iterator[Metric]:
    return _held(gauges, SENSORS, "sensor", "gemba_temperature", "celsius", (
        "Hottest reading of each kind of sensor",
        "The governor's limits: careful slows answers, warning pauses new ones, critical stops",
        "Degrees left below the warning limit (negative: above it)"))


def _power(gauges: Gauges) -> Iterator[Metric]:
    return _held(gauges, POWER_SOURCES, "source", "gemba_power", "watts", (
        "Measured power draw",
        "The governor's limits on box power (warning: the budget)",
        "Watts left below the box power budget (negative: above it)"))


def _held(gauges: Gauges, figures: Mapping[str, str], label: str, prefix: str, unit: str,
          docs: tuple[str, str, str]) -> Iterator[Metric]:
    """Each figure's reading, the limits the governor holds it to and its margin below the
    warning limit; a figure not measured, or not governed, has no series."""
    now = GaugeMetricFamily(f"{prefix}_{unit}", docs[0], labels=[label])
    limit = GaugeMetricFamily(f"{prefix}_limit_{unit}", docs[1], labels=[label, "level"])
    margin = GaugeMetricFamily(f"{prefix}_margin_{unit}", docs[2], labels=[label])
    for name, figure in figures.items():
        value, limits = gauges.figures.get(figure), gauges.limits.get(figure)
        if value is not None:
            now.add_metric([name], value)
        if limits is not None:
            for level in LEVELS:
                limit.add_metric([name, level], getattr(limits, level))
            if value is not None:
                margin.add_metric([name], limits.warning - value)
    yield from (now, limit, margin)
