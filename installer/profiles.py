"""Firmware profiles: one TOML per box model and power mode, validated strictly, matched to a probe.

A profile says how to recognise the box and what budgets it must stay inside. A bad profile is an
error that names the file, the key and what is allowed; nothing from it is used.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from appliance.config import check_thresholds
from appliance.errors import ConfigError
from appliance.hardware.facts import HostFacts

# The shipped profiles sit beside this package: in a source checkout that is the project's own
# firmware_profiles/; a wheel installs the same folder beside `installer` in site-packages
# (pyproject.toml lists it as package data), so one rule finds them in both. Not through
# importlib.resources: the folder is a namespace package there, and a second copy on sys.path
# (a checkout next to an installed wheel) would be merged into one listing.
PROFILES_DIR = Path(__file__).resolve().parent.parent / "firmware_profiles"
QUANTIZATIONS = ("F16", "BF16", "Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0", "Q4_K", "Q4_1", "Q4_0",
                 "Q3_K", "Q2_K", "IQ4_NL", "IQ4_XS")


class _Strict(BaseModel):
    # strict: "25" is not 25 W and true is not 1 thread; a profile says what it means.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True,
                              strict=True)


class About(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")
    """Profile id, the file name without .toml."""
    description: str = Field(min_length=3)
    """What box and power mode this is, as an engineer would say it."""
    derived: bool = False
    """True for a profile derived from a probe (`gemba install profile new`) whose figures
    nobody has confirmed with the vendor's data yet: every plan on it says so."""
    sources: dict[str, str] = {}
    """Where a figure comes from, by key ("thermal.cpu_critical_c" = "TjMax 100 °C from
    coretemp ..."): shown with the plan and kept in the install report."""

    @field_validator("sources")
    @classmethod
    def _known_keys(cls, sources: dict[str, str]) -> dict[str, str]:
        for key, source in sources.items():
            section, _, field = key.partition(".")
            model = _SECTIONS.get(section)
            if model is None or field not in model.model_fields or field == "sources":
                raise ValueError(f"'{key}' names no profile key (write it as section.key, "
                                 "e.g. thermal.cpu_critical_c)")
            if not source.strip():
                raise ValueError(f"'{key}': say where the figure comes from")
        return sources


class Match(_Strict):
    cpu_model: list[str] = []
    """Glob patterns for the CPU model string (any may match); empty: any CPU."""
    gpu_model: list[str] = []
    """Glob patterns for NVIDIA GPU names (every GPU must match one); empty: no GPU required."""
    gpu_count: int | None = Field(None, ge=0, le=16)
    """Exact number of NVIDIA GPUs, when it identifies the box."""
    board_model: list[str] = []
    """Glob patterns for the board (Jetson device-tree model)."""
    power_mode: str | None = None
    """Jetson nvpmodel mode name (e.g. "15W"), when the profile is for one mode."""
    cpu_flags: list[str] = []
    """Flags the CPU must have (e.g. "hypervisor" for virtual machines)."""
    ram_min_gib: float = Field(0, ge=0, le=4096)
    """Smallest installed RAM for this box."""
    ram_max_gib: float = Field(4096, gt=0, le=4096)
    """Largest installed RAM for this box."""

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.ram_min_gib > self.ram_max_gib:
            raise ValueError("ram_min_gib must not exceed ram_max_gib")
        return self


class Power(_Strict):
    box_budget_w: float = Field(gt=0, le=5000)
    """Most the whole box may draw from its supply, in watts."""
    idle_w: float = Field(ge=0, le=2000)
    """What the box draws idle, in watts (spec sheet or measured)."""
    cpu_load_w: float = Field(ge=0, le=2000)
    """Extra draw with every CPU core busy, in watts."""
    gpu_cap_w: float | None = Field(None, gt=0, le=1000)
    """Power limit to set on each NVIDIA GPU, in watts; unset: leave the card's limit."""

    @model_validator(mode="after")
    def _fits(self) -> Self:
        if self.idle_w >= self.box_budget_w:
            raise ValueError("idle_w must be below box_budget_w")
        return self


