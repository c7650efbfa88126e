"""A firmware profile for a box that no shipped profile describes, derived from its probe. Pure.

Every figure is on the cautious side and says where it comes from: NVML (the card's slowdown
temperature and power limits), coretemp or k10temp (TjMax), the CPU class read from the model
string, or a default named as such. The result is an ordinary `Profile`, validated by the same
model as the shipped files, with `derived = true`, so every plan on it says "derived: confirm with
the vendor's data". `gemba install profile new` writes it as TOML for the engineer to review.
Refusals are not this module's business: a box without AVX2 or with too little memory still gets
a profile, and the plan's checks refuse it with their reasons.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from appliance.hardware.facts import GpuFacts, HostFacts
from appliance.limits import LEVELS, card_gpu_limits
from installer.profiles import MatchResult, Profile, best_match

GIB = 1 << 30
TJMAX_ASSUMED_C = 90.0
# How far below TjMax each level sits (careful, warning, critical): a passive case has no air
# flow to shed a sustained load, so a fanless box starts slowing 10 °C earlier.
_CPU_OFFSETS_C = {False: (15.0, 8.0, 3.0), True: (25.0, 15.0, 8.0)}
_NOMINAL_RAM_GB = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768,
                   1024, 1536, 2048, 3072, 4096)
_CPU_QUANTS = ["Q4_0", "Q4_1", "Q4_K", "IQ4_XS", "IQ4_NL", "Q5_K", "Q8_0"]
_GPU_QUANTS = [*_CPU_QUANTS, "Q6_K", "F16"]


@dataclass(frozen=True)
class CpuClass:
    name: str
    pattern: str
    """Searched in the lower-cased CPU model string."""
    load_w_per_core: float
    """Extra draw per busy physical core, watts: near the class's turbo limit, not its TDP."""
    idle_w: float
    """What a box of this class draws idle, watts."""


CPU_CLASSES = (
    CpuClass("low-power (Atom, Celeron, Pentium, N-series, AMD G-series)",
             r"atom|celeron|pentium|\bn\d{2,3}\b|\bj\d{4}\b|\bgx-\d", 3.0, 6.0),
    CpuClass("server (Xeon, EPYC, Threadripper)", r"xeon|epyc|threadripper", 8.0, 60.0),
    CpuClass("mobile 15-28 W (U, UE, G7 suffix)", r"\d{4,5}(u|ue|g\d)\b", 4.0, 8.0),
    CpuClass("mobile 35-55 W (H, HS, HX suffix)", r"\d{4,5}(h|hs|hx|hk)\b", 6.0, 12.0),
    CpuClass("35 W desktop (T, TE suffix)", r"\d{4,5}te?\b", 4.0, 15.0),
)
ARM_CLASS = CpuClass("ARM SoC", "", 1.5, 5.0)
DESKTOP_CLASS = CpuClass("desktop or unrecognised x86", "", 11.0, 25.0)


def cpu_class(model: str, arch: str) -> CpuClass:
    if arch == "aarch64":
        return ARM_CLASS
    lowered = model.lower()
    return next((c for c in CPU_CLASSES if re.search(c.pattern, lowered)), DESKTOP_CLASS)


@dataclass
class _Draft:
    """The profile's keys as they are derived, with the source of each figure."""

    raw: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        section: {} for section in ("profile", "match", "power", "thermal", "memory", "model")})
    sources: dict[str, str] = field(default_factory=dict)

    def put(self, key: str, value: Any, source: str | None = None) -> None:
        section, _, name = key.partition(".")
        self.raw[section][name] = value
        if source:
            self.sources[key] = source


def derive_profile(facts: HostFacts, name: str | None = None) -> Profile:
    """A conservative profile for this box, each figure with its source; `derived = true`."""
    draft = _Draft()
    fanless, cooling = _cooling(facts)
    _about(draft, facts, name, fanless)
    _match(draft, facts)
    _power(draft, facts, fanless, cooling)
    _thermal(draft, facts, fanless, cooling)
    _memory(draft, facts)
    _model(draft, facts, fanless, cooling)
    draft.raw["profile"]["sources"] = draft.sources
    return Profile.model_validate(draft.raw)


def choose_profile(profiles: list[Profile], facts: HostFacts) -> MatchResult:
    """The shipped profile that matches best, else one derived from the probe: never none."""
    best = best_match(profiles, facts)
    if best is not None:
        return MatchResult(profile_for_box(best.profile, facts), best.score, best.reasons)
    return MatchResult(derive_profile(facts), 0, (
        "no shipped profile matches this box: derived from the probe (confirm with the vendor's "
        "data)",))


