"""Decode speed and time to first token: the appliance daemon against raw llama.cpp and llama-bench.

What it measures
  * llama-bench: llama.cpp's own benchmark, built from the llama.cpp inside the llama-cpp-python
            sdist (bench/llama_bench.py; cached under bench/.cache/), `tg<tokens>` at depth
            <prompt tokens>: the decode rate with the prompt's worth of tokens in the KV cache,
            no Python at all. --order alternate (default): one run per round, in turn with
            the other two, and the ratio is the median of the rounds' daemon/llama-bench;
            --order sequence: before and after the other two, the faster is the reference.
  * raw:    `llama_cpp.Llama` in this process, built as the engine builds it (the [model]
            defaults: n_ctx, n_batch, n_ubatch, KV type, flash attention, mmap/mlock, GPU
            layers; --threads), the chat prompt rendered with the model's own template, then
            `Llama.generate(..., temp=0)` detokenizing every token, as the engine did before it
            had its own decode loop, with the penalties the daemon applies by default.
  * daemon: `gemba serve` started as a subprocess (its own GEMBA_HOME in a temporary folder),
            timed from this process as an API client: streaming `POST /v1/chat/completions`.
  Both sides get the same system and user messages, threads and token count. The prompt
  ("List the numbers from 1 to 1000 ...") runs to the token limit at temperature 0, so both
  sides produce exactly --tokens tokens (checked and reported).

  TTFT:   raw: start of the call (prompt rendering, tokenizing, evaluation) -> first token text;
          daemon: request sent -> first non-empty content chunk received.
  decode: (tokens - 1) / (last token time - first token time), per run; medians over the runs.
  Each side gets one warm-up run first (not counted). Both sides read the same tokens in the
  timed part: the engine keeps the system prompt's cache and reads the rest of the prompt each
  time (a new conversation), so the raw side resets the model and reads the system part before
  the clock starts, then `Llama.generate` reads the rest (llama-cpp-python reuses the prefix).

Only one side decodes at a time. --order alternate (default): the daemon and the raw model are
both loaded and the runs taken in turn (llama-bench, raw, daemon, llama-bench, ...), so
background load that comes and goes falls on all sides alike. --order sequence: all raw runs, the raw model freed, then the
daemon. The daemon is stopped with SIGTERM at the end, whatever happens. Nothing here asserts on
time: the goals (daemon/llama-bench decode ratio >= 0.95, daemon/raw >= 0.97, TTFT overhead
<= 20 ms over raw) are only reported.

Run it on a quiet machine:
    make bench                                   # or: .venv/bin/python bench/decode.py
    .venv/bin/python bench/decode.py --runs 5 --tokens 256 --threads 2 \
        --output bench/results/decode.json
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from appliance.config import DEFAULT_MODEL_ID, GenerationSettings, ModelSettings
from appliance.models import CatalogEntry, resolve_verified

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import llama_bench  # noqa: E402 - bench/ is not on sys.path

DEFAULT_OUTPUT = ROOT / "bench" / "results" / "decode.json"

USER_PROMPT = "List the numbers from 1 to 1000 separated by commas."
SYSTEM_PROMPT = GenerationSettings().system_prompt  # sent explicitly to both sides
# The daemon applies its configured penalties; the raw side is given the same ones.
PENALTIES = {"repeat_penalty": GenerationSettings().repeat_penalty,
             "frequency_penalty": GenerationSettings().frequency_penalty,
             "presence_penalty": GenerationSettings().presence_penalty}
TOP_P = 0.95  # the API's default, passed to the raw side too

GOAL_RATIO_DECODE = 0.97
GOAL_RATIO_LLAMA_BENCH = 0.95
GOAL_TTFT_OVERHEAD_MS = 20.0

HEALTH_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Run:
    """One timed generation."""

    tokens: int
    ttft_s: float
    decode_s: float
    """Time from the first token to the last."""
    prompt_tokens: int
    engine_tok_per_s: float | None = None
    engine_ttft_s: float | None = None
    finish_reason: str | None = None
    cached_tokens: int | None = None
    """Prompt tokens held in the cache before the clock started (the system part)."""

    @property
    def decode_tok_per_s(self) -> float:
        return (self.tokens - 1) / self.decode_s if self.tokens > 1 and self.decode_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decode_tok_per_s": round(self.decode_tok_per_s, 3),
                "ttft_ms": round(self.ttft_s * 1000, 3)}


def messages() -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_PROMPT}]


# -- raw llama.cpp ---------------------------------------------------------------------------------
class RawModel:
    """`llama_cpp.Llama` set up as the engine sets it up, with the model's chat template."""

    def __init__(self, model_path: Path, n_threads: int, settings: ModelSettings) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llama_cpp = llama_cpp
        kv_type = getattr(llama_cpp, f"GGML_TYPE_{settings.kv_cache_type.upper()}")
        self.llm = llama_cpp.Llama(
            model_path=str(model_path), n_ctx=settings.n_ctx, n_threads=n_threads,
            n_threads_batch=n_threads, n_batch=settings.n_batch, n_ubatch=settings.n_ubatch,
            n_gpu_layers=settings.n_gpu_layers, type_k=kv_type, type_v=kv_type,
            flash_attn=settings.flash_attn, use_mmap=settings.use_mmap,
            use_mlock=settings.use_mlock,
            last_n_tokens_size=GenerationSettings().penalty_last_n, verbose=False)
        llm = self.llm
        self.formatter, self.system_formatter = (Jinja2ChatFormatter(
            template=llm.metadata["tokenizer.chat_template"],
            eos_token=llm._model.token_get_text(llm.token_eos()),
            bos_token=llm._model.token_get_text(llm.token_bos()),
            add_generation_prompt=generation_prompt,
            stop_token_ids=[llm.token_eos()]) for generation_prompt in (True, False))

    def prompt_tokens(self, chat: list[dict[str, str]]) -> list[int]:
        formatted = self.formatter(messages=chat)
        return self.llm.tokenize(formatted.prompt.encode("utf-8"),
                                 add_bos=not formatted.added_special, special=True)

    def system_tokens(self, chat: list[dict[str, str]]) -> list[int]:
        """The leading system message as the engine reads it: a chunk of its own."""
        formatted = self.system_formatter(messages=chat[:1])
        return self.llm.tokenize(formatted.prompt.encode("utf-8"),
                                 add_bos=not formatted.added_special, special=True)

    def run(self, chat: list[dict[str, str]], max_tokens: int) -> Run:
        llm, vocab = self.llm, self.llm._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        llm.reset()
        held = self.system_tokens(chat)
        llm.eval(held)  # in the cache, as the engine holds it
        started = time.perf_counter()
        prompt = self.prompt_tokens(chat)
        count, first_at, last_at, finish = 0, 0.0, 0.0, "length"
        tokens = llm.generate(prompt, temp=0.0, top_p=TOP_P, reset=True, **PENALTIES)
        try:
            for token in tokens:
                if self._llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                decoder.decode(llm.detokenize([token]))
                last_at = time.perf_counter()
                count += 1
                if count == 1:
                    first_at = last_at
                if count >= max_tokens:
                    break
        finally:
            tokens.close()
        return Run(count, first_at - started, last_at - first_at, len(prompt),
                   finish_reason=finish, cached_tokens=len(held))

    def close(self) -> None:
        self.llm.close()