class Thermal(_Strict):
    cpu_careful_c: float = Field(ge=20, le=125)
    """CPU temperature where the governor starts to slow down, °C."""
    cpu_warning_c: float = Field(ge=20, le=125)
    """CPU temperature where new requests wait, °C."""
    cpu_critical_c: float = Field(ge=20, le=125)
    """CPU temperature where generation stops, °C."""
    gpu_careful_c: float | None = Field(None, ge=20, le=125)
    gpu_warning_c: float | None = Field(None, ge=20, le=125)
    gpu_critical_c: float | None = Field(None, ge=20, le=125)
    rated_ambient_c: float = Field(ge=-40, le=85)
    """Highest cabinet air temperature the box is rated for, °C."""
    sensors_expected: bool = True
    """False for boxes without readable sensors by design (VMs): the governor then trusts the
    host instead of slowing down as a precaution."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        check_thresholds(self, "cpu", required=True)
        check_thresholds(self, "gpu", required=False)
        return self


class Memory(_Strict):
    reserved_ram_gib: float = Field(ge=0, le=1024)
    """RAM kept free for the plant's other software (HMI, historian, OS)."""
    min_free_disk_gib: float = Field(ge=0, le=10_000)
    """Free disk that must remain after the model is installed."""


class ModelLimits(_Strict):
    allowed_quantizations: list[str] = Field(min_length=1)
    """Weight types this box may run (e.g. Q4_K, Q8_0); others are refused."""
    max_context: int = Field(ge=256, le=1_048_576)
    """Largest context window the plan may choose, in tokens."""
    thread_cap: int = Field(ge=1, le=512)
    """Most CPU threads inference may use (leave cores for the plant's software)."""

    @field_validator("allowed_quantizations")
    @classmethod
    def _known(cls, values: list[str]) -> list[str]:
        unknown = [q for q in values if q not in QUANTIZATIONS]
        if unknown:
            raise ValueError(f"unknown quantizations {unknown}; allowed: {list(QUANTIZATIONS)}")
        return values


class ThermalModelParams(_Strict):
    """An RC model of the hottest component, for the governor's simulation and tuning."""

    component: Literal["cpu", "gpu"]
    """Which thresholds the model is judged against."""
    r_c_per_w: float = Field(gt=0, le=50)
    """Thermal resistance from the component to the cabinet air, °C per watt."""
    c_j_per_c: float = Field(gt=0, le=100_000)
    """Thermal capacitance of the component and its heatsink, joules per °C."""
    idle_w: float = Field(ge=0, le=2000)
    """Heat from the component when idle, watts."""
    load_w: float = Field(gt=0, le=2000)
    """Extra heat at full inference load, watts."""
    full_tok_per_s: float = Field(100.0, gt=0, le=100_000)
    """Decode rate at full duty (for the simulation's throughput figures)."""


_SECTIONS: dict[str, type[BaseModel]] = {
    "profile": About, "match": Match, "power": Power, "thermal": Thermal, "memory": Memory,
    "model": ModelLimits, "thermal_model": ThermalModelParams}


class Profile(_Strict):
    profile: About
    match: Match
    power: Power
    thermal: Thermal
    memory: Memory
    model: ModelLimits
    thermal_model: ThermalModelParams | None = None

    @property
    def name(self) -> str:
        return self.profile.name


@dataclass(frozen=True)
class MatchResult:
    profile: Profile
    score: int
    reasons: tuple[str, ...]


def load_profile(path: Path) -> Profile:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"firmware profile {path}: cannot read it: {exc}",
                          "fix the file; firmware_profiles/README.md describes the format") from exc
    try:
        profile = Profile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"firmware profile {path}: " + "; ".join(
            _describe(error) for error in exc.errors()),
            "fix the key named above; firmware_profiles/README.md lists every key, its unit "
            "and range") from exc
    if profile.name != path.stem:
        raise ConfigError(f"firmware profile {path}: key 'profile.name' is '{profile.name}' but "
                          f"the file is named {path.name}",
                          f"rename the file to {profile.name}.toml or change the name")
    return profile


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    if error["type"] == "missing":
        return f"missing key '{key}'"
    return f"key '{key}': {error['msg']} (got {error.get('input')!r})"


def load_profiles(folder: Path = PROFILES_DIR) -> list[Profile]:
    """Every profile in the folder; the first bad one stops the load (no half-applied set)."""
    return [load_profile(path) for path in sorted(folder.glob("*.toml"))]