def profile_for_box(profile: Profile, facts: HostFacts) -> Profile:
    """The profile with GPU levels taken from the cards when it sets none and the box has
    NVIDIA GPUs, so the plan, the burn-in and the governor judge the GPU the same way."""
    if profile.thermal.gpu_careful_c is not None or not facts.gpus:
        return profile
    levels, sources = _card_levels(facts.gpus, "the profile sets no GPU levels: ")
    sources = {**profile.profile.sources, **sources}
    return profile.model_copy(update={
        "thermal": profile.thermal.model_copy(update=levels),
        "profile": profile.profile.model_copy(update={"sources": sources})})


# --- the parts ---------------------------------------------------------------------------------
def _cooling(facts: HostFacts) -> tuple[bool, str]:
    """(fanless, why): only a fan the OS sees turning counts as cooling."""
    if facts.cpu.has("hypervisor"):
        return False, "a virtual machine: the host cools it"
    turning = [fan for fan in facts.fans if fan.rpm > 0]
    if turning:
        return False, f"fanned: {turning[0].source} reports a fan at {turning[0].rpm} rpm"
    if facts.fans:
        return True, "fanless: the fans the OS sees stand still (0 rpm)"
    return True, ("fanless: no fan seen by the OS, the cautious reading; a server's fans may "
                  "be visible only to its BMC")


def _about(draft: _Draft, facts: HostFacts, name: str | None, fanless: bool) -> None:
    parts = [facts.cpu.model, *sorted({gpu.name for gpu in facts.gpus}),
             f"{_nominal_gb(facts)} GB RAM", "fanless" if fanless else "fanned"]
    if facts.tegra and facts.tegra.model:
        parts.insert(0, facts.tegra.model)
    draft.put("profile.name", name or _name(facts))
    draft.put("profile.description", ", ".join(parts) + f": derived from the probe of "
              f"{facts.hostname}")
    draft.put("profile.derived", True)


def _name(facts: HostFacts) -> str:
    board = facts.tegra.model if facts.tegra and facts.tegra.model else None
    words = _slug(board)[:4] if board else _slug(facts.cpu.model)
    gpus = sorted({gpu.name for gpu in facts.gpus})
    if gpus:
        words += ([f"{len(facts.gpus)}x"] if len(facts.gpus) > 1 else []) + _slug(gpus[0])
    words.append(f"{_nominal_gb(facts)}gb")
    if facts.tegra and facts.tegra.nvpmodel_mode:
        words += _slug(facts.tegra.nvpmodel_mode)
    name = "-".join(words)[:64].strip("-")
    return name if re.fullmatch(r"[a-z0-9][a-z0-9-]{1,63}", name) else "derived-box"


_NOISE = {"intel", "amd", "r", "tm", "core", "cpu", "processor", "gen", "soc", "nvidia",
          "geforce", "with", "w", "radeon", "graphics", "apu"}


def _slug(text: str) -> list[str]:
    text = re.split(r"\s(?:w/|with)\s", text.lower())[0].split("@")[0]
    return [word for word in re.findall(r"[a-z0-9]+", text)
            if word not in _NOISE and not re.fullmatch(r"\d+(st|nd|rd|th)", word)]


def _nominal_gb(facts: HostFacts) -> int:
    """The installed size the OS's total suggests (MemTotal sits a little below it)."""
    total = facts.memory.total_bytes / GIB
    return next((size for size in _NOMINAL_RAM_GB if size >= total), math.ceil(total))


def _glob(text: str) -> str:
    """`text` as a glob that matches exactly it ([, * and ? are glob characters)."""
    return re.sub(r"([\[*?])", r"[\1]", text)


def _match(draft: _Draft, facts: HostFacts) -> None:
    if facts.cpu.model and facts.cpu.model != "unknown":
        draft.put("match.cpu_model", [_glob(facts.cpu.model)])
    if facts.tegra is not None:
        if facts.tegra.model:
            draft.put("match.board_model", [_glob(facts.tegra.model)])
        if facts.tegra.nvpmodel_mode:
            draft.put("match.power_mode", facts.tegra.nvpmodel_mode)
    else:
        draft.put("match.gpu_count", len(facts.gpus))
    if facts.gpus:
        draft.put("match.gpu_model", sorted({_glob(gpu.name) for gpu in facts.gpus}))
    total = facts.memory.total_bytes / GIB
    draft.put("match.ram_min_gib", max(0, math.floor(total) - 1))
    draft.put("match.ram_max_gib", min(4096, math.ceil(total) + 1))


