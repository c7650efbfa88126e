"""The plan: a pure function of (hardware, profile, model, wanted context and answers at once)
-> settings and checks.

Every chosen number carries the reason an expert would give. Checks are pass / warn / fail with a
sentence and the figures; a failing check means the box must not run this model as planned.
No I/O here: the same inputs always give the same plan (tested table-driven over recorded boxes).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from appliance.hardware.facts import HostFacts
from appliance.hardware.host import is_cpu_sensor
from appliance.limits import PLAN, Limits, Severity, Status, power_limits, temperature_limits
from installer.derive import profile_for_box
from installer.gguf_info import ModelFacts
from installer.profiles import Profile, sourced_figures

MIB = 1 << 20
GIB = 1 << 30

# What the Gemba llama.cpp build needs from the CPU, per architecture.
BUILD_NEEDS = {"x86_64": ("avx", "avx2", "fma", "f16c"), "aarch64": ("asimd",)}
# Worker process beyond llama.cpp's buffers: Python and llama-cpp-python (~43 MiB after import),
# runtime and tokenizer tables that grow with the vocabulary (fitted on three models; see
# bench/results/plan_accuracy.json).
BASE_OVERHEAD_BYTES = 60 * MIB
OVERHEAD_PER_VOCAB_BYTES = 128
# Weight types llama.cpp repacks into a second, CPU-friendly copy (AVX2 / ARM dot product);
# the mapped original stays resident too.
REPACKED_TYPES = ("Q4_0", "Q4_K", "IQ4_NL")
VRAM_SAFETY_BYTES = 512 * MIB
MIN_CONTEXT = 512
CONTEXT_STEP = 256
# Answers decoded at once when memory allows: a production line's consoles asking together.
PARALLEL_TARGET = 4


@dataclass(frozen=True)
class Choice:
    value: Any
    reason: str


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryEstimate:
    weights_cpu_bytes: int
    weights_gpu_bytes: int
    kv_cpu_bytes: int
    kv_gpu_bytes: int
    compute_cpu_bytes: int
    compute_gpu_bytes: int
    overhead_bytes: int
    ram_budget_bytes: int
    vram_budget_bytes: int

    @property
    def ram_bytes(self) -> int:
        return (self.weights_cpu_bytes + self.kv_cpu_bytes + self.compute_cpu_bytes
                + self.overhead_bytes)

    @property
    def vram_bytes(self) -> int:
        return self.weights_gpu_bytes + self.kv_gpu_bytes + self.compute_gpu_bytes


@dataclass(frozen=True)
class Plan:
    profile: str
    model: str
    settings: dict[str, Choice]
    memory: MemoryEstimate
    power_w: float
    checks: tuple[Check, ...]
    derived: bool = False
    """The profile was derived from the probe: its figures await the vendor's data."""
    profile_figures: dict[str, Choice] = field(default_factory=dict)
    """The profile's figures that name a source (all of a derived profile's), by key."""

    @property
    def ok(self) -> bool:
        return all(check.status != "fail" for check in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 3

    def value(self, key: str) -> Any:
        return self.settings[key].value


@dataclass(frozen=True)
class _Shape:
    """The knobs that decide memory, tried from generous to frugal."""

    n_ctx: int
    n_gpu_layers: int
    kv_type: str
    n_ubatch: int
    n_parallel: int = 1
    """Answers decoded at once: each slot holds its own KV cache of n_ctx tokens."""


def estimate_memory(model: ModelFacts, shape: _Shape, facts: HostFacts,
                    profile: Profile) -> MemoryEstimate:
    unified = facts.tegra is not None  # Jetson: GPU memory is the same RAM
    offloaded = min(shape.n_gpu_layers, model.layers)
    gpu_layer_bytes = sum(model.layer_bytes[model.layers - offloaded:]) if offloaded else 0
    output_on_gpu = shape.n_gpu_layers > model.layers
    output_bytes = model.output_bytes + model.other_bytes
    weights_gpu = gpu_layer_bytes + (output_bytes if output_on_gpu else 0)
    weights_cpu = model.weight_bytes - weights_gpu
    if _repacks(facts):
        cpu_share = (model.layers - offloaded) / max(model.layers, 1)
        weights_cpu += int(sum(model.bytes_by_type.get(t, 0) for t in REPACKED_TYPES)
                           * cpu_share)
    kv_total = shape.n_parallel * model.kv_bytes(shape.n_ctx, shape.kv_type, shape.n_ubatch)
    kv_gpu = kv_total * offloaded // max(model.layers, 1)
    compute_gpu = _compute_gpu_bytes(model, shape) if offloaded else 0
    # With layers offloaded, the CPU keeps only the embedding lookup's small buffer.
    compute_cpu = _compute_cpu_bytes(model, shape) if not offloaded \
        else min(shape.n_ubatch, shape.n_ctx) * model.embedding * 8
    overhead = BASE_OVERHEAD_BYTES + model.vocab * OVERHEAD_PER_VOCAB_BYTES
    ram_budget = facts.memory.usable_bytes - int(profile.memory.reserved_ram_gib * GIB)
    vram_free = sum((gpu.memory_free_bytes or gpu.memory_total_bytes or 0) for gpu in facts.gpus)
    vram_budget = max(0, vram_free - VRAM_SAFETY_BYTES * len(facts.gpus))
    if unified:  # everything lives in RAM; there is no separate VRAM budget
        return MemoryEstimate(weights_cpu + weights_gpu, 0, kv_total, 0,
                              compute_cpu + compute_gpu, 0, overhead, ram_budget, 0)
    return MemoryEstimate(weights_cpu, weights_gpu, kv_total - kv_gpu, kv_gpu, compute_cpu,
                          compute_gpu, overhead, ram_budget, vram_budget)


def _repacks(facts: HostFacts) -> bool:
    return facts.cpu.has("avx2") or facts.cpu.has("asimddp")


def _compute_gpu_bytes(model: ModelFacts, shape: _Shape) -> int:
    """The GPU compute buffer llama.cpp reserves (and the driver really allocates): the logits
    plus a micro-batch's work tensors (flash attention, always planned, keeps no score buffer)."""
    ubatch = min(shape.n_ubatch, shape.n_ctx)
    logits = model.vocab * ubatch * 4
    work = ubatch * (model.embedding * 4 + model.feed_forward * 3) * 4
    return logits + work


def _compute_cpu_bytes(model: ModelFacts, shape: _Shape) -> int:
    """CPU compute memory actually touched: llama.cpp reserves logits for a whole micro-batch
    but generation writes one row per slot; reading a full-context prompt touches the masks and
    a micro-batch's work tensors, and flash attention (always planned) keeps no score buffer
    (measured at 512-8192 tokens on three models, bench/plan_accuracy.py). Slots do not widen
    the masks: each slot's stream attends to its own n_ctx, and a micro-batch's tokens are split
    between the streams."""
    ubatch = min(shape.n_ubatch, shape.n_ctx)
    masks = shape.n_ctx * ubatch * 4 * (2 if model.swa_layers else 1)
    work = ubatch * (2 * model.embedding + model.feed_forward) * 4
    return masks + work + model.vocab * 4 * shape.n_parallel


def make_plan(facts: HostFacts, profile: Profile, model: ModelFacts,
              wanted_ctx: int | None = None, wanted_parallel: int | None = None) -> Plan:
    profile = profile_for_box(profile, facts)
    threads = _threads(facts, profile)
    ctx_limit, ctx_reason = _context_limit(model, profile, wanted_ctx)
    gpu = _gpu_offload(facts, model)
    shape, memory, memory_reason = _fit(facts, profile, model, ctx_limit, gpu)
    shape, memory, parallel = _parallel(facts, profile, model, shape, memory, wanted_parallel)
    settings = {
        "n_threads": threads,
        "n_ctx": Choice(shape.n_ctx, f"{ctx_reason}; {memory_reason}" if shape.n_ctx == ctx_limit
                        else f"{shape.n_ctx} tokens, {memory_reason}"),
        "n_parallel": parallel,
        "n_gpu_layers": Choice(shape.n_gpu_layers, gpu.reason),
        "n_batch": Choice(512, "512 tokens per prompt batch: llama.cpp's default, fast prompt "
                               "reading without a large buffer"),
        "n_ubatch": Choice(shape.n_ubatch, f"micro-batch of {shape.n_ubatch}: the compute buffer "
                                           "grows with it" + (" (reduced to fit memory)"
                                                              if shape.n_ubatch < 512 else "")),
        "kv_cache_type": Choice(shape.kv_type, "f16 keeps answers exact" if shape.kv_type == "f16"
                                else "q8_0 halves the KV cache to fit memory (needs flash "
                                     "attention)"),
        "flash_attn": Choice(True, _flash_reason(shape)),
        "use_mmap": Choice(True, "map the model file: it loads in a moment and its pages are "
                                 "shared with the page cache"),
        "use_mlock": _mlock(facts, memory),
        "gpu_power_cap_w": _power_cap(facts, profile),
    }
    power_w = _power_estimate(facts, profile, threads.value, shape.n_gpu_layers > 0)
    checks = (
        *_check_profile(profile),
        _check_cpu(facts),
        _check_quantization(model, profile),
        _check_memory(memory, shape, model),
        _check_power(facts, profile, power_w),
        *_check_thermal(facts, profile),
        _check_disk(facts, profile, model),
    )
    figures = {key: Choice(value, source) for key, (value, source)
               in sourced_figures(profile).items()}
    return Plan(profile.name, model.name, settings, memory, power_w, checks,
                profile.profile.derived, figures)


def _check_profile(profile: Profile) -> list[Check]:
    if not profile.profile.derived:
        return []
    return [Check("profile", "warn", f"derived: confirm with the vendor's data. No firmware "
                  f"profile describes this box, so {profile.name} was derived from the probe "
                  "(each figure and its source are listed with the plan); `gemba install "
                  "profile new` writes it as a file to review and keep",
                  {"derived": True, "sources": len(profile.profile.sources)})]


def _threads(facts: HostFacts, profile: Profile) -> Choice:
    cores = facts.cpu.physical_cores or facts.cpu.logical_cores
    cap = profile.model.thread_cap
    if cores <= cap:
        return Choice(cores, f"one thread per physical core ({cores}); decoding is limited by "
                             "memory bandwidth, so hyper-threads do not help")
    return Choice(cap, f"{cap} of {cores} cores: the profile leaves the rest to the plant's "
                       "software")


def _context_limit(model: ModelFacts, profile: Profile, wanted: int | None) -> tuple[int, str]:
    limits = [(profile.model.max_context, f"the profile's maximum ({profile.model.max_context})")]
    if model.context_train:
        limits.append((model.context_train, f"the model's trained context "
                                            f"({model.context_train})"))
    if wanted:
        limits.append((wanted, f"the requested context ({wanted})"))
    value, reason = min(limits)
    return value, f"{value} tokens: {reason}"


@dataclass(frozen=True)
class _Offload:
    layers: int
    reason: str


def _gpu_offload(facts: HostFacts, model: ModelFacts) -> _Offload:
    if facts.tegra is not None:
        return _Offload(model.layers + 1, "Jetson: every layer on the integrated GPU (it shares "
                                          "the RAM, so offloading costs no extra memory)")
    if not facts.gpus:
        reason = facts.nvml.reason or "no NVIDIA GPU"
        return _Offload(0, f"CPU only: {reason}")
    return _Offload(model.layers + 1, f"all {model.layers} layers and the output on "
                                      f"{len(facts.gpus)} NVIDIA GPU(s)")


def _fit(facts: HostFacts, profile: Profile, model: ModelFacts, ctx_limit: int,
         gpu: _Offload) -> tuple[_Shape, MemoryEstimate, str]:
    """The most generous shape that fits RAM and VRAM, trying frugal options in expert order:
    fewer GPU layers, then a smaller micro-batch, a q8_0 KV cache, and last a shorter context."""
    first = tried = _Shape(ctx_limit, gpu.layers, "f16", 512)
    for shape in _candidates(first, model):
        memory = estimate_memory(model, shape, facts, profile)
        tried = shape
        if _short_of(memory, shape, facts) is None:
            changes = _describe_changes(first, shape)
            return shape, memory, changes or "fits memory as wanted"
    return tried, estimate_memory(model, tried, facts, profile), (
        f"does not fit even at the smallest settings ({tried.n_ctx} tokens, micro-batch "
        f"{tried.n_ubatch}, {tried.kv_type} KV cache)")


def _short_of(memory: MemoryEstimate, shape: _Shape, facts: HostFacts) -> str | None:
    """The budget the shape overflows ("RAM" or "VRAM"), None when it fits both."""
    if memory.ram_bytes > memory.ram_budget_bytes:
        return "RAM"
    if _counts_vram(shape, facts) and memory.vram_bytes > memory.vram_budget_bytes:
        return "VRAM"
    return None


def _counts_vram(shape: _Shape, facts: HostFacts) -> bool:
    """Layers on a discrete GPU: VRAM is a budget of its own (a Jetson's GPU shares the RAM)."""
    return bool(shape.n_gpu_layers) and facts.tegra is None


def _parallel(facts: HostFacts, profile: Profile, model: ModelFacts, shape: _Shape,
              memory: MemoryEstimate, wanted: int | None) -> tuple[_Shape, MemoryEstimate, Choice]:
    """The most answers at once, up to the target, whose KV caches fit beside the shape planned
    for one answer: a slot never costs context, GPU layers, micro-batch or KV precision."""
    target = wanted or PARALLEL_TARGET
    chosen, chosen_memory = shape, memory
    blocked = _short_of(memory, shape, facts)
    for n in range(2, target + 1) if blocked is None else ():
        trial = replace(shape, n_parallel=n)
        estimate = estimate_memory(model, trial, facts, profile)
        blocked = _short_of(estimate, trial, facts)
        if blocked is not None:
            break
        chosen, chosen_memory = trial, estimate
    reason = _parallel_reason(model, chosen, chosen_memory, facts, wanted, blocked)
    return chosen, chosen_memory, Choice(chosen.n_parallel, reason)


def _parallel_reason(model: ModelFacts, shape: _Shape, memory: MemoryEstimate, facts: HostFacts,
                     wanted: int | None, blocked: str | None) -> str:
    """`blocked`: the budget one more slot would overflow (None: the target fits)."""
    n, target = shape.n_parallel, wanted or PARALLEL_TARGET
    per_slot = model.kv_bytes(shape.n_ctx, shape.kv_type, shape.n_ubatch)
    if _short_of(memory, shape, facts) is not None:
        return (f"1 answer at a time ({target} wanted): the model does not fit the {blocked} "
                f"budget even with one slot and its {_size(per_slot)} KV cache (see the memory "
                "check)")
    if blocked is not None:
        budget = memory.ram_budget_bytes if blocked == "RAM" else memory.vram_budget_bytes
        return (f"{_answers(n)} ({target} wanted): each slot's KV cache is "
                f"{_size(per_slot)} and the {_size(budget)} {blocked} budget leaves room for "
                + ("only 1" if n == 1 else str(n)))
    slots = (f"its KV cache of {_size(per_slot)}" if n == 1 else
             f"KV cache {_size(per_slot)} per slot, {_size(per_slot * n)} for {n},")
    return (f"{_answers(n)}{', as requested' if wanted else ''}: {slots} fits the "
            f"{_budgets(memory, shape, facts)}")


def _answers(n: int) -> str:
    return "1 answer at a time" if n == 1 else f"{n} answers at once"


def _budgets(memory: MemoryEstimate, shape: _Shape, facts: HostFacts) -> str:
    ram = _size(memory.ram_budget_bytes)
    if _counts_vram(shape, facts):
        return f"{ram} RAM and {_size(memory.vram_budget_bytes)} VRAM budgets"
    return f"{ram} RAM budget"


def _size(n_bytes: int) -> str:
    return f"{n_bytes / GIB:.1f} GiB" if n_bytes >= GIB else f"{n_bytes / MIB:.0f} MiB"


def _candidates(first: _Shape, model: ModelFacts):  # type: ignore[no-untyped-def]
    layers = first.n_gpu_layers
    gpu_steps = [layers] + ([n for n in range(model.layers, -1, -1)] if layers else [])
    ctx = first.n_ctx
    contexts = []
    while ctx >= MIN_CONTEXT:
        contexts.append(ctx)
        ctx = (ctx // 2) // CONTEXT_STEP * CONTEXT_STEP
    for n_ctx in contexts or [first.n_ctx]:
        for kv_type in ("f16", "q8_0"):
            for n_ubatch in (512, 256, 128):
                for n_gpu_layers in gpu_steps:
                    yield _Shape(n_ctx, n_gpu_layers, kv_type, n_ubatch)


def _describe_changes(first: _Shape, chosen: _Shape) -> str:
    notes = []
    if chosen.n_gpu_layers < first.n_gpu_layers:
        notes.append(f"{chosen.n_gpu_layers} GPU layers instead of {first.n_gpu_layers}")
    if chosen.n_ubatch < first.n_ubatch:
        notes.append(f"micro-batch {chosen.n_ubatch}")
    if chosen.kv_type != first.kv_type:
        notes.append(f"{chosen.kv_type} KV cache")
    if chosen.n_ctx < first.n_ctx:
        notes.append(f"context cut from {first.n_ctx} to {chosen.n_ctx}")
    return ("to fit memory: " + ", ".join(notes)) if notes else ""


def _flash_reason(shape: _Shape) -> str:
    if shape.kv_type != "f16":
        return "on: a quantized KV cache needs flash attention"
    return ("on: llama.cpp's own choice on CPU and GPU; faster answers and prompt reading, "
            "and no attention-score buffer")


def _mlock(facts: HostFacts, memory: MemoryEstimate) -> Choice:
    if facts.memory.swap_total_bytes == 0:
        return Choice(False, "no swap on this box: model pages cannot be swapped out anyway")
    if memory.ram_bytes * 2 <= memory.ram_budget_bytes:
        return Choice(True, "lock the model in RAM so plant software cannot push it to swap "
                            "(needs LimitMEMLOCK in the service unit)")
    return Choice(False, "memory is tight: locking would starve the plant's other software")


def _power_cap(facts: HostFacts, profile: Profile) -> Choice:
    cap = profile.power.gpu_cap_w
    if not facts.gpus:
        return Choice(None, "no NVIDIA GPU to cap")
    if cap is None:
        return Choice(None, "the profile sets no GPU cap: the card keeps its own limit")
    low = max((g.power_limit_min_w or 0) for g in facts.gpus)
    high = min((g.power_limit_max_w or cap) for g in facts.gpus)
    value = min(max(cap, low), high)
    if value != cap:
        return Choice(value, f"the profile asks {cap:g} W; the card allows {low:g}-{high:g} W")
    source = profile.profile.sources.get("power.gpu_cap_w")
    return Choice(cap, f"{cap:g} W: " + (source or "the profile's GPU share of the box's power "
                                                   "supply"))


def _power_estimate(facts: HostFacts, profile: Profile, threads: int, on_gpu: bool) -> float:
    share = threads / max(facts.cpu.logical_cores, 1)
    estimate = profile.power.idle_w + profile.power.cpu_load_w * share
    if on_gpu and facts.gpus:
        for gpu in facts.gpus:
            estimate += profile.power.gpu_cap_w or gpu.power_limit_w or 0.0
    return round(estimate, 1)


def _check_cpu(facts: HostFacts) -> Check:
    needs = BUILD_NEEDS.get(facts.cpu.arch)
    if needs is None:
        return Check("cpu", "fail", f"CPU architecture {facts.cpu.arch} has no Gemba build",
                     {"arch": facts.cpu.arch})
    missing = [flag for flag in needs if not facts.cpu.has(flag)]
    if missing:
        names = ", ".join(flag.upper() for flag in missing)
        return Check("cpu", "fail", f"{facts.cpu.model} lacks {names}: the Gemba build of "
                     f"llama.cpp would stop with 'illegal instruction'. Use a box with "
                     f"{', '.join(n.upper() for n in needs)}", {"missing": missing})
    return Check("cpu", "pass", f"{facts.cpu.model} has {', '.join(n.upper() for n in needs)}",
                 {"flags": list(needs)})


def _check_quantization(model: ModelFacts, profile: Profile) -> Check:
    allowed = profile.model.allowed_quantizations
    if model.quantization in allowed:
        return Check("quantization", "pass", f"{model.quantization} is allowed on this box",
                     {"quantization": model.quantization})
    return Check("quantization", "fail", f"the model is {model.quantization}; the profile "
                 f"allows {', '.join(allowed)}", {"quantization": model.quantization,
                                                  "allowed": allowed})


def _check_memory(memory: MemoryEstimate, shape: _Shape, model: ModelFacts) -> Check:
    figures = {"ram_needed_bytes": memory.ram_bytes, "ram_budget_bytes": memory.ram_budget_bytes,
               "vram_needed_bytes": memory.vram_bytes,
               "vram_budget_bytes": memory.vram_budget_bytes, "n_ctx": shape.n_ctx,
               "n_parallel": shape.n_parallel}
    needed, budget = memory.ram_bytes / GIB, memory.ram_budget_bytes / GIB
    if memory.ram_bytes > memory.ram_budget_bytes:
        return Check("memory", "fail", f"{model.name} needs {needed:.2f} GiB of RAM even at "
                     f"{shape.n_ctx} tokens; {budget:.2f} GiB is available after the "
                     "profile's reservation", figures)
    if memory.vram_bytes > memory.vram_budget_bytes and shape.n_gpu_layers and \
            memory.vram_budget_bytes:
        return Check("memory", "fail", f"needs {memory.vram_bytes / GIB:.2f} GiB of VRAM; "
                     f"{memory.vram_budget_bytes / GIB:.2f} GiB is free", figures)
    status: Status = "warn" if memory.ram_bytes > 0.9 * memory.ram_budget_bytes else "pass"
    return Check("memory", status, f"needs {needed:.2f} GiB of RAM"
                 + (f" and {memory.vram_bytes / GIB:.2f} GiB of VRAM" if memory.vram_bytes else "")
                 + f"; {budget:.2f} GiB available after the reservation", figures)


def _check_power(facts: HostFacts, profile: Profile, power_w: float) -> Check:
    budget = profile.power.box_budget_w
    wanted_cap = profile.power.gpu_cap_w
    figures = {"estimated_w": power_w, "budget_w": budget, "gpu_cap_w": wanted_cap}
    if power_limits(budget).level(power_w) >= Severity.WARNING:
        return Check("power", "fail", f"estimated draw {power_w:g} W reaches the box budget of "
                     f"{budget:g} W", figures)
    for gpu in facts.gpus:
        low, high = gpu.power_limit_min_w, gpu.power_limit_max_w
        if wanted_cap and low is not None and low > wanted_cap:
            return Check("power", "fail", f"GPU {gpu.index} ({gpu.name}) cannot be capped below "
                         f"{low:g} W; the profile's share of the power supply is {wanted_cap:g} W",
                         {**figures, "gpu_limit_min_w": low})
        if wanted_cap and high is not None and high < wanted_cap:
            return Check("power", "warn", f"GPU {gpu.index} ({gpu.name}) allows at most "
                         f"{high:g} W, below the {wanted_cap:g} W the profile plans: answers "
                         "will be slower than planned", {**figures, "gpu_limit_max_w": high})
    status = PLAN[power_limits(budget).level(power_w)]
    return Check("power", status, f"estimated draw {power_w:g} W of the {budget:g} W budget",
                 figures)


def _check_thermal(facts: HostFacts, profile: Profile) -> list[Check]:
    limits = profile.thermal
    temps = [t.temp_c for t in (*facts.temperatures,
                                *(facts.tegra.thermal_zones if facts.tegra else ()))
             if is_cpu_sensor(t)]
    if not temps and not limits.sensors_expected:
        cpu = Check("thermal_cpu", "pass", "no temperature sensors, as expected for this box "
                    "(the host manages its heat)", {"temp_c": None})
    elif not temps:
        cpu = Check("thermal_cpu", "warn", "CPU temperature unknown (no sensors): the thermal "
                    "budget could not be verified; the governor will slow answers as a "
                    "precaution", {"temp_c": None})
    else:
        cpu = _grade("thermal_cpu", "CPU", max(temps), Limits(
            limits.cpu_careful_c, limits.cpu_warning_c, limits.cpu_critical_c))
    checks = [cpu]
    # profile_for_box gave a GPU box levels from its cards when the profile has none.
    gpu_limits = temperature_limits(limits, "gpu")
    for gpu in facts.gpus:
        if gpu.temp_c is None or gpu_limits is None:
            checks.append(Check(f"thermal_gpu{gpu.index}", "warn", f"GPU {gpu.index} temperature "
                                "unknown: " + gpu.unavailable.get("temp_c", "not reported"),
                                {"temp_c": None}))
            continue
        check = _grade(f"thermal_gpu{gpu.index}", f"GPU {gpu.index}", gpu.temp_c, gpu_limits)
        throttled = [r for r in gpu.throttle_reasons or () if "thermal" in r or "slowdown" in r
                     or "power" in r]
        if throttled and check.status == "pass":
            check = Check(check.name, "warn", f"GPU {gpu.index} is already throttling "
                          f"({', '.join(throttled)}) at {gpu.temp_c:g} °C", check.figures)
        checks.append(check)
    return checks


def _grade(name: str, what: str, temp_c: float, limits: Limits) -> Check:
    """The box before any load, graded as every figure is (appliance.limits) and judged as the
    plan judges: careful already is a warning, the warning level already is a refusal."""
    figures = {"temp_c": temp_c, "careful_c": limits.careful, "warning_c": limits.warning,
               "critical_c": limits.critical}
    severity = limits.level(temp_c)
    status = PLAN[severity]
    if severity >= Severity.WARNING:
        return Check(name, status, f"{what} is already at {temp_c:g} °C, at or above the "
                     f"profile's warning limit of {limits.warning:g} °C: cool the cabinet first",
                     figures)
    if severity == Severity.CAREFUL:
        return Check(name, status, f"{what} at {temp_c:g} °C is above the careful limit of "
                     f"{limits.careful:g} °C before any load", figures)
    return Check(name, status, f"{what} at {temp_c:g} °C, {limits.warning - temp_c:g} °C below "
                 "the warning limit", figures)


def _check_disk(facts: HostFacts, profile: Profile, model: ModelFacts) -> Check:
    after = facts.disk.free_bytes - model.file_bytes
    need = int(profile.memory.min_free_disk_gib * GIB)
    figures = {"free_bytes": facts.disk.free_bytes, "model_bytes": model.file_bytes,
               "min_free_bytes": need}
    if after < need:
        return Check("disk", "fail", f"{facts.disk.path}: {after / GIB:.1f} GiB would remain "
                     f"after copying the model; the profile needs {need / GIB:.1f} GiB", figures)
    return Check("disk", "pass", f"{after / GIB:.1f} GiB free after copying the model",
                 figures)
