"""Repetition loops: the share of answers that run to the token limit inside a loop, per penalty.

The tiny embedded model loops: asked about an alarm it once wrote "[B-100] [B-100] [B-100] ..."
until the token limit. This runs a fixed question set in English, Chinese and Japanese (the first
questions of bench/knowledge_corpus/questions.json, asked without documents, plus plain operator
questions), at temperature 0 with the default system prompt, through the engine itself
(`LlamaEngine`, in this process), once per penalty setting, and counts the answers that end at
the token limit inside a loop.

A loop (`loop_period`): the answer's tail is one n-gram repeated at least 3 times. Units are words
for English and characters for Chinese and Japanese (whitespace dropped); digit runs count as one
symbol, so "step 4: check the valve. step 5: check the valve." is a loop too; the last unit is
dropped when the answer was cut at the limit (it may be cut in half); the repeated tail must be
at least MIN_UNITS long.

Penalties have a cost: a list legitimately repeats its separators. So each setting also answers
"List the numbers from 1 to 1000 separated by commas." (LIST_PROMPT, up to LIST_TOKENS tokens):
a setting that ends that list early cuts real lists and tables short.

    .venv/bin/python bench/repetition.py                    # about 30-40 minutes on 2 cores
    .venv/bin/python bench/repetition.py --per-language 5 --settings off,repeat_1.1
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass, replace
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
from appliance.models import CatalogEntry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.local_engine import local_engine, write_report  # noqa: E402 - bench/ is not on sys.path

DEFAULT_OUTPUT = ROOT / "bench" / "results" / "repetition.json"
CORPUS = ROOT / "bench" / "knowledge_corpus" / "questions.json"
LANGUAGES = ("en", "zh", "ja")
MIN_REPEATS = 3
MIN_UNITS = {"en": 12, "zh": 24, "ja": 24}
MAX_PERIOD = {"en": 40, "zh": 80, "ja": 80}
LIST_PROMPT = "List the numbers from 1 to 1000 separated by commas."
LIST_TOKENS = 256

PLAIN_QUESTIONS = {
    "en": ["What does alarm B-100 on the filler mean?",
           "The conveyor stops every few minutes. What should I check?",
           "How do I reset the emergency stop on line 3?",
           "Why is the hydraulic pump noisy after a filter change?",
           "What is lockout-tagout and when do I need it?",
           "The compressor shows high discharge temperature. What can cause this?",
           "How often should the gearbox oil be changed?",
           "What does OEE mean?",
           "The label printer prints blank labels. What should I do?",
           "How do I check the tension of a drive belt?"],
    "zh": ["灌装机报警B-100是什么意思？",
           "输送带每隔几分钟就停一次，应该检查什么？",
           "三号线的急停按钮怎么复位？",
           "更换滤芯后液压泵噪音很大，为什么？",
           "什么是上锁挂牌，什么时候需要？",
           "空压机排气温度过高，可能是什么原因？",
           "齿轮箱的油多久换一次？",
           "OEE是什么意思？",
           "标签打印机打出空白标签，怎么办？",
           "怎么检查传动皮带的张紧度？"],
    "ja": ["充填機のアラームB-100はどういう意味ですか？",
           "コンベアが数分ごとに止まります。何を点検すればいいですか？",
           "3号ラインの非常停止はどうやって解除しますか？",
           "フィルター交換後に油圧ポンプの音が大きいのはなぜですか？",
           "ロックアウト・タグアウトとは何ですか？いつ必要ですか？",
           "コンプレッサーの吐出温度が高いです。原因は何ですか？",
           "ギアボックスのオイルはどのくらいの頻度で交換しますか？",
           "OEEとは何ですか？",
           "ラベルプリンターが白紙のラベルを印刷します。どうすればいいですか？",
           "ドライブベルトの張りはどうやって点検しますか？"],
}

# Candidate settings: (repeat, frequency, presence); penalties look at the last 64 answer tokens.
SETTINGS = {
    "off": (1.0, 0.0, 0.0),
    "repeat_1.1": (1.1, 0.0, 0.0),
    "frequency_0.3": (1.0, 0.3, 0.0),
    "presence_0.3": (1.0, 0.0, 0.3),
    "repeat_1.15": (1.15, 0.0, 0.0),
    "frequency_0.5": (1.0, 0.5, 0.0),
    "repeat_1.1_frequency_0.3": (1.1, 0.3, 0.0),
}


@dataclass(frozen=True)
class Answer:
    id: str
    lang: str
    text: str
    finish_reason: str
    completion_tokens: int
    tok_per_s: float | None
    loop_period: int | None
    """Units in the repeated n-gram the answer ends in, if it ends in a loop."""

    @property
    def loops_at_limit(self) -> bool:
        return self.finish_reason == "length" and self.loop_period is not None


def units(text: str, lang: str) -> list[str]:
    """Words (English) or characters (Chinese, Japanese); a run of digits is one symbol."""
    text = re.sub(r"\d+", "#", text)
    return text.split() if lang == "en" else [c for c in text if not c.isspace()]


def loop_period(text: str, lang: str, cut: bool) -> int | None:
    """The smallest n such that the tail is one n-unit gram repeated >= MIN_REPEATS times and
    covers >= MIN_UNITS units; None when the answer does not end in a loop."""
    seq = units(text, lang)
    if cut and seq:
        seq = seq[:-1]
    for period in range(1, MAX_PERIOD[lang] + 1):
        same = 0
        for j in range(len(seq) - 1, period - 1, -1):
            if seq[j] != seq[j - period]:
                break
            same += 1
        tail = same + period
        if same and tail >= MIN_REPEATS * period and tail >= MIN_UNITS[lang]:
            return period
    return None


def question_set(per_language: int) -> list[dict[str, str]]:
    corpus = json.loads(CORPUS.read_text(encoding="utf-8"))
    chosen: list[dict[str, str]] = []
    for lang in LANGUAGES:
        plain = [{"id": f"{lang}-plain-{n + 1:02}", "lang": lang, "question": q}
                 for n, q in enumerate(PLAIN_QUESTIONS[lang])]
        from_corpus = [{"id": q["id"], "lang": lang, "question": q["question"]}
                       for q in corpus if q["lang"] == lang]
        take_plain = min(len(plain), per_language // 3)
        chosen += plain[:take_plain] + from_corpus[:per_language - take_plain]
    return chosen


def ask(engine: Any, question: dict[str, str], request: GenerationRequest) -> Answer:
    request = replace(request, messages=(
        {"role": "system", "content": GenerationSettings().system_prompt},
        {"role": "user", "content": question["question"]}))
    text, finished = collect(generate(engine, request, lambda: False))
    assert isinstance(finished, Finished), finished
    cut = finished.finish_reason == "length"
    return Answer(question["id"], question["lang"], text, finished.finish_reason,
                  finished.completion_tokens, finished.tok_per_s,
                  loop_period(text, question["lang"], cut))


def summarize(answers: list[Answer]) -> dict[str, Any]:
    def share(selected: list[Answer], test: Any) -> float:
        return round(sum(1 for a in selected if test(a)) / len(selected), 4) if selected else 0.0

    out: dict[str, Any] = {}
    for lang in (*LANGUAGES, "all"):
        chosen = [a for a in answers if lang in ("all", a.lang)]
        rates = [a.tok_per_s for a in chosen if a.tok_per_s]
        out[lang] = {
            "answers": len(chosen),
            "loop_at_limit_share": share(chosen, lambda a: a.loops_at_limit),
            "at_limit_share": share(chosen, lambda a: a.finish_reason == "length"),
            "mean_completion_tokens": round(statistics.mean(a.completion_tokens
                                                            for a in chosen), 1),
            "median_tok_per_s": round(statistics.median(rates), 1) if rates else None,
        }
    return out


def run(args: argparse.Namespace) -> None:
    """Every setting in turn; the report is rewritten after each, so a long sweep that is
    stopped keeps what it measured."""
    with local_engine(args.model, n_threads=args.threads, n_parallel=1) as (entry, engine):
        sweep(args, entry, engine)


def sweep(args: argparse.Namespace, entry: CatalogEntry, engine: Any) -> None:
    questions = question_set(args.per_language)
    results: dict[str, Any] = {}
    report = {"benchmark": "repetition",
              "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
              "model": {"id": entry.id, "sha256": entry.sha256},
              "settings": {"max_tokens": args.max_tokens, "temperature": 0.0,
                           "threads": args.threads, "questions_per_language": args.per_language,
                           "system_prompt": GenerationSettings().system_prompt,
                           "detector": {"min_repeats": MIN_REPEATS, "min_units": MIN_UNITS,
                                        "max_period": MAX_PERIOD,
                                        "units": "en: words; zh, ja: characters; digit runs as "
                                                 "one symbol; last unit dropped when cut"}},
              "notes": args.notes, "questions": questions, "results": results}
    for name in args.settings:
        repeat, frequency, presence = SETTINGS[name]
        request = GenerationRequest((), args.max_tokens, 0.0, repeat_penalty=repeat,
                                    frequency_penalty=frequency, presence_penalty=presence,
                                    penalty_last_n=args.last_n)
        started = time.perf_counter()
        answers = [ask(engine, q, request) for q in questions]
        listed = ask(engine, {"id": "list", "lang": "en", "question": LIST_PROMPT},
                     replace(request, max_tokens=LIST_TOKENS))
        results[name] = {"repeat_penalty": repeat, "frequency_penalty": frequency,
                         "presence_penalty": presence, "penalty_last_n": args.last_n,
                         "seconds": round(time.perf_counter() - started, 1),
                         "summary": summarize(answers),
                         "list_check": {"finish_reason": listed.finish_reason,
                                        "completion_tokens": listed.completion_tokens,
                                        "tail": listed.text[-60:]},
                         "loops": [{"id": a.id, "period": a.loop_period, "tail": a.text[-80:]}
                                   for a in answers if a.loops_at_limit],
                         "answers": {a.id: a.text for a in answers}}
        overall = results[name]["summary"]["all"]
        print(f"{name:26} loops at limit {overall['loop_at_limit_share']:.3f}  "
              f"at limit {overall['at_limit_share']:.3f}  "
              f"list {listed.completion_tokens} tokens ({listed.finish_reason})  "
              f"{overall['median_tok_per_s']} tok/s", file=sys.stderr)
        write_report(args.output, report)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-language", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--last-n", type=int, default=64, help="penalty window (tokens)")
    parser.add_argument("--model", default=DEFAULT_MODEL_ID)
    parser.add_argument("--settings", type=lambda s: s.split(","), default=list(SETTINGS),
                        help=f"comma-separated, from: {', '.join(SETTINGS)}")
    parser.add_argument("--notes", default="", help="recorded in the report")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    unknown = [s for s in args.settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings: {', '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run(args)
    print(f"report: {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