@contextmanager
def raw_model(model_path: Path, n_threads: int) -> Iterator[RawModel]:
    """The raw model, loaded for as long as the block runs and freed afterwards."""
    raw = RawModel(model_path, n_threads, ModelSettings())
    try:
        yield raw
    finally:
        raw.close()


# -- the daemon ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(home: Path, port: int, model_id: str, n_threads: int,
                 stream_interval_ms: float | None = None) -> None:
    """Only the port, model and threads (and the stream interval when asked): every other
    [model] key keeps the default the raw side also uses."""
    home.mkdir(parents=True, exist_ok=True)
    generation = ("" if stream_interval_ms is None
                  else f"\n[generation]\nstream_interval_ms = {stream_interval_ms}\n")
    (home / "config.toml").write_text(
        f"[daemon]\nport = {port}\n\n[model]\nid = \"{model_id}\"\nn_threads = {n_threads}\n"
        + generation, encoding="utf-8")


def start_daemon(home: Path, port: int, log_file: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "GEMBA_CONFIG"}
    env["GEMBA_HOME"] = str(home)
    with log_file.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "appliance", "serve", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_healthy(client: httpx.Client, proc: subprocess.Popen[bytes],
                 log_file: Path) -> dict[str, Any]:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with code {proc.returncode}:\n"
                               f"{log_file.read_text(errors='replace')[-2000:]}")
        try:
            response = client.get("/healthz", timeout=2.0)
            if response.status_code == 200 and response.json().get("ready"):
                return dict(response.json())
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the daemon was not ready within {HEALTH_TIMEOUT_S:.0f} s:\n"
                       f"{log_file.read_text(errors='replace')[-2000:]}")


