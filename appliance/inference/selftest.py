"""Setup check: can this llama.cpp build run the embedded model on this CPU?

Run by `make` after installing. The model is decoded in a child process, so a build that dies
with "illegal instruction" or a segfault is reported with what to do, not as a crash.
"""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

from appliance.config import DEFAULT_MODEL_ID, Paths
from appliance.errors import GembaError
from appliance.models import resolve_verified

_REBUILD = ("rebuild it for this CPU: .venv/bin/pip install --no-cache-dir --force-reinstall "
            "--no-deps llama-cpp-python==0.3.36 (with CMAKE_ARGS as in the Makefile)")


def _decode(model_id: str, model_path: str) -> None:
    # Through the engine module, the one importer of llama_cpp: what is checked is what runs.
    from appliance.config import GenerationSettings, ModelSettings
    from appliance.inference.factory import engine_config
    from appliance.inference.llama import LlamaEngine
    from appliance.inference.protocol import Finished, GenerationRequest, generate

    engine = LlamaEngine(engine_config(ModelSettings(n_ctx=256, n_threads=1, n_batch=64),
                                       GenerationSettings(), model_id, Path(model_path), "",
                                       environ={}))
    request = GenerationRequest(({"role": "user", "content": "Check the belt tension."},),
                                max_tokens=4, temperature=0.0)
    events = list(generate(engine, request, lambda: False))
    if not isinstance(events[-1], Finished):
        raise SystemExit(f"the engine did not finish: {events[-1]}")


def main() -> int:
    try:
        entry, path = resolve_verified(DEFAULT_MODEL_ID, Paths.from_env().models_dir)
    except GembaError as error:
        print(f"selftest: {error.message}\n  what to do: {error.hint}", file=sys.stderr)
        return error.exit_code
    child = multiprocessing.get_context("spawn").Process(target=_decode, args=(entry.id, str(path)))
    child.start()
    child.join()
    if child.exitcode != 0:
        print(f"selftest: llama.cpp failed to run {Path(path).name} on this CPU "
              f"(exit code {child.exitcode}); {_REBUILD}", file=sys.stderr)
        return 70
    print("selftest: llama.cpp runs the embedded model on this CPU.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
