"""Several clients at once: answers unchanged, first tokens fast, total throughput kept.

The goal: "4 simultaneous clients at temperature 0: each answer identical to the same request
alone; every client's first token within 0.5 s; aggregate tokens per second >= 0.95 of one
client alone." The engine decodes up to `[model] n_parallel` answers in one llama.cpp batch;
before that it answered one request at a time (run with --parallel 1 to see that behaviour).
Everything is measured through the daemon's API alone, so the script runs against any version.

What it measures, per repeat
  * alone:    `gemba serve` started in a fresh temporary GEMBA_HOME (config: [model] n_parallel,
              [knowledge] mode off), one untimed warm-up answer to an unrelated prompt, then each
              question streamed alone, one after the other (`POST /v1/chat/completions`,
              stream, temperature 0, knowledge off, --max-tokens): its text, time to first
              token, completion tokens (usage) and rate = completion tokens / (last chunk -
              request sent), prompt reading included.
  * together: the daemon restarted (so no slot holds a prompt the alone phase read: a repeated
              prompt may be served from the KV cache, which would flatter the first tokens),
              one warm-up of --clients unrelated prompts at once (after which the daemon holds
              its system prompt, as a running appliance does, and reads only the rest of each
              prompt, as in the alone phase), then --clients threads
              released by one barrier, each streaming its question (the fixed QUESTIONS,
              cycled): per client its TTFT (request sent -> first non-empty content chunk),
              text, completion tokens and finish time.
              aggregate rate = sum of completion tokens / (last finish - first request sent);
              ratio = aggregate rate / mean alone rate of the clients' questions (the same
              formula, so the ratio compares like with like).
  identical: each client's text == its question's alone text of the same repeat.
  read floor: the sum of the clients' questions' alone engine first-token times: what the
              engine needs to read their prompts one after another. Prompt reading is bound by
              the CPU (a prompt read with others would change its answer, so prompts are read
              one at a time), so no order of the clients gets the slowest first token sooner.
  Medians over --repeats. The goals are judged on the medians (TTFT: the median over repeats of
  each repeat's slowest client) and, for identical, on every client of every repeat. Nothing
  asserts: the goals are reported (and exit status is 0 either way).

The daemon is stopped (SIGTERM, then its process group killed) whenever a phase ends, also on
Ctrl-C, SIGTERM or an error. The clients run in this process: on a 2-core box their threads
take a little CPU from the engine (a little more with more clients at once).

    .venv/bin/python bench/concurrency.py                       # 4 clients, n_parallel 4
    .venv/bin/python bench/concurrency.py --parallel 1          # one answer at a time
    .venv/bin/python bench/concurrency.py --clients 4 --repeats 3 --max-tokens 128 \
        --output bench/results/concurrency.json
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from appliance.config import DEFAULT_MODEL_ID, ModelSettings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.decode import (  # noqa: E402 - the bench folder is not a package on sys.path
    completion_chunks,
    free_port,
    load_average,
    machine_info,
    start_daemon,
    stop_daemon,
    wait_healthy,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "concurrency.json"

QUESTIONS = [
    {"id": "en-conveyor", "lang": "en",
     "question": "The conveyor on line 2 stops every few minutes. What should I check, step by "
                 "step?"},
    {"id": "en-pump", "lang": "en",
     "question": "Why is the hydraulic pump noisy after a filter change, and how do I fix it?"},
    {"id": "zh-compressor", "lang": "zh",
     "question": "空压机排气温度过高，可能是什么原因？应该怎么处理？"},
    {"id": "ja-belt", "lang": "ja",
     "question": "ドライブベルトの張りはどうやって点検しますか？手順を教えてください。"},
]
WARMUP_PROMPT = "Warm-up {n}: answer with one word."
WARMUP_TOKENS = 4

GOAL_TTFT_S = 0.5
GOAL_RATIO = 0.95


# -- talking to the daemon (conversation.py uses these too) ---------------------------------------
@dataclass
class Answer:
    """One streamed answer, timed on this side (time.perf_counter)."""

    text: str
    started: float
    """Just before the request was sent."""
    first_at: float | None
    """First non-empty content chunk."""
    finished: float
    """`[DONE]` (or the end of the stream)."""
    last_token_at: float | None
    completion_tokens: int
    prompt_tokens: int
    finish_reason: str | None
    engine_ttft_s: float | None
    conversation_id: int | None

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_at is None else self.first_at - self.started

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def tok_per_s(self) -> float:
        """Completion tokens over the whole request, prompt reading included."""
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def decode_tok_per_s(self) -> float | None:
        """After the first token, as bench/decode.py counts it."""
        if self.first_at is None or self.last_token_at is None or self.completion_tokens < 2:
            return None
        spent = self.last_token_at - self.first_at
        return (self.completion_tokens - 1) / spent if spent > 0 else None

    def to_dict(self, origin: float | None = None) -> dict[str, Any]:
        out = {"ttft_ms": ms(self.ttft_s), "seconds": round(self.seconds, 3),
               "completion_tokens": self.completion_tokens, "prompt_tokens": self.prompt_tokens,
               "finish_reason": self.finish_reason, "tok_per_s": round(self.tok_per_s, 3),
               "decode_tok_per_s": rounded(self.decode_tok_per_s),
               "engine_ttft_ms": ms(self.engine_ttft_s)}
        if origin is not None:
            out["started_after_s"] = round(self.started - origin, 4)
            out["finished_after_s"] = round(self.finished - origin, 4)
        return {**out, "text": self.text}


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def stream_chat(client: httpx.Client, messages: list[dict[str, str]], max_tokens: int,
                conversation_id: int | None = None) -> Answer:
    """One streaming chat request at temperature 0 without the plant documents."""
    body: dict[str, Any] = {"messages": messages, "stream": True,
                            "stream_options": {"include_usage": True}, "max_tokens": max_tokens,
                            "temperature": 0, "knowledge": "off"}
    if conversation_id is not None:
        body["conversation_id"] = conversation_id
    pieces: list[str] = []
    first_at = last_at = None
    usage: dict[str, Any] = {}
    gemba: dict[str, Any] = {}
    finish_reason = None
    started = time.perf_counter()
    for at, chunk in completion_chunks(client, body):
        usage = chunk.get("usage") or usage
        gemba = {**gemba, **chunk.get("gemba", {})}
        for choice in chunk.get("choices") or []:
            content = choice.get("delta", {}).get("content")
            if content:
                pieces.append(content)
                first_at = first_at or at
                last_at = at
            finish_reason = choice.get("finish_reason") or finish_reason
    return Answer("".join(pieces), started, first_at, time.perf_counter(), last_at,
                  int(usage.get("completion_tokens", 0)),
                  int(usage.get("prompt_tokens", gemba.get("prompt_tokens", 0))),
                  finish_reason, gemba.get("engine_ttft_s"), gemba.get("conversation_id"))


def user(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def all_at_once(url: str, requests: list[list[dict[str, str]]],
                max_tokens: int) -> list[Answer]:
    """Each message list streamed by its own thread and client, all released by one barrier."""
    barrier = threading.Barrier(len(requests))
    answers: list[Answer | None] = [None] * len(requests)
    errors: list[BaseException] = []

    def client_thread(index: int) -> None:
        try:
            with httpx.Client(base_url=url, trust_env=False) as client:
                barrier.wait(timeout=60)
                answers[index] = stream_chat(client, requests[index], max_tokens)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=client_thread, args=(i,), daemon=True)
               for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]!r}") from errors[0]
    return [a for a in answers if a is not None]


def warm_up(url: str, at_once: int) -> None:
    """Untimed answers to unrelated prompts: the first batches after loading are slower."""
    all_at_once(url, [user(WARMUP_PROMPT.format(n=n + 1)) for n in range(at_once)],
                WARMUP_TOKENS)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)  # ints and plain strings read the same in TOML


def daemon_config(model_id: str, n_parallel: int | None, n_threads: int | None,
                  max_queue: int = 8) -> dict[str, dict[str, Any]]:
    """The config sections a benchmark daemon gets (its port is added at each start).
    n_parallel is left out when None or when this version has no such key (one at a time)."""
    model: dict[str, Any] = {"id": model_id}
    if n_parallel is not None and parallel_supported():
        model["n_parallel"] = n_parallel
    if n_threads is not None:
        model["n_threads"] = n_threads
    return {"daemon": {"max_queue": max_queue}, "model": model,
            "knowledge": {"mode": "off"}}


def parallel_supported() -> bool:
    return "n_parallel" in ModelSettings.model_fields


def write_config(home: Path, port: int, sections: dict[str, dict[str, Any]]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    sections = {**sections, "daemon": {**sections.get("daemon", {}), "port": port}}
    lines = []
    for name, values in sections.items():
        lines += [f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in values.items()), ""]
    (home / "config.toml").write_text("\n".join(lines), encoding="utf-8")


@dataclass
class Daemon:
    """A running benchmark daemon."""

    url: str
    client: httpx.Client
    health: dict[str, Any] = field(default_factory=dict)


@contextmanager
def gemba_daemon(home: Path, sections: dict[str, dict[str, Any]]) -> Iterator[Daemon]:
    """`gemba serve` on `home` (created if new, kept if not: a restart) on a free port, ready;
    always stopped when the block ends. Its log is home/../daemon.log (the latest start)."""
    port = free_port()
    write_config(home, port, sections)
    log_file = home.parent / "daemon.log"
    proc = start_daemon(home, port, log_file)
    health: dict[str, Any] = {}
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, trust_env=False) as client:
            health = wait_healthy(client, proc, log_file)
            yield Daemon(url, client, health)
    finally:
        stop_daemon(proc, health.get("worker_pid"))


def stop_on_sigterm() -> None:
    """SIGTERM ends the run like Ctrl-C: the `finally` blocks stop the daemon."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def health_summary(health: dict[str, Any]) -> dict[str, Any]:
    keys = ("version", "model_id", "model_sha256", "n_ctx", "n_threads", "n_parallel", "load_s")
    return {k: health.get(k) for k in keys if k in health}


