"""Follow-up turns: time to first token of a conversation's turn 5 against its turn 1.

The goal: "A follow-up in the same conversation reuses the KV cache of its earlier turns when its
slot still holds them; measure time to first token of turn 5 against turn 1." Measured through
the daemon's API alone, so the script runs against any version (before the engine reused the
cache, turn 5 simply reads its whole, longer prompt).

What it measures, per repeat
  * warm: `gemba serve` in a fresh temporary GEMBA_HOME ([knowledge] mode off), one untimed
          warm-up answer to an unrelated prompt, then a conversation of the 5 fixed TURNS, sent
          as an OpenAI client sends one: every turn streams the whole history (the earlier
          questions and the answers exactly as received, plus the new question) with the
          conversation_id of turn 1's answer (temperature 0, knowledge off, --max-tokens).
          Per turn: prompt tokens (usage), TTFT (request sent -> first non-empty content
          chunk), the engine's own `engine_ttft_s`, the answer.
  * cold: for each turn in --cold-turns (default all), the daemon restarted on the same home
          (so no slot holds anything of the conversation, and its id still exists), one
          warm-up, then that turn's exact messages sent as the first request. Its TTFT is what
          the turn costs without the cache; its answer is compared with the warm one (at
          temperature 0 they should be the same).
  Medians over --repeats. Headline: TTFT of turn 1, of turn 5 warm and cold, turn 5's prompt
  tokens, and the ratios warm5/turn1 and warm5/cold5. Nothing asserts; the figures are reported.

The daemon is stopped (SIGTERM, then its process group killed) after every phase, also on
Ctrl-C, SIGTERM or an error.

    .venv/bin/python bench/conversation.py                 # 3 repeats, 64 tokens per answer
    .venv/bin/python bench/conversation.py --repeats 5 --cold-turns 1,5 \
        --output bench/results/conversation.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.config import DEFAULT_MODEL_ID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.concurrency import (  # noqa: E402 - the bench folder is not a package on sys.path
    Answer,
    daemon_config,
    fmt,
    gemba_daemon,
    health_summary,
    median,
    ms,
    progress,
    stop_on_sigterm,
    stream_chat,
    warm_up,
)
from bench.decode import load_average, machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "conversation.json"

TURNS = [
    "The filler on line 2 stopped with alarm B-100, low bottle pressure. What should I check "
    "first?",
    "The compressed air gauge at the filler reads 5.2 bar. Is that enough, or is it the cause?",
    "The pressure regulator looks stuck. How do I replace it safely?",
    "Which lockout steps do I need before I open the valve block?",
    "The regulator is replaced. How do I test the filler before we restart production?",
]


# -- the two phases -------------------------------------------------------------------------------
def warm_conversation(home: Path, sections: dict[str, dict[str, Any]],
                      max_tokens: int) -> tuple[list[list[dict[str, str]]], list[Answer],
                                                int | None, dict[str, Any]]:
    """The conversation turn by turn on one daemon: each turn's messages and answer."""
    sent: list[list[dict[str, str]]] = []
    answers: list[Answer] = []
    history: list[dict[str, str]] = []
    conversation_id: int | None = None
    with gemba_daemon(home, sections) as daemon:
        warm_up(daemon.url, 1)
        for number, question in enumerate(TURNS, start=1):
            history.append({"role": "user", "content": question})
            sent.append(list(history))
            answer = stream_chat(daemon.client, history, max_tokens, conversation_id)
            conversation_id = conversation_id or answer.conversation_id
            history.append({"role": "assistant", "content": answer.text})
            answers.append(answer)
            progress(f"  warm turn {number}: {answer.prompt_tokens} prompt tokens, "
                     f"TTFT {ms(answer.ttft_s)} ms")
        return sent, answers, conversation_id, daemon.health


def cold_turn(home: Path, sections: dict[str, dict[str, Any]], max_tokens: int,
              messages: list[dict[str, str]], conversation_id: int | None) -> Answer:
    """The turn's messages as the first request of a restarted daemon (after its warm-up)."""
    with gemba_daemon(home, sections) as daemon:
        warm_up(daemon.url, 1)
        return stream_chat(daemon.client, messages, max_tokens, conversation_id)


def one_repeat(number: int, args: argparse.Namespace,
               sections: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="gemba-bench-conversation-") as tmp:
        home = Path(tmp) / "home"
        progress(f"repeat {number}: warm conversation ({len(TURNS)} turns)")
        sent, warm, conversation_id, health = warm_conversation(home, sections, args.max_tokens)
        cold: dict[int, Answer] = {}
        for turn in args.cold_turns:
            cold[turn] = answer = cold_turn(home, sections, args.max_tokens, sent[turn - 1],
                                            conversation_id if turn > 1 else None)
            progress(f"  cold turn {turn} (restarted daemon): {answer.prompt_tokens} prompt "
                     f"tokens, TTFT {ms(answer.ttft_s)} ms")
    turns = []
    for turn, answer in enumerate(warm, start=1):
        row: dict[str, Any] = {"turn": turn, "question": TURNS[turn - 1], "warm": answer.to_dict()}
        if turn in cold:
            row["cold"] = cold[turn].to_dict()
            row["cold_same_answer"] = cold[turn].text == answer.text
            row["cold_same_prompt_tokens"] = cold[turn].prompt_tokens == answer.prompt_tokens
        turns.append(row)
    return {"repeat": number, "conversation_id": conversation_id, "turns": turns}, health


