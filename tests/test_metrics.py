"""GET /metrics: Prometheus' text format, parsed with prometheus_client's parser.

Requests and refusals are counted through the real app in-process (no engine needed for them);
the governor's gauges come from a governor loop fed by fake sensors built from recorded boxes;
the token and latency figures come from the real model answering through the real daemon.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from appliance.api.app import create_app
from appliance.api.metrics import (
    FINISH_REASONS,
    METHODS,
    OTHER,
    REASONS,
    Metrics,
    appliance_gauges,
    rejection_reason,
    route_templates,
)
from appliance.chat import ChatService
from appliance.config import DaemonSettings, Settings
from appliance.governor import MODES, Budgets, Limits, limits_for
from appliance.governor_loop import GovernorLoop
from appliance.hardware.telemetry import take_sample
from appliance.inference.protocol import EngineConfig, Piece
from appliance.inference.scheduler import Scheduler
from appliance.inference.supervisor import EngineSupervisor
from appliance.store import open_store
from appliance.store.conversations import AnswerRecord
from tests.conftest import GembaHome
from tests.fakes.hardware import load_recorded, recorded_sources

BASE = "http://127.0.0.1"
KEY = "metrics-key"
Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Samples:
    """Every sample by name (`gemba_http_requests_total`, …), as Prometheus' parser reads it."""
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The one sample of `name` with exactly these labels; None when there is none."""
    found = [v for sample_labels, v in samples.get(name, []) if sample_labels == labels]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def app_without_engine(tmp_path: Path, settings: Settings | None = None,
                       metrics: Metrics | None = None) -> FastAPI:
    """The real routes over a real store; the engine is never reached."""
    service = ChatService(open_store(tmp_path / "gemba.db"), cast(Any, None), cast(Any, None),
                          "m", "a" * 64, "")
    return create_app(service, settings or Settings(), lambda: {"ready": True}, metrics=metrics)


def call(app: FastAPI, *requests: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url=BASE) as client:
            return [await client.request(method, url, **options)
                    for method, url, options in requests]

    return asyncio.run(run())


def scrape(app: FastAPI, **options: Any) -> Samples:
    response = call(app, ("GET", "/metrics", options))[0]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


# -- requests and refusals ------------------------------------------------------------------------
def test_requests_are_counted_by_route_template_and_status(tmp_path: Path) -> None:
    app = app_without_engine(tmp_path)
    statuses = [r.status_code for r in call(
        app, ("GET", "/v1/models", {}), ("GET", "/v1/models", {}),
        ("GET", "/v1/appliance/conversations/999999", {}),
        ("GET", "/v1/appliance/conversations/424242", {}), ("GET", "/nope/123", {}))]
    assert statuses == [200, 200, 404, 404, 404]
    samples = scrape(app)
    requests = "gemba_http_requests_total"
    assert value(samples, requests, route="/v1/models", method="GET", status="200") == 2
    # Two different ids, one series: the route's template, never the path asked for.
    assert value(samples, requests, route="/v1/appliance/conversations/{conversation_id}",
                 method="GET", status="404") == 2
    assert value(samples, requests, route=OTHER, method="GET", status="404") == 1
    assert value(samples, "gemba_rejections_total", reason="not_found") == 3
    assert value(samples, "gemba_build_info", version="0.1.0", model_id="m",
                 model_sha256="a" * 64) == 1


def test_a_bad_request_a_huge_body_and_a_foreign_host_are_refusals(tmp_path: Path) -> None:
    settings = Settings(daemon=DaemonSettings(max_body_bytes=2048))
    app = app_without_engine(tmp_path, settings)
    responses = call(
        app, ("POST", "/v1/chat/completions", {"content": b'{"messages": [}'}),
        ("POST", "/v1/chat/completions", {"json": {"messages": []}}),
        ("POST", "/v1/chat/completions", {"content": b"x" * 4096}),
        ("GET", "/v1/models", {"headers": {"host": "attacker.example"}}))
    assert [r.status_code for r in responses] == [400, 400, 413, 403]
    samples = scrape(app)
    assert value(samples, "gemba_rejections_total", reason="invalid_request") == 2
    # The guards answer before any route runs; the metrics middleware sits outside them all.
    assert value(samples, "gemba_rejections_total", reason="too_large") == 1
    assert value(samples, "gemba_rejections_total", reason="forbidden_host") == 1
    assert value(samples, "gemba_http_requests_total", route="/v1/chat/completions",
                 method="POST", status="413") == 1
    assert value(samples, "gemba_rejections_total", reason="queue_full") == 0  # there, at 0


def test_with_an_api_key_metrics_needs_it_and_a_401_is_a_refusal(tmp_path: Path) -> None:
    app = app_without_engine(tmp_path, Settings(daemon=DaemonSettings(api_key=KEY)))
    missing, wrong, documents = call(
        app, ("GET", "/metrics", {}),
        ("GET", "/metrics", {"headers": {"Authorization": "Bearer nope"}}),
        ("GET", "/v1/appliance/documents", {}))
    assert missing.status_code == wrong.status_code == documents.status_code == 401
    assert "gemba_" not in missing.text
    samples = scrape(app, headers={"Authorization": f"Bearer {KEY}"})
    assert value(samples, "gemba_rejections_total", reason="unauthorized") == 3
    assert value(samples, "gemba_http_requests_total", route="/metrics", method="GET",
                 status="401") == 2
    # Refused before routing, still under its route's template (an included router's too).
    assert value(samples, "gemba_http_requests_total", route="/v1/appliance/documents",
                 method="GET", status="401") == 1


def test_an_unhandled_error_counts_as_a_500(tmp_path: Path) -> None:
    app = app_without_engine(tmp_path)

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)

    async def run() -> int:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            return (await client.get("/broken")).status_code

    assert asyncio.run(run()) == 500
    samples = scrape(app)
    assert value(samples, "gemba_http_requests_total", route="/broken", method="GET",
                 status="500") == 1
    assert value(samples, "gemba_rejections_total", reason="internal_error") == 1


def test_label_values_come_from_closed_sets(tmp_path: Path) -> None:
    app = app_without_engine(tmp_path)
    call(app, *[("GET", f"/nope/{n}", {}) for n in range(20)],
         ("BREW", "/v1/models", {}), ("GET", "/v1/appliance/conversations/abc", {}),
         ("GET", "/v1/appliance/documents/a/b/c/revisions", {}),
         ("DELETE", "/metrics", {}), ("GET", "/v1/appliance/telemetry?seconds=0", {}))
    samples = scrape(app)
    requests = samples["gemba_http_requests_total"]
    assert {labels["route"] for labels, _ in requests} <= route_templates(app.routes)
    assert value(samples, "gemba_http_requests_total", method="GET", status="404",
                 route="/v1/appliance/documents/{key:path}/revisions") == 1
    assert {labels["method"] for labels, _ in requests} <= {*METHODS, OTHER}
    assert all(labels["status"].isdigit() for labels, _ in requests)
    assert value(samples, "gemba_http_requests_total", route=OTHER, method="GET",
                 status="404") == 20
    assert value(samples, "gemba_http_requests_total", route="/v1/models", method=OTHER,
                 status="405") == 1
    assert {labels["reason"] for labels, _ in samples["gemba_rejections_total"]} == set(REASONS)
    assert {labels["finish_reason"] for labels, _ in samples["gemba_answers_total"]} == \
        set(FINISH_REASONS)


@pytest.mark.parametrize(("status", "kind", "reason"), [
    (429, "busy", "queue_full"),
    (503, "not_ready", "not_ready"),
    (503, "engine_error", "engine_error"),
    (503, "storage_error", "storage"),
    (503, "http_error", "unavailable"),
    (403, "forbidden_origin", "forbidden_origin"),
    (422, "import_refused", "import_refused"),
    (500, "something new", "internal_error"),
    (418, "teapot", "other"),
    (499, None, None),  # the client left: nothing was refused
    (503, None, None),  # /healthz while loading: an answer to a probe, not an error
    (200, None, None),
])
def test_refusal_reasons_come_from_the_error_kind_then_the_status(
        status: int, kind: str | None, reason: str | None) -> None:
    assert rejection_reason(status, kind) == reason


# -- answers: one observation per token -----------------------------------------------------------
def _record(completion_tokens: int, tok_per_s: float | None,
            basis: str | None = None) -> AnswerRecord:
    return AnswerRecord("…", "stop", 12, completion_tokens, 0.2, tok_per_s, "m", "a" * 64,
                        basis=basis)


def test_inter_token_latency_is_observed_once_per_token() -> None:
    metrics = Metrics("0", "m", "a" * 64)
    streamed = metrics.watch()
    for piece in (Piece("a"), Piece("bcd", tokens=3), Piece("ef", tokens=2)):
        streamed.piece(piece)  # the first piece has no gap before it
    streamed.answered(_record(6, 40.0))
    metrics.watch().answered(_record(10, 20.0))  # plain: from the engine's rate, 9 gaps
    metrics.watch().answered(_record(8, None, basis="documents"))  # passages: no pace
    samples = parse(metrics.exposition().decode())
    assert value(samples, "gemba_inter_token_latency_seconds_count") == 3 + 2 + 9
    assert value(samples, "gemba_completion_tokens_total") == 6 + 10 + 8
    assert value(samples, "gemba_time_to_first_token_seconds_count") == 3
    assert value(samples, "gemba_answers_total", finish_reason="stop") == 3


# -- the governor's gauges, from fake sensors built from recorded boxes -----------------------------
BUDGETS = Budgets(cpu_temp_c=Limits(75.0, 85.0, 95.0), gpu_temp_c=Limits(65.0, 80.0, 90.0),
                  box_power_w=20.0)


def _governed_app(tmp_path: Path, box: str) -> tuple[FastAPI, GovernorLoop]:
    sources = recorded_sources(box, tmp_path)
    db = open_store(tmp_path / "gemba.db")
    supervisor = EngineSupervisor(EngineConfig("m", "/nonexistent", "a" * 64, 512, 2, 64, 0))
    scheduler = Scheduler(max_queue=6)
    service = ChatService(db, supervisor, scheduler, "m", "a" * 64, "")
    governor = GovernorLoop(BUDGETS, lambda: take_sample(sources.ps, sources.nvml, sources.root),
                            supervisor, scheduler, service, db, None, planned_threads=2)
    metrics = Metrics("0.1.0", "m", "a" * 64, appliance_gauges(supervisor, scheduler, governor))
    return create_app(service, Settings(), lambda: {"ready": True}, metrics=metrics), governor


@pytest.mark.parametrize("box", ["ipc-rtx-a2000-12gb", "jetson-orin-nx-16gb-25w"])
def test_each_temperature_shows_with_its_limits_and_margin(tmp_path: Path, box: str) -> None:
    app, governor = _governed_app(tmp_path, box)
    asyncio.run(governor.tick())
    sample, decision = governor.last_sample, governor.decision
    assert sample is not None and sample.cpu_temp_c is not None and sample.gpu_temp_c is not None
    samples = scrape(app)
    limits = limits_for(BUDGETS)
    for sensor in ("cpu", "gpu"):
        reading = getattr(sample, f"{sensor}_temp_c")
        warning = limits[f"{sensor}_temp_c"].warning
        assert value(samples, "gemba_temperature_celsius", sensor=sensor) == reading
        assert value(samples, "gemba_temperature_limit_celsius", sensor=sensor,
                     level="warning") == warning
        assert value(samples, "gemba_temperature_margin_celsius", sensor=sensor) == \
            pytest.approx(warning - reading)
    for mode in MODES:
        assert value(samples, "gemba_governor_mode", mode=mode) == float(mode == decision.mode)
    assert value(samples, "gemba_governor_duty_ratio") == decision.duty
    assert value(samples, "gemba_queue_depth") == 0
    assert value(samples, "gemba_queue_capacity") == 6
    assert value(samples, "gemba_engine_ready") == 0  # never started: loading
    assert value(samples, "gemba_engine_state", state="loading") == 1
    assert value(samples, "gemba_engine_restarts_total") == 0


def test_a_hot_gpu_shows_the_mode_the_governor_chose(tmp_path: Path) -> None:
    app, governor = _governed_app(tmp_path, "ipc-rtx-a2000-12gb")
    asyncio.run(governor.tick())
    recorded_gpu = load_recorded("ipc-rtx-a2000-12gb").nvml.gpus[0]
    samples = scrape(app)
    # The recorded A2000 runs at 71 °C under load: over the careful 65 °C of these budgets.
    assert value(samples, "gemba_temperature_celsius", sensor="gpu") == recorded_gpu.temp_c
    assert value(samples, "gemba_governor_mode", mode="slowed") == 1
    assert value(samples, "gemba_power_watts", source="gpu") == recorded_gpu.power_draw_w
    assert value(samples, "gemba_power_watts", source="box") is None  # no rail measures it


def test_box_power_shows_with_its_budget_and_margin(tmp_path: Path) -> None:
    app, governor = _governed_app(tmp_path, "jetson-orin-nx-16gb-25w")
    asyncio.run(governor.tick())
    tegra = load_recorded("jetson-orin-nx-16gb-25w").tegra
    assert tegra is not None
    vdd_in = next(rail.power_w for rail in tegra.power_rails if rail.name == "VDD_IN")
    samples = scrape(app)
    assert value(samples, "gemba_power_watts", source="box") == vdd_in
    assert value(samples, "gemba_power_limit_watts", source="box", level="warning") == 20.0
    assert value(samples, "gemba_power_margin_watts", source="box") == \
        pytest.approx(20.0 - vdd_in)
    assert value(samples, "gemba_telemetry_sample_age_seconds") >= 0


# -- the real model, through the real daemon ------------------------------------------------------
COOL_BOX = "ambient_c=30,r_c_per_w=1,c_j_per_c=10,idle_w=1,load_w=5,full_tok_per_s=80"
QUESTIONS = ("Name one thing to check on a conveyor belt.", "What is a torque wrench for?",
             "Say OK.", "List three colours.")


def _ask(home: GembaHome, question: str, stream: bool) -> dict[str, int]:
    body = {"messages": [{"role": "user", "content": question}], "max_tokens": 24,
            "temperature": 0, "stream": stream}
    headers = {"Authorization": f"Bearer {KEY}"}
    if not stream:
        response = httpx.post(f"{home.url}/v1/chat/completions", json=body, headers=headers,
                              timeout=120)
        assert response.status_code == 200, response.text
        return response.json()["usage"]
    with httpx.stream("POST", f"{home.url}/v1/chat/completions", json=body, headers=headers,
                      timeout=120) as response:
        assert response.status_code == 200
        chunks = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: {")]
    return next(c["usage"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"])


def _scrape_daemon(home: GembaHome) -> Samples:
    response = httpx.get(f"{home.url}/metrics", headers={"Authorization": f"Bearer {KEY}"},
                         timeout=5)
    assert response.status_code == 200
    return parse(response.text)


@pytest.mark.model
def test_completion_tokens_counted_equal_the_usage_of_the_answers_given(
        gemba_home: GembaHome) -> None:
    gemba_home.extra_env["GEMBA_SIMULATED_THERMAL"] = COOL_BOX
    gemba_home.write_config(gemba_home.config_file.read_text().replace(
        "[daemon]\n", f'[daemon]\napi_key = "{KEY}"\n'))
    gemba_home.start_daemon()
    assert httpx.get(f"{gemba_home.url}/metrics", timeout=5).status_code == 401
    before = _scrape_daemon(gemba_home)
    usages = [_ask(gemba_home, question, stream=n % 2 == 1)
              for n, question in enumerate(QUESTIONS)]
    after = _scrape_daemon(gemba_home)

    def grew(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert grew("gemba_completion_tokens_total") == sum(u["completion_tokens"] for u in usages)
    assert grew("gemba_prompt_tokens_total") == sum(u["prompt_tokens"] for u in usages)
    assert grew("gemba_answers_total", finish_reason="stop") + \
        grew("gemba_answers_total", finish_reason="length") == len(QUESTIONS)
    for histogram in ("gemba_time_to_first_token_seconds", "gemba_e2e_request_latency_seconds"):
        assert grew(f"{histogram}_count") == len(QUESTIONS)
    assert grew("gemba_inter_token_latency_seconds_count") > 0
    assert grew("gemba_http_requests_total", route="/v1/chat/completions", method="POST",
                status="200") == len(QUESTIONS)
    assert value(after, "gemba_rejections_total", reason="unauthorized") == 1
    sha256 = httpx.get(f"{gemba_home.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"},
                       timeout=5).json()["data"][0]["sha256"]
    assert value(after, "gemba_build_info", version="0.1.0",
                 model_id="smollm2-135m-instruct-q4_1", model_sha256=sha256) == 1
    assert value(after, "gemba_engine_ready") == 1
    assert value(after, "gemba_queue_capacity") == 8
    assert value(after, "gemba_governor_mode", mode="normal") == 1
    # The simulated sensor stands in for the missing one: the daemon's governor feeds the gauge.
    temp = value(after, "gemba_temperature_celsius", sensor="cpu")
    assert temp is not None and 30 <= temp < 75
    assert value(after, "gemba_temperature_margin_celsius", sensor="cpu") == \
        pytest.approx(Settings().budgets.cpu_warning_c - temp)
