"""JSON mode's cost: the engine's decode rate answering under llama.cpp's JSON grammar, against
the same request without it.

What it measures
  The engine (`LlamaEngine` with the [model] defaults, in this process), one request at a time,
  temperature 0, the default system prompt and penalties. Each prompt asks for JSON, so both
  modes write much the same text; each is answered with `json` on and off, in turn, --runs times
  (one warm-up first). Per run: completion tokens, decode rate after the first token (the
  engine's own `Finished.tok_per_s`) and, in JSON mode, whether the answer parses as JSON.
  Reported: the median rates and their ratio (json / plain), per prompt and overall.

    .venv/bin/python bench/json_mode.py                 # about 2 minutes on 2 cores
    .venv/bin/python bench/json_mode.py --runs 5 --max-tokens 160 --output PATH
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.config import DEFAULT_MODEL_ID, GenerationSettings, ModelSettings
from appliance.inference.protocol import (
    Finished,
    GenerationRequest,
    collect,
    generate,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.decode import load_average, machine_info  # noqa: E402 - bench/ is not on sys.path
from bench.local_engine import local_engine, write_report  # noqa: E402

DEFAULT_OUTPUT = ROOT / "bench" / "results" / "json_mode.json"
PROMPTS = [
    "Give the status of pump P-7 (running, 4.2 bar, 61 °C, last service 2026-09-14) as JSON.",
    "List the numbers from 1 to 100 as a JSON array.",
    "Describe alarm B-100 on the filler as a JSON object with code, meaning, cause and action.",
]


def request(prompt: str, as_json: bool, max_tokens: int) -> GenerationRequest:
    settings = GenerationSettings()
    return GenerationRequest(({"role": "system", "content": settings.system_prompt},
                              {"role": "user", "content": prompt}), max_tokens, 0.0,
                             repeat_penalty=settings.repeat_penalty,
                             frequency_penalty=settings.frequency_penalty,
                             presence_penalty=settings.presence_penalty,
                             penalty_last_n=settings.penalty_last_n, json=as_json)


def one_run(engine: Any, prompt: str, as_json: bool, max_tokens: int) -> dict[str, Any]:
    text, finished = collect(generate(engine, request(prompt, as_json, max_tokens),
                                      lambda: False))
    assert isinstance(finished, Finished), finished
    out: dict[str, Any] = {"tokens": finished.completion_tokens,
                           "tok_per_s": round(finished.tok_per_s or 0.0, 2),
                           "finish_reason": finished.finish_reason}
    if as_json:
        try:
            json.loads(text)
            out["parses"] = True
        except ValueError:
            out["parses"] = finished.finish_reason == "length"  # cut at the limit: not judged
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--model", default=DEFAULT_MODEL_ID)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    load = {"start": load_average()}
    per_prompt = []
    with local_engine(args.model, n_parallel=1) as (entry, engine):
        for prompt in PROMPTS:
            one_run(engine, prompt, True, 8)  # warm-up
            runs: dict[str, list[dict[str, Any]]] = {"plain": [], "json": []}
            for _ in range(args.runs):
                runs["plain"].append(one_run(engine, prompt, False, args.max_tokens))
                runs["json"].append(one_run(engine, prompt, True, args.max_tokens))
            plain = statistics.median(r["tok_per_s"] for r in runs["plain"])
            as_json = statistics.median(r["tok_per_s"] for r in runs["json"])
            per_prompt.append({"prompt": prompt, "plain_tok_per_s": plain,
                               "json_tok_per_s": as_json,
                               "ratio": round(as_json / plain, 3) if plain else None,
                               "json_parses": all(r["parses"] for r in runs["json"]),
                               "runs": runs})
            print(f"{prompt[:50]:50}  plain {plain:6.1f}  json {as_json:6.1f} tok/s",
                  file=sys.stderr)
        threads = engine.config.n_threads
    load["end"] = load_average()
    ratios = [p["ratio"] for p in per_prompt if p["ratio"]]
    report = {"benchmark": "json_mode",
              "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": machine_info(), "load_average": load,
              "model": {"id": entry.id, "sha256": entry.sha256},
              "settings": {"runs": args.runs, "max_tokens": args.max_tokens, "threads": threads,
                           "temperature": 0.0, "n_ctx": ModelSettings().n_ctx},
              "median_ratio_json_vs_plain": round(statistics.median(ratios), 3) if ratios
              else None,
              "prompts": per_prompt}
    print(f"json / plain decode rate (median over prompts): {report['median_ratio_json_vs_plain']}")
    write_report(args.output, report)
    print(f"report: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
