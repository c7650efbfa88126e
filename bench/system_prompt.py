"""The system prompt read once: a new question's first token with the system prompt's cache held,
against the same question with nothing cached.

What it measures
  The engine (`LlamaEngine`, the [model] defaults, 4 slots, in this process), temperature 0,
  2 tokens per answer (only the first token is timed). Prompts: the daemon's plain-chat system
  prompt with an operator question, and the grounded prompt (`grounded_messages`: the rules as
  the system message, one short passage and the question) in English, Chinese and Japanese.
  Per prompt and run: "cold" after every slot was emptied (`abort_all`: the whole prompt is
  read, its system part first), then "warm", the same prompt again (the next new question:
  its system part comes from the cache, the rest is read). The engine's own time to first
  token (`Finished.ttft_s`), medians over --runs; the cached tokens are checked to be the
  system part's.

    .venv/bin/python bench/system_prompt.py            # about 1 minute on 2 cores
    .venv/bin/python bench/system_prompt.py --runs 5 --output PATH
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.config import DEFAULT_MODEL_ID, GenerationSettings
from appliance.inference.protocol import (
    Finished,
    GenerationRequest,
    collect,
    generate,
)
from appliance.knowledge.answer import grounded_messages
from appliance.knowledge.search import Hit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.decode import load_average, machine_info  # noqa: E402 - bench/ is not on sys.path
from bench.local_engine import local_engine, write_report  # noqa: E402

DEFAULT_OUTPUT = ROOT / "bench" / "results" / "system_prompt.json"
PASSAGES = {
    "en": ("Alarm B-100 filler low level. Cause: product tank level below 20 %. Action: check "
           "the supply valve V-12 and the level sensor LS-3; reset after the level is above 35 %.",
           "What does alarm B-100 mean?"),
    "zh": ("报警E-21：注塑机料筒温度过高。原因：加热圈控制失效或热电偶损坏。处理：检查热电偶TC-2接线，"
           "温度降至230 °C以下后复位。", "报警E-21是什么意思？"),
    "ja": ("アラームP-07：ポンプ吐出圧力低下。原因：吸込みフィルタの目詰まり、またはベルトの緩み。"
           "処置：フィルタを清掃し、圧力が0.4 MPa以上に戻ることを確認する。",
           "アラームP-07の原因は何ですか？"),
}


def prompts() -> dict[str, tuple[dict[str, str], ...]]:
    out: dict[str, tuple[dict[str, str], ...]] = {
        "plain-en": ({"role": "system", "content": GenerationSettings().system_prompt},
                     {"role": "user", "content": "The conveyor on line 2 stops every few "
                                                 "minutes. What should I check?"})}
    for lang, (text, question) in PASSAGES.items():
        hit = Hit(1, "AL-1", "Alarm list", "alarms.pdf", "1", "Alarms", 1, text, 1.0)
        messages = grounded_messages(question, lang, [hit])
        assert messages is not None
        out[f"grounded-{lang}"] = messages
    return out


def first_token(engine: Any, messages: tuple[dict[str, str], ...]) -> Finished:
    _, finished = collect(generate(engine, GenerationRequest(messages, 2, 0.0), lambda: False))
    assert isinstance(finished, Finished) and finished.ttft_s is not None, finished
    return finished


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default=DEFAULT_MODEL_ID)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    load = {"start": load_average()}
    results: dict[str, Any] = {}
    with local_engine(args.model) as (entry, engine):
        for name, messages in prompts().items():
            results[name] = cold_and_warm(engine, messages, args.runs)
            r = results[name]
            print(f"{name:12} {r['prompt_tokens']:4} tokens ({r['system_tokens']} system)  "
                  f"cold {r['cold_ttft_ms']:7.1f} ms  warm {r['warm_ttft_ms']:7.1f} ms",
                  file=sys.stderr)
        config = engine.config
    load["end"] = load_average()
    write_report(args.output, {
        "benchmark": "system_prompt",
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(), "load_average": load,
        "model": {"id": entry.id, "sha256": entry.sha256},
        "settings": {"runs": args.runs, "threads": config.n_threads, "n_ctx": config.n_ctx,
                     "n_parallel": config.n_parallel, "n_batch": config.n_batch},
        "prompts": results})
    print(f"report: {args.output}")
    return 0


def cold_and_warm(engine: Any, messages: tuple[dict[str, str], ...], runs: int) -> dict[str, Any]:
    prompt, _ = engine.tokenize_chat(list(messages))
    system = engine.system_prefix(list(messages), prompt)
    first_token(engine, messages)  # warm-up
    cold, warm, cached_ok = [], [], True
    for _ in range(runs):
        engine.abort_all()
        cold.append(first_token(engine, messages))
        warm.append(first_token(engine, messages))
        cached_ok &= cold[-1].cached_tokens == 0 and warm[-1].cached_tokens == system
    return {"prompt_tokens": len(prompt), "system_tokens": system,
            "cold_ttft_ms": round(statistics.median(f.ttft_s or 0 for f in cold) * 1000, 1),
            "warm_ttft_ms": round(statistics.median(f.ttft_s or 0 for f in warm) * 1000, 1),
            "cached_tokens_as_expected": cached_ok}


if __name__ == "__main__":
    sys.exit(main())