# -- report ---------------------------------------------------------------------------------------
def turn_medians(repeats: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def med(turn: int, side: str, key: str) -> float | None:
        values = [r["turns"][turn - 1][side][key] for r in repeats
                  if side in r["turns"][turn - 1] and r["turns"][turn - 1][side][key] is not None]
        return round(median(values), 1) if values else None

    return [{"turn": t, "prompt_tokens": med(t, "warm", "prompt_tokens"),
             "warm_ttft_ms": med(t, "warm", "ttft_ms"), "cold_ttft_ms": med(t, "cold", "ttft_ms"),
             "warm_engine_ttft_ms": med(t, "warm", "engine_ttft_ms"),
             "cold_engine_ttft_ms": med(t, "cold", "engine_ttft_ms")}
            for t in range(1, len(TURNS) + 1)]


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def headline(per_turn: list[dict[str, Any]]) -> dict[str, Any]:
    first, last = per_turn[0], per_turn[-1]
    return {"ttft_turn1_ms": first["warm_ttft_ms"],
            "ttft_turn5_warm_ms": last["warm_ttft_ms"],
            "ttft_turn5_cold_ms": last["cold_ttft_ms"],
            "prompt_tokens_turn5": last["prompt_tokens"],
            "ratio_warm5_to_turn1": ratio(last["warm_ttft_ms"], first["warm_ttft_ms"]),
            "ratio_warm5_to_cold5": ratio(last["warm_ttft_ms"], last["cold_ttft_ms"])}


def checks(repeats: list[dict[str, Any]]) -> dict[str, bool]:
    rows = [row for r in repeats for row in r["turns"] if "cold" in row]
    first = [row["warm"]["text"] for row in repeats[0]["turns"]]
    return {"cold_answers_same_as_warm": all(row["cold_same_answer"] for row in rows),
            "cold_prompt_tokens_same_as_warm": all(row["cold_same_prompt_tokens"]
                                                   for row in rows),
            "same_conversation_in_every_repeat": all(
                [row["warm"]["text"] for row in r["turns"]] == first for r in repeats)}


def build_report(args: argparse.Namespace, sections: dict[str, dict[str, Any]],
                 repeats: list[dict[str, Any]], health: dict[str, Any],
                 load: dict[str, list[float]]) -> dict[str, Any]:
    per_turn = turn_medians(repeats)
    return {
        "benchmark": "conversation",
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average": load,
        "daemon_health": health_summary(health),
        "settings": {"max_tokens": args.max_tokens, "repeats": args.repeats,
                     "cold_turns": args.cold_turns, "n_parallel": args.parallel,
                     "temperature": 0.0, "knowledge": "off", "config": sections,
                     "turns": TURNS},
        "median": headline(per_turn),
        "per_turn_median": per_turn,
        "checks": checks(repeats),
        "repeats": repeats,
        "notes": args.notes,
    }


def print_table(report: dict[str, Any]) -> None:
    settings, head = report["settings"], report["median"]
    print(f"{len(TURNS)} turns | max_tokens {settings['max_tokens']} | median of "
          f"{settings['repeats']} repeats | n_parallel {settings['n_parallel'] or 'default'} | "
          f"{report['machine']['cpu_model']}")
    print(f"{'turn':>4} {'prompt tok':>10} {'warm TTFT ms':>12} {'cold TTFT ms':>12} "
          f"{'engine warm/cold ms':>20}")
    for row in report["per_turn_median"]:
        engine = f"{fmt(row['warm_engine_ttft_ms'], 1)}/{fmt(row['cold_engine_ttft_ms'], 1)}"
        print(f"{row['turn']:>4} {fmt(row['prompt_tokens'], 0):>10} "
              f"{fmt(row['warm_ttft_ms'], 1):>12} {fmt(row['cold_ttft_ms'], 1):>12} "
              f"{engine:>20}")
    print(f"turn 5 warm / turn 1: {head['ratio_warm5_to_turn1']}; "
          f"turn 5 warm / turn 5 cold: {head['ratio_warm5_to_cold5']}")
    for name, ok in report["checks"].items():
        if not ok:
            print(f"note: check failed: {name}")


def cold_turns(text: str) -> list[int]:
    if text == "all":
        return list(range(1, len(TURNS) + 1))
    turns = sorted({int(part) for part in text.split(",") if part.strip()})
    if not turns or not all(1 <= t <= len(TURNS) for t in turns):
        raise argparse.ArgumentTypeError(f"turns between 1 and {len(TURNS)}, or 'all'")
    return turns


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats (default 3)")
    parser.add_argument("--max-tokens", type=int, default=64,
                        help="answer limit per turn (default 64)")
    parser.add_argument("--cold-turns", type=cold_turns, default=cold_turns("all"),
                        help="turns also measured on a restarted daemon: 'all' (default) or a "
                             "list such as 1,5 (each costs a daemon start)")
    parser.add_argument("--parallel", type=int, default=None,
                        help="[model] n_parallel (default: the daemon's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="[model] n_threads (default: the daemon's, one per physical core)")
    parser.add_argument("--model", default=DEFAULT_MODEL_ID, help="catalog model id")
    parser.add_argument("--notes", default="", help="recorded in the report (e.g. machine load)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"JSON report (default {DEFAULT_OUTPUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if min(args.repeats, args.max_tokens, args.parallel or 1) < 1 or args.parallel == 0:
        parser.error("--repeats, --max-tokens and --parallel must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    sections = daemon_config(args.model, args.parallel, args.threads)
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