def find_profile(name: str, folder: Path = PROFILES_DIR) -> Profile:
    """A shipped profile by name, or any profile file by its path (NAME.toml, e.g. one that
    `gemba install profile new` wrote and the engineer reviewed)."""
    if name.endswith(".toml"):
        if not Path(name).is_file():
            raise ConfigError(f"firmware profile file {name} not found",
                              "give the path of a .toml profile, or a shipped profile's name")
        return load_profile(Path(name))
    path = folder / f"{name}.toml"
    if not path.is_file() or "/" in name or name.startswith("."):
        known = ", ".join(p.stem for p in sorted(folder.glob("*.toml")))
        raise ConfigError(f"no firmware profile named '{name}' in {folder}",
                          f"choose one of: {known}")
    return load_profile(path)


def match(profile: Profile, facts: HostFacts) -> MatchResult | None:
    """How well the profile fits the box (None: it does not), and why."""
    rule, reasons, score = profile.match, [], 0
    ram_gib = facts.memory.total_bytes / 2**30
    if not rule.ram_min_gib <= ram_gib <= rule.ram_max_gib:
        return None
    if rule.cpu_model:
        if not _any_glob(facts.cpu.model, rule.cpu_model):
            return None
        reasons.append(f"CPU '{facts.cpu.model}'")
        score += 2
    if rule.board_model:
        board = facts.tegra.model if facts.tegra else None
        if not board or not _any_glob(board, rule.board_model):
            return None
        reasons.append(f"board '{board}'")
        score += 3
    if rule.power_mode is not None:
        mode = facts.tegra.nvpmodel_mode if facts.tegra else None
        if mode != rule.power_mode:
            return None
        reasons.append(f"power mode {mode}")
        score += 2
    gpus = facts.gpus
    if rule.gpu_count is not None:
        if len(gpus) != rule.gpu_count:
            return None
        score += 1
    if rule.gpu_model:
        if not gpus or not all(_any_glob(gpu.name, rule.gpu_model) for gpu in gpus):
            return None
        reasons.append("GPU " + ", ".join(gpu.name for gpu in gpus))
        score += 3
    missing_flags = [flag for flag in rule.cpu_flags if not facts.cpu.has(flag)]
    if missing_flags:
        return None
    if rule.cpu_flags:
        reasons.append("CPU flags " + ", ".join(rule.cpu_flags))
        score += 1
    reasons.append(f"{ram_gib:.1f} GiB RAM within {rule.ram_min_gib:g}-{rule.ram_max_gib:g}")
    return MatchResult(profile, score, tuple(reasons))


def best_match(profiles: list[Profile], facts: HostFacts) -> MatchResult | None:
    results = [r for r in (match(p, facts) for p in profiles) if r is not None]
    return max(results, key=lambda r: r.score, default=None)


def _any_glob(text: str, patterns: list[str]) -> bool:
    lowered = text.lower()
    return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in patterns)


def sourced_figures(profile: Profile) -> dict[str, tuple[Any, str]]:
    """Each figure the profile names a source for: key -> (value, where it comes from)."""
    figures = {}
    for key, source in profile.profile.sources.items():
        section, _, field = key.partition(".")
        part = getattr(profile, section)
        figures[key] = (getattr(part, field) if part is not None else None, source)
    return figures


def budget_reason(profile: Profile, key: str) -> str:
    """Why a [budgets] key has its value: the profile, and the figure's source if it names one."""
    section = {"mem_reserve_bytes": "memory.reserved_ram_gib",
               "box_power_w": "power.box_budget_w"}.get(key, f"thermal.{key}")
    source = profile.profile.sources.get(section)
    derived = " (derived from the probe: confirm with the vendor's data)" \
        if profile.profile.derived else ""
    return f"from firmware profile {profile.name}{derived}" + (f": {source}" if source else "")


def budget_table(profile: Profile) -> dict[str, Any]:
    """The profile's limits as the [budgets] config section the governor reads."""
    thermal = profile.thermal
    table: dict[str, Any] = {
        "cpu_careful_c": thermal.cpu_careful_c, "cpu_warning_c": thermal.cpu_warning_c,
        "cpu_critical_c": thermal.cpu_critical_c,
        "mem_reserve_bytes": int(profile.memory.reserved_ram_gib * 2**30),
        "sensors_expected": thermal.sensors_expected,
        "box_power_w": profile.power.box_budget_w,
    }
    if thermal.gpu_careful_c is not None:
        table.update(gpu_careful_c=thermal.gpu_careful_c, gpu_warning_c=thermal.gpu_warning_c,
                     gpu_critical_c=thermal.gpu_critical_c)
    return table