# -- the two phases -------------------------------------------------------------------------------
def client_questions(clients: int) -> list[dict[str, str]]:
    return [QUESTIONS[i % len(QUESTIONS)] for i in range(clients)]


def alone_phase(home: Path, sections: dict[str, dict[str, Any]], max_tokens: int,
                questions: list[dict[str, str]]) -> tuple[dict[str, Answer], dict[str, Any]]:
    with gemba_daemon(home, sections) as daemon:
        warm_up(daemon.url, 1)
        answers = {}
        for question in questions:
            answers[question["id"]] = answer = stream_chat(daemon.client,
                                                           user(question["question"]),
                                                           max_tokens)
            progress(f"  alone {question['id']}: TTFT {ms(answer.ttft_s)} ms, "
                     f"{answer.completion_tokens} tokens in {answer.seconds:.2f} s")
        return answers, daemon.health


def together_phase(home: Path, sections: dict[str, dict[str, Any]], max_tokens: int,
                   questions: list[dict[str, str]]) -> list[Answer]:
    with gemba_daemon(home, sections) as daemon:
        warm_up(daemon.url, len(questions))
        answers = all_at_once(daemon.url, [user(q["question"]) for q in questions], max_tokens)
    origin = min(a.started for a in answers)
    progress(f"  together: TTFT ms {[ms(a.ttft_s) for a in answers]}, "
             f"{sum(a.completion_tokens for a in answers)} tokens in "
             f"{max(a.finished for a in answers) - origin:.2f} s")
    return answers