def _power(draft: _Draft, facts: HostFacts, fanless: bool, cooling: str) -> None:
    kind = cpu_class(facts.cpu.model, facts.cpu.arch)
    cores = facts.cpu.physical_cores or facts.cpu.logical_cores
    cpu_w = round(kind.load_w_per_core * cores, 1)
    draft.put("power.cpu_load_w", cpu_w, f"{cores} cores x {kind.load_w_per_core:g} W, an "
              f"estimate for a {kind.name} CPU (the probe gives no TDP): confirm with the CPU's "
              "datasheet (PL2, PPT)")
    gpu_idle = round(sum(0.1 * (gpu.power_limit_w or 150.0) for gpu in facts.gpus), 1)
    idle = kind.idle_w + gpu_idle
    draft.put("power.idle_w", idle, f"{kind.idle_w:g} W, an estimate for a box with a "
              f"{kind.name} CPU" + (f", plus {gpu_idle:g} W for the GPUs idle (10 % of each "
                                    "card's power limit)" if facts.gpus else "")
              + ": measure it at the wall")
    cap, cap_source = _gpu_cap(facts.gpus, fanless, cooling)
    if cap is not None:
        draft.put("power.gpu_cap_w", cap, cap_source)
    gpu_w = sum(cap or gpu.power_limit_w or 0.0 for gpu in facts.gpus)
    full_w = round(idle + cpu_w + gpu_w, 1)
    draft.put("power.box_budget_w", 5 * math.ceil(full_w * 1.25 / 5), "the supply's rating "
              f"is not in the probe: the estimated full-load draw ({full_w:g} W: idle, every "
              "core busy, each GPU at its cap) plus 25 %, rounded up to 5 W; set it from the "
              "supply's label")


def _gpu_cap(gpus: tuple[GpuFacts, ...], fanless: bool, cooling: str) -> tuple[float | None, str]:
    if not gpus or any(gpu.power_limit_w is None for gpu in gpus):
        return None, ""  # no power readings (a vGPU): the cards keep their own limits
    lowest = min(gpu.power_limit_w or 0.0 for gpu in gpus)
    low = max(gpu.power_limit_min_w or 0.0 for gpu in gpus)
    high = min(gpu.power_limit_max_w or gpu.power_limit_w or 0.0 for gpu in gpus)
    if fanless and low:
        return low, (f"the card's lowest allowed limit {low:g} W (NVML "
                     f"nvmlDeviceGetPowerManagementLimitConstraints): {cooling}")
    cap = float(min(max(round(0.8 * lowest), low), high))
    return cap, (f"80 % of the card's enforced limit {lowest:g} W (NVML "
                 f"nvmlDeviceGetEnforcedPowerLimit), within its {low:g}-{high:g} W range "
                 "(nvmlDeviceGetPowerManagementLimitConstraints): decoding is limited by memory "
                 "bandwidth, so a lower cap costs little speed and much heat")


def _tjmax(facts: HostFacts) -> tuple[float, str]:
    """TjMax and where it comes from: coretemp's or k10temp's critical limit, else assumed."""
    for reading in facts.temperatures:
        if reading.source in ("coretemp", "k10temp") and reading.critical_c \
                and 60 <= reading.critical_c <= 125:
            return reading.critical_c, (f"TjMax {reading.critical_c:g} °C from "
                                        f"{reading.source} ({reading.label}, critical)")
    k10temp = any(reading.source == "k10temp" for reading in facts.temperatures)
    why = "k10temp reports no critical limit for this CPU" if k10temp else \
        "no coretemp or k10temp limit in the probe"
    return TJMAX_ASSUMED_C, (f"TjMax {TJMAX_ASSUMED_C:g} °C assumed ({why}; below every current "
                             "x86 part's, AMD Ryzen desktop: 95 °C; set it from the CPU's "
                             "datasheet)")