def stop_daemon(proc: subprocess.Popen[bytes], worker_pid: int | None) -> None:
    """SIGTERM the daemon, kill its process group if it lingers; make sure the worker is gone."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what it started
            proc.wait(timeout=STOP_TIMEOUT_S)
    if worker_pid is None:
        return
    try:
        worker = psutil.Process(worker_pid)
        if os.getpgid(worker_pid) != proc.pid:
            return  # the pid was reused by a process that is not ours
        try:
            worker.wait(timeout=STOP_TIMEOUT_S)
        except psutil.TimeoutExpired:
            worker.kill()
    except (psutil.NoSuchProcess, ProcessLookupError):
        pass


def sse_events(response: httpx.Response) -> Iterator[tuple[float, dict[str, Any] | None]]:
    """(arrival time, chunk) per `data:` line; None for `[DONE]`."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        at = time.perf_counter()
        data = line[5:].strip()
        yield at, None if data == "[DONE]" else json.loads(data)


def completion_chunks(client: httpx.Client,
                      body: dict[str, Any]) -> Iterator[tuple[float, dict[str, Any]]]:
    """(arrival time, chunk) of one streamed chat completion, up to `[DONE]`; an HTTP error
    or an error chunk raises."""
    with client.stream("POST", "/v1/chat/completions", json=body,
                       timeout=REQUEST_TIMEOUT_S) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.read().decode()[:500]}")
        for at, chunk in sse_events(response):
            if chunk is None:
                return
            if "error" in chunk:
                raise RuntimeError(f"the daemon reported an error: {chunk['error']}")
            yield at, chunk


def daemon_run(client: httpx.Client, max_tokens: int) -> Run:
    body = {"messages": messages(), "stream": True, "max_tokens": max_tokens,
            "temperature": 0, "top_p": TOP_P}
    first_at = last_at = 0.0
    final: dict[str, Any] = {}
    prompt_tokens = 0
    started = time.perf_counter()
    for at, chunk in completion_chunks(client, body):
        choice = chunk["choices"][0]
        if choice["delta"].get("content"):
            first_at = first_at or at
            last_at = at
        prompt_tokens = chunk.get("gemba", {}).get("prompt_tokens", prompt_tokens)
        if choice.get("finish_reason"):
            final = chunk
    usage, gemba = final.get("usage", {}), final.get("gemba", {})
    return Run(int(usage.get("completion_tokens", 0)), first_at - started, last_at - first_at,
               int(usage.get("prompt_tokens", prompt_tokens)),
               engine_tok_per_s=gemba.get("tok_per_s"), engine_ttft_s=gemba.get("engine_ttft_s"),
               finish_reason=final.get("choices", [{}])[0].get("finish_reason"),
               cached_tokens=usage.get("prompt_tokens_details", {}).get("cached_tokens"))


@dataclass
class DaemonClient:
    """A running daemon and an HTTP client bound to it."""

    client: httpx.Client
    health: dict[str, Any]

    def run(self, max_tokens: int) -> Run:
        return daemon_run(self.client, max_tokens)


