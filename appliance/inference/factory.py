"""One way to build an engine's settings: the daemon, the burn-in, the self-test and the tests
all get their `EngineConfig` here, so what is checked is what runs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import psutil

from appliance.config import GenerationSettings, ModelSettings, Settings
from appliance.errors import ConfigError
from appliance.inference.fake import ENV as FAKE_ENV
from appliance.inference.fake import FakeScript
from appliance.inference.protocol import EngineConfig
from appliance.knowledge.answer import grounded_system


def default_threads() -> int:
    """One decoding thread per physical core: hyper-threads slow llama.cpp down."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def engine_config(model: ModelSettings, generation: GenerationSettings, model_id: str,
                  model_path: Path, model_sha256: str,
                  environ: Mapping[str, str] | None = None,
                  system_prompts: tuple[str, ...] = ()) -> EngineConfig:
    """The engine the settings describe. `GEMBA_FAKE_ENGINE` (tests only) swaps llama.cpp
    for a scripted engine in the same worker process. `system_prompts` are read into slots
    before the engine reports ready (the daemon passes `system_prompts(settings)`)."""
    env = os.environ if environ is None else environ
    script = env.get(FAKE_ENV) or None
    if script is not None:
        try:
            FakeScript.parse(script)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{FAKE_ENV}={script!r} is not a fake engine script: {exc}",
                              "unset it (it is for tests only) or fix the script") from exc
    return EngineConfig(
        model_id=model_id, model_path=str(model_path), model_sha256=model_sha256,
        n_ctx=model.n_ctx, n_parallel=model.n_parallel, n_threads=model.n_threads or default_threads(),
        n_batch=model.n_batch, n_gpu_layers=model.n_gpu_layers, n_ubatch=model.n_ubatch,
        kv_cache_type=model.kv_cache_type, flash_attn=model.flash_attn,
        use_mmap=model.use_mmap, use_mlock=model.use_mlock,
        stream_interval_ms=generation.stream_interval_ms, fake_script=script,
        system_prompts=system_prompts)


def system_prompts(settings: Settings) -> tuple[str, ...]:
    """The system prompts the engine reads when it starts, most used first: a grounded answer's
    rules in the plant's language (when answers come from the documents), then plain chat's."""
    plain = settings.generation.system_prompt
    if settings.knowledge.mode == "off":
        return (plain,)
    return (grounded_system(settings.knowledge.locale), plain)