def one_repeat(number: int, args: argparse.Namespace,
               sections: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    questions = client_questions(args.clients)
    distinct = list({q["id"]: q for q in questions}.values())
    with tempfile.TemporaryDirectory(prefix="gemba-bench-concurrency-") as tmp:
        progress(f"repeat {number}: alone ({len(distinct)} questions, one after the other)")
        alone, health = alone_phase(Path(tmp) / "alone" / "home", sections, args.max_tokens,
                                    distinct)
        progress(f"repeat {number}: together ({args.clients} clients at once)")
        together = together_phase(Path(tmp) / "together" / "home", sections, args.max_tokens,
                                  questions)
    return judge_repeat(number, questions, alone, together), health


def judge_repeat(number: int, questions: list[dict[str, str]], alone: dict[str, Answer],
                 together: list[Answer]) -> dict[str, Any]:
    origin = min(a.started for a in together)
    wall = max(a.finished for a in together) - origin
    aggregate = sum(a.completion_tokens for a in together) / wall if wall > 0 else 0.0
    alone_rate = statistics.mean(alone[q["id"]].tok_per_s for q in questions)
    ttfts = [a.ttft_s for a in together]
    reads = [alone[q["id"]].engine_ttft_s for q in questions]
    clients = [{"client": i + 1, "question": q["id"], "identical": a.text == alone[q["id"]].text,
                **a.to_dict(origin)} for i, (q, a) in enumerate(zip(questions, together,
                                                                    strict=True))]
    return {
        "repeat": number,
        "alone": {qid: a.to_dict() for qid, a in alone.items()},
        "together": clients,
        "identical": [c["identical"] for c in clients],
        "all_identical": all(c["identical"] for c in clients),
        "ttft_ms": [ms(t) for t in ttfts],
        "max_ttft_ms": None if None in ttfts else ms(max(t for t in ttfts if t is not None)),
        "read_floor_ms": None if None in reads else ms(sum(t for t in reads if t is not None)),
        "together_wall_s": round(wall, 3),
        "aggregate_tok_per_s": round(aggregate, 3),
        "alone_tok_per_s_mean": round(alone_rate, 3),
        "aggregate_ratio": round(aggregate / alone_rate, 4) if alone_rate else None,
    }


# -- report ---------------------------------------------------------------------------------------
def summarize(repeats: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    def med(key: str) -> float | None:
        values = [r[key] for r in repeats if r[key] is not None]
        return round(median(values), 4) if values else None

    per_client = [[r["ttft_ms"][i] for r in repeats if r["ttft_ms"][i] is not None]
                  for i in range(clients)]
    alone_ttft = [a["ttft_ms"] for r in repeats for a in r["alone"].values()
                  if a["ttft_ms"] is not None]
    return {"max_ttft_ms": med("max_ttft_ms"),
            "read_floor_ms": med("read_floor_ms"),
            "ttft_ms_per_client": [round(median(v), 1) if v else None for v in per_client],
            "worst_ttft_ms": max((r["max_ttft_ms"] for r in repeats
                                  if r["max_ttft_ms"] is not None), default=None),
            "aggregate_tok_per_s": med("aggregate_tok_per_s"),
            "alone_tok_per_s_mean": med("alone_tok_per_s_mean"),
            "aggregate_ratio": med("aggregate_ratio"),
            "alone_ttft_ms": round(median(alone_ttft), 1) if alone_ttft else None,
            "identical_clients": sum(sum(r["identical"]) for r in repeats),
            "clients_compared": sum(len(r["identical"]) for r in repeats)}


def alone_stable(repeats: list[dict[str, Any]]) -> bool:
    """The same question got the same alone answer in every repeat (temperature 0 holds)."""
    first = repeats[0]["alone"]
    return all(r["alone"][q]["text"] == first[q]["text"] for r in repeats for q in first)


def goals(summary: dict[str, Any]) -> dict[str, Any]:
    ttft, ratio = summary["max_ttft_ms"], summary["aggregate_ratio"]
    return {
        "identical": {"target": "every client's answer == the same request alone",
                      "value": f"{summary['identical_clients']}/{summary['clients_compared']}",
                      "met": summary["identical_clients"] == summary["clients_compared"]},
        "max_ttft_ms": {"target": f"<= {GOAL_TTFT_S * 1000:.0f} (median over repeats of the "
                                  "slowest client)",
                        "value": ttft, "met": ttft is not None and ttft <= GOAL_TTFT_S * 1000},
        "aggregate_ratio": {"target": f">= {GOAL_RATIO}", "value": ratio,
                            "met": ratio is not None and ratio >= GOAL_RATIO},
    }


def build_report(args: argparse.Namespace, sections: dict[str, dict[str, Any]],
                 repeats: list[dict[str, Any]], health: dict[str, Any],
                 load: dict[str, list[float]]) -> dict[str, Any]:
    summary = summarize(repeats, args.clients)
    return {
        "benchmark": "concurrency",
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average": load,
        "daemon_health": health_summary(health),
        "settings": {"clients": args.clients, "n_parallel": args.parallel,
                     "n_parallel_in_config": "n_parallel" in sections["model"],
                     "max_tokens": args.max_tokens, "repeats": args.repeats,
                     "temperature": 0.0, "knowledge": "off", "config": sections,
                     "questions": client_questions(args.clients),
                     "warm_up": {"prompt": WARMUP_PROMPT, "max_tokens": WARMUP_TOKENS}},
        "median": summary,
        "goals": goals(summary),
        "checks": {"alone_answers_same_in_every_repeat": alone_stable(repeats),
                   "every_answer_ran_to_max_tokens": all(
                       c["completion_tokens"] == args.max_tokens
                       for r in repeats for c in r["together"])},
        "repeats": repeats,
        "notes": args.notes,
    }


def print_table(report: dict[str, Any]) -> None:
    settings, summary = report["settings"], report["median"]
    print(f"{settings['clients']} clients | n_parallel {settings['n_parallel']}"
          f"{'' if settings['n_parallel_in_config'] else ' (not in config)'} | "
          f"max_tokens {settings['max_tokens']} | {settings['repeats']} repeats | "
          f"{report['machine']['cpu_model']}")
    print(f"{'repeat':>6} {'identical':>9} {'max TTFT ms':>11} {'agg tok/s':>9} "
          f"{'alone tok/s':>11} {'ratio':>6}  TTFT ms per client")
    for r in report["repeats"]:
        print(f"{r['repeat']:>6} {sum(r['identical']):>5}/{len(r['identical']):<3} "
              f"{fmt(r['max_ttft_ms'], 1):>11} {fmt(r['aggregate_tok_per_s'], 1):>9} "
              f"{fmt(r['alone_tok_per_s_mean'], 1):>11} {fmt(r['aggregate_ratio'], 3):>6}  "
              f"{' '.join(str(t) for t in r['ttft_ms'])}")
    print(f"{'median':>6} {summary['identical_clients']:>5}/{summary['clients_compared']:<3} "
          f"{fmt(summary['max_ttft_ms'], 1):>11} {fmt(summary['aggregate_tok_per_s'], 1):>9} "
          f"{fmt(summary['alone_tok_per_s_mean'], 1):>11} "
          f"{fmt(summary['aggregate_ratio'], 3):>6}  "
          f"{' '.join(str(t) for t in summary['ttft_ms_per_client'])}")
    print(f"alone TTFT (median): {summary['alone_ttft_ms']} ms; reading the {settings['clients']} "
          f"prompts one after another: {summary['read_floor_ms']} ms (median read floor)")
    for name, goal in report["goals"].items():
        print(f"{name}: {goal['value']} (goal {goal['target']}: "
              f"{'met' if goal['met'] else 'NOT met'})")
    for name, ok in report["checks"].items():
        if not ok:
            print(f"note: check failed: {name}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=4,
                        help="[model] n_parallel of the daemon (default 4; 1: one at a time)")
    parser.add_argument("--clients", type=int, default=4, help="simultaneous clients (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats (default 3)")
    parser.add_argument("--max-tokens", type=int, default=128,
                        help="answer limit per request (default 128)")
    parser.add_argument("--threads", type=int, default=None,
                        help="[model] n_threads (default: the daemon's, one per physical core)")
    parser.add_argument("--model", default=DEFAULT_MODEL_ID, help="catalog model id")
    parser.add_argument("--notes", default="", help="recorded in the report (e.g. machine load)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"JSON report (default {DEFAULT_OUTPUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if min(args.parallel, args.clients, args.repeats, args.max_tokens) < 1:
        parser.error("--parallel, --clients, --repeats and --max-tokens must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    sections = daemon_config(args.model, args.parallel, args.threads,
                             max_queue=max(8, args.clients))
    if not parallel_supported():
        progress("this version has no [model] n_parallel: it answers one request at a time")
    load = {"start": load_average()}
    repeats: list[dict[str, Any]] = []
    health: dict[str, Any] = {}
    try:
        for number in range(1, args.repeats + 1):
            result, health = one_repeat(number, args, sections)
            repeats.append(result)
    except KeyboardInterrupt:
        progress("interrupted: the daemon is stopped, no report written")
        return 130
    load["end"] = load_average()
    report = build_report(args, sections, repeats, health, load)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                           encoding="utf-8")
    print_table(report)
    print(f"report: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