def _thermal(draft: _Draft, facts: HostFacts, fanless: bool, cooling: str) -> None:
    tjmax, origin = _tjmax(facts)
    for level, offset in zip(LEVELS, _CPU_OFFSETS_C[fanless], strict=True):
        draft.put(f"thermal.cpu_{level}_c", tjmax - offset, f"{origin}, minus {offset:g} °C "
                  f"({cooling})")
    if facts.gpus:
        levels, sources = _card_levels(facts.gpus)
        for key, value in levels.items():
            draft.put(f"thermal.{key}", value, sources[f"thermal.{key}"])
    elif facts.tegra is not None:
        for level, offset in zip(LEVELS, _CPU_OFFSETS_C[fanless], strict=True):
            draft.put(f"thermal.gpu_{level}_c", tjmax - offset, "the Jetson's GPU shares the "
                      f"SoC, so the CPU's level: {origin}, minus {offset:g} °C")
    draft.put("thermal.rated_ambient_c", 35, "not in the probe: 35 °C assumed, an office PC's "
              "rating; set the box's rated cabinet temperature from its datasheet")
    virtual = facts.cpu.has("hypervisor")
    draft.put("thermal.sensors_expected", not virtual, "a virtual machine: the host manages "
              "its heat" if virtual else None)


def _card_levels(gpus: tuple[GpuFacts, ...], prefix: str = "") -> tuple[dict[str, float],
                                                                        dict[str, str]]:
    """GPU levels from the coolest-rated card's slowdown temperature, and their sources."""
    known = [gpu.temp_slowdown_c for gpu in gpus if gpu.temp_slowdown_c is not None
             and 60 <= gpu.temp_slowdown_c <= 125]
    limits, base, source = card_gpu_limits(min(known) if known else None)
    levels = {f"gpu_{level}_c": getattr(limits, level) for level in LEVELS}
    return levels, {f"thermal.{key}": f"{prefix}{source}, minus {base - value:g} °C"
                    for key, value in levels.items()}


def _memory(draft: _Draft, facts: HostFacts) -> None:
    total = facts.memory.total_bytes / GIB
    reserve = max(1.0, math.ceil(total * 0.2 * 2) / 2)
    draft.put("memory.reserved_ram_gib", reserve, f"20 % of the {total:.1f} GiB of RAM (at least "
              "1 GiB), rounded up to 0.5 GiB: kept for the OS and the plant's software (HMI, "
              "historian); measure what they use")
    draft.put("memory.min_free_disk_gib", 8, "default: room for logs, the database and a second "
              "model during an update")


def _model(draft: _Draft, facts: HostFacts, fanless: bool, cooling: str) -> None:
    on_gpu = bool(facts.gpus) or facts.tegra is not None
    draft.put("model.allowed_quantizations", _GPU_QUANTS if on_gpu else _CPU_QUANTS,
              "4- to 8-bit types" + (" and F16 (a GPU holds the weights)" if on_gpu else
                                     ", which a CPU decodes at a usable speed"))
    context = 16384 if on_gpu else 4096 if fanless else 8192
    draft.put("model.max_context", context, f"{context} tokens: " + (
        "a GPU reads long prompts quickly" if on_gpu else
        "a long prompt keeps every core busy for minutes" + (" and heats a passive case"
                                                              if fanless else "")))
    cores = facts.cpu.physical_cores or facts.cpu.logical_cores
    if fanless:
        cap = max(1, cores // 2)
        why = f"half the {cores} cores, to hold the heat a passive case must shed ({cooling})"
    else:
        cap = max(1, cores - max(1, cores // 4))
        why = f"{cores} cores less {cores - cap} for the plant's software"
    draft.put("model.thread_cap", cap, why)


# --- the TOML file -----------------------------------------------------------------------------
_SECTION_ORDER = ("profile", "match", "power", "thermal", "memory", "model", "thermal_model")


def profile_toml(profile: Profile, facts: HostFacts, written_at: str) -> str:
    """The profile as a firmware_profiles/*.toml file: figures first, their sources last."""
    lines = [
        f"# Derived by `gemba install profile new` from the probe of {facts.hostname}, "
        f"{written_at}.",
        "# Every figure is an estimate or a default; [profile.sources] at the end says where "
        "each",
        "# comes from. Check them against the vendor's data (datasheet, power supply label,",
        "# cabinet rating), then set derived = false. Keep the file in firmware_profiles/ to ship",
        "# it with Gemba, or use it now: gemba install plan --profile PATH.toml",
    ]
    data = profile.model_dump(exclude_none=True)
    sources = data["profile"].pop("sources")
    for section in _SECTION_ORDER:
        values = {k: v for k, v in data.get(section, {}).items() if v != []}
        if values:
            lines += ["", f"[{section}]", *(f"{key} = {_toml(value)}" for key, value
                                           in values.items())]
    if sources:
        lines += ["", "[profile.sources]", *(f"{_toml(key)} = {_toml(source)}" for key, source
                                             in sources.items())]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # A JSON string or list of strings is a TOML one too, once DEL is escaped as TOML wants.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