@contextmanager
def running_daemon(model_id: str, n_threads: int,
                   stream_interval_ms: float | None = None) -> Iterator[DaemonClient]:
    """`gemba serve` in a temporary GEMBA_HOME, ready; always stopped when the block ends."""
    with tempfile.TemporaryDirectory(prefix="gemba-bench-") as tmp:
        home, port = Path(tmp) / "home", free_port()
        write_config(home, port, model_id, n_threads, stream_interval_ms)
        log_file = Path(tmp) / "daemon.log"
        proc = start_daemon(home, port, log_file)
        health: dict[str, Any] = {}
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
                health = wait_healthy(client, proc, log_file)
                yield DaemonClient(client, health)
        finally:
            stop_daemon(proc, health.get("worker_pid"))


def timed_runs(run: Callable[[], Run], runs: int, warmup: int) -> list[Run]:
    for _ in range(warmup):
        run()
    return [run() for _ in range(runs)]


def measure_sequence(args: argparse.Namespace, model_id: str, model_path: Path,
                     load: dict[str, list[float]]) -> tuple[list[Run], list[Run], dict[str, Any]]:
    """All raw runs (the model is freed afterwards), then the daemon started and measured."""
    with raw_model(model_path, args.threads) as raw:
        raw_runs = timed_runs(lambda: raw.run(messages(), args.tokens), args.runs, args.warmup)
    load["after_raw"] = load_average()
    with running_daemon(model_id, args.threads, args.stream_interval_ms) as daemon:
        daemon_runs = timed_runs(lambda: daemon.run(args.tokens), args.runs, args.warmup)
        return raw_runs, daemon_runs, daemon.health


def measure_alternate(args: argparse.Namespace, model_id: str, model_path: Path,
                      load: dict[str, list[float]],
                      reference: Callable[[], dict[str, Any]] | None = None,
                      ) -> tuple[list[Run], list[Run], dict[str, Any], list[dict[str, Any]]]:
    """Both loaded, runs taken in turn (llama-bench, raw, daemon, llama-bench, ...): one decodes
    at a time, and any background load that comes and goes falls on all three alike."""
    with running_daemon(model_id, args.threads, args.stream_interval_ms) as daemon, \
            raw_model(model_path, args.threads) as raw:
        raw_runs: list[Run] = []
        daemon_runs: list[Run] = []
        bench_runs: list[dict[str, Any]] = []
        for i in range(args.warmup + args.runs):
            bench_run = reference() if reference is not None and i >= args.warmup else None
            raw_run, daemon_run_ = raw.run(messages(), args.tokens), daemon.run(args.tokens)
            if i >= args.warmup:
                raw_runs.append(raw_run)
                daemon_runs.append(daemon_run_)
                if bench_run is not None:
                    bench_runs.append(bench_run)
        return raw_runs, daemon_runs, daemon.health, bench_runs


# -- report ----------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    import llama_cpp

    return {"cpu_model": cpu_model(), "logical_cores": psutil.cpu_count(logical=True),
            "physical_cores": psutil.cpu_count(logical=False),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(), "python": platform.python_version(),
            "llama_cpp_python": llama_cpp.__version__}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def summary(runs: list[Run]) -> dict[str, float | None]:
    engine = [r.engine_tok_per_s for r in runs if r.engine_tok_per_s is not None]
    return {"decode_tok_per_s": round(statistics.median(r.decode_tok_per_s for r in runs), 3),
            "ttft_ms": round(statistics.median(r.ttft_s for r in runs) * 1000, 3),
            "tokens": statistics.median(r.tokens for r in runs),
            "engine_tok_per_s": round(statistics.median(engine), 3) if engine else None}


