"""The engine in a benchmark's own process, built as the daemon builds it, and the report file."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from appliance.config import GenerationSettings, ModelSettings
from appliance.inference.factory import engine_config
from appliance.models import CatalogEntry, resolve_verified


@contextmanager
def local_engine(model_id: str, **model: Any) -> Iterator[tuple[CatalogEntry, Any]]:
    """The catalog model (sha256 checked) in a `LlamaEngine` with the [model] defaults, but for
    the `model` settings given (e.g. n_parallel=1); closed when the block ends."""
    from appliance.inference.llama import LlamaEngine  # loads llama.cpp: only when asked

    with tempfile.TemporaryDirectory() as models_dir:
        entry, path = resolve_verified(model_id, Path(models_dir))
    config = engine_config(ModelSettings(**model), GenerationSettings(), entry.id, path,
                           entry.sha256, environ={})
    engine = LlamaEngine(config)
    try:
        yield entry, engine
    finally:
        engine.close()


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