def reference_report(reference: list[dict[str, Any]], raw: float, daemon: float,
                     ttft_overhead_ms: float, daemon_runs: list[Run] | None = None,
                     ) -> dict[str, Any]:
    """llama-bench's runs, the two ratios against them, and all three goals.

    Taken in turn with the daemon's runs (`daemon_runs` given, --order alternate): the median
    of the rounds' ratios daemon/llama-bench, each round's two runs minutes apart at most, so
    a box whose speed drifts (a shared VM's neighbours) compares like with like. Before and
    after (--order sequence): background load only ever slows a run down, so the faster
    llama-bench run is the nearer to what llama.cpp does on a quiet box."""
    goals: dict[str, Any] = {}
    report: dict[str, Any] = {"llama_bench": {"runs": reference, "tok_per_s": None}}
    if reference:
        paired = daemon_runs is not None and len(daemon_runs) == len(reference)
        if paired:
            assert daemon_runs is not None
            rate = statistics.median(r["tok_per_s"] for r in reference)
            ratio = statistics.median((d.decode_tok_per_s or 0.0) / r["tok_per_s"]
                                      for d, r in zip(daemon_runs, reference, strict=True))
        else:
            rate = max(r["tok_per_s"] for r in reference)
            ratio = daemon / rate
        report["llama_bench"]["tok_per_s"] = round(rate, 3)
        report["llama_bench"]["paired_with_daemon_runs"] = paired
        report["ratio_decode_vs_llama_bench"] = round(ratio, 4)
        report["ratio_raw_vs_llama_bench"] = round(raw / rate, 4)
        goals["ratio_decode_vs_llama_bench"] = {
            "target": f">= {GOAL_RATIO_LLAMA_BENCH}", "value": round(ratio, 4),
            "met": ratio >= GOAL_RATIO_LLAMA_BENCH}
    ratio_raw = daemon / raw if raw else 0.0
    goals["ratio_decode"] = {"target": f">= {GOAL_RATIO_DECODE}", "value": round(ratio_raw, 4),
                             "met": ratio_raw >= GOAL_RATIO_DECODE}
    goals["ttft_overhead_ms"] = {"target": f"<= {GOAL_TTFT_OVERHEAD_MS}",
                                 "value": round(ttft_overhead_ms, 3),
                                 "met": ttft_overhead_ms <= GOAL_TTFT_OVERHEAD_MS}
    return {**report, "goals": goals}


def build_report(args: argparse.Namespace, entry: CatalogEntry, raw: list[Run],
                 daemon: list[Run], health: dict[str, Any],
                 load: dict[str, list[float]], reference: list[dict[str, Any]],
                 depth: int) -> dict[str, Any]:
    raw_median, daemon_median = summary(raw), summary(daemon)
    raw_rate = raw_median["decode_tok_per_s"] or 0.0
    ratio = (daemon_median["decode_tok_per_s"] or 0.0) / raw_rate if raw_rate else 0.0
    overhead_ms = (daemon_median["ttft_ms"] or 0.0) - (raw_median["ttft_ms"] or 0.0)
    same_tokens = all(r.tokens == args.tokens for r in (*raw, *daemon))
    same_prompt = len({r.prompt_tokens for r in (*raw, *daemon)}) == 1
    same_cached = len({r.cached_tokens for r in (*raw, *daemon)}) == 1
    return {
        "benchmark": "decode",
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average": load,
        "model": {"id": entry.id, "sha256": entry.sha256, "file": entry.file},
        "settings": {"threads": args.threads, "tokens": args.tokens, "runs": args.runs,
                     "stream_interval_ms": args.stream_interval_ms,
                     "warmup_runs": args.warmup, "order": args.order,
                     "temperature": 0.0, "top_p": TOP_P, "penalties": PENALTIES,
                     "penalty_last_n": GenerationSettings().penalty_last_n,
                     "model": ModelSettings().model_dump(exclude={"id", "n_threads"}),
                     "system_prompt": SYSTEM_PROMPT, "user_prompt": USER_PROMPT},
        "daemon_health": {k: health.get(k) for k in ("version", "n_threads", "n_ctx", "load_s")},
        "checks": {"all_runs_produced_requested_tokens": same_tokens,
                   "same_prompt_tokens_both_sides": same_prompt,
                   "same_tokens_read_in_the_timed_part": same_cached},
        "raw": {"runs": [r.to_dict() for r in raw], "median": raw_median},
        "daemon": {"runs": [r.to_dict() for r in daemon], "median": daemon_median},
        "ratio_decode": round(ratio, 4),
        "ttft_overhead_ms": round(overhead_ms, 3),
        "llama_bench_depth": depth,
        **reference_report(reference, raw_rate, daemon_median["decode_tok_per_s"] or 0.0,
                           overhead_ms, daemon if args.order == "alternate" else None),
        "notes": args.notes,
    }


def print_table(report: dict[str, Any]) -> None:
    raw, daemon = report["raw"]["median"], report["daemon"]["median"]
    machine, settings = report["machine"], report["settings"]
    engine = daemon["engine_tok_per_s"]
    print(f"{report['model']['id']} | {settings['threads']} threads | {settings['tokens']} tokens "
          f"| median of {settings['runs']} runs ({settings['order']}) | {machine['cpu_model']}")
    print(f"{'':8} {'decode tok/s':>13} {'TTFT ms':>9}")
    print(f"{'raw':8} {raw['decode_tok_per_s']:>13.1f} {raw['ttft_ms']:>9.1f}")
    print(f"{'daemon':8} {daemon['decode_tok_per_s']:>13.1f} {daemon['ttft_ms']:>9.1f}"
          + (f"   (engine-side {engine:.1f} tok/s)" if engine is not None else ""))
    reference = report["llama_bench"]["tok_per_s"]
    if reference is not None:
        print(f"{'llama-bench':11} {reference:>10.1f}   (tg{settings['tokens']} at depth "
              f"{report['llama_bench_depth']})")
    for name, goal in report["goals"].items():
        print(f"{name}: {goal['value']} (goal {goal['target']}: "
              f"{'met' if goal['met'] else 'NOT met'})")
    for name, ok in report["checks"].items():
        if not ok:
            print(f"warning: check failed: {name}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per side (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per run (default 256)")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads (default 2)")
    parser.add_argument("--stream-interval-ms", type=float, default=None,
                        help="the daemon's generation.stream_interval_ms (default: the config's)")
    parser.add_argument("--model", default=DEFAULT_MODEL_ID, help="catalog model id")
    parser.add_argument("--order", choices=("alternate", "sequence"), default="alternate",
                        help="alternate: raw and daemon runs in turn, both loaded (default); "
                             "sequence: all raw runs, model freed, then the daemon")
    parser.add_argument("--no-llama-bench", action="store_true",
                        help="skip llama-bench (it is built once, several minutes, on first use)")
    parser.add_argument("--notes", default="", help="recorded in the report (e.g. machine load)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"JSON report (default {DEFAULT_OUTPUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.tokens < 2 or args.threads < 1 or args.warmup < 0:
        parser.error("need --runs >= 1, --tokens >= 2, --threads >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gemba-bench-models-") as models_dir:
        entry, model_path = resolve_verified(args.model, Path(models_dir))
    load = {"start": load_average()}
    with raw_model(model_path, args.threads) as raw_side:
        depth = len(raw_side.prompt_tokens(messages()))

    def reference(runs: int) -> dict[str, Any]:
        return llama_bench.tg_at_depth(model_path, args.threads, args.tokens, depth, runs,
                                       ModelSettings().flash_attn)

    bench = None if args.no_llama_bench else reference
    if args.order == "alternate":
        print(f"alternate: {args.warmup} warm-up + {args.runs} timed rounds of llama-bench, raw "
              f"and daemon in turn, {args.tokens} tokens, {args.threads} threads ...",
              file=sys.stderr)
        raw, daemon, health, references = measure_alternate(
            args, entry.id, model_path, load, None if bench is None else lambda: bench(1))
    else:
        print(f"sequence: llama-bench, then {args.warmup} warm-up + {args.runs} timed runs per "
              f"side, then llama-bench again; {args.tokens} tokens, {args.threads} threads ...",
              file=sys.stderr)
        before = [] if bench is None else [bench(args.runs)]
        raw, daemon, health = measure_sequence(args, entry.id, model_path, load)
        references = before + ([] if bench is None else [bench(args.runs)])
    load["end"] = load_average()
    report = build_report(args, entry, raw, daemon, health, load, references, depth)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_table(report)
    print(f"report: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
