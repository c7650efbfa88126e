"""Settings from one TOML file, with a default for everything, and the paths the appliance uses.

Paths: everything under `GEMBA_HOME` when it is set (one folder per appliance, easy to back up);
otherwise the XDG base directories. Unknown keys and wrong types are errors that name the file
and the key. Each field's docstring is its documentation (`gemba config show` prints it).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from appliance.errors import ConfigError

DEFAULT_MODEL_ID = "smollm2-135m-instruct-q4_1"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class DaemonSettings(_Section):
    host: str = "127.0.0.1"
    """Address the API listens on. Loopback by default; a LAN address needs api_key."""
    port: int = Field(8765, ge=1, le=65535)
    """TCP port of the API."""
    idle_timeout_s: float = Field(1800.0, ge=0, allow_inf_nan=False)
    """A daemon started by `gemba ask`/`console` stops after this many idle seconds (0: never)."""
    max_queue: int = Field(8, ge=0, le=1000)
    """Requests that may wait for the engine; more get 429 with Retry-After."""
    max_body_bytes: int = Field(1_000_000, ge=1024)
    """Largest request body accepted; larger ones get 413 before parsing."""
    api_key: str | None = None
    """Key clients must send as `Authorization: Bearer …` (required off loopback)."""
    allowed_hosts: list[str] = Field(default_factory=list, max_length=64)
    """Names or addresses clients may address the box by, besides loopback and `host`
    (e.g. ["gemba-line3.plant.local", "192.168.10.20"]); requests to any other name get 403,
    which stops DNS rebinding from a web page."""
    allowed_origins: list[str] = Field(default_factory=list, max_length=64)
    """Web front ends (scheme://host:port) whose pages may call the API from a browser;
    empty: no cross-origin browser request is served."""
    disk_warning_bytes: int = Field(1_073_741_824, ge=0)
    """Free space on the data disk below which /healthz, `gemba status` and the console warn
    that storage is filling up (0: never); writes fail only when the disk is full."""


class ModelSettings(_Section):
    id: str = DEFAULT_MODEL_ID
    """Catalog id of the model the daemon loads (`gemba models` lists them)."""
    n_ctx: int = Field(2048, ge=128, le=1_048_576)
    """Context window in tokens (prompt plus answer) of each answer slot."""
    n_parallel: int = Field(4, ge=1, le=64)
    """Answers decoded at once, in one batch: each slot holds its own n_ctx of KV cache (and
    keeps its conversation for the next turn); more requests wait in the queue. The installer
    plans it from memory."""
    n_threads: int | None = Field(None, ge=1, le=1024)
    """CPU threads for decoding; unset means one per physical core."""
    n_batch: int = Field(512, ge=1, le=65536)
    """Tokens evaluated per batch while reading the prompt."""
    n_gpu_layers: int = Field(0, ge=-1)
    """Layers offloaded to the GPU (0: CPU only, -1: all)."""
    n_ubatch: int = Field(512, ge=1, le=65536)
    """Micro-batch: tokens computed at once; the compute buffer grows with it."""
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = "f16"
    """KV cache element type; q8_0 and q4_0 halve or quarter it and need flash_attn."""
    flash_attn: bool = True
    """Use flash attention: llama.cpp's own choice on CPU and GPU, faster there, and needed for
    a quantized KV cache."""
    use_mmap: bool = True
    """Map the model file instead of reading it into private memory."""
    use_mlock: bool = False
    """Lock the model in RAM (needs LimitMEMLOCK for the service)."""
    gpu_power_cap_w: float | None = Field(None, gt=0, le=1000)
    """Power limit for each NVIDIA GPU, planned by the installer (enforced by the governor)."""

    @model_validator(mode="after")
    def _quantized_cache_needs_flash(self) -> ModelSettings:
        if self.kv_cache_type != "f16" and not self.flash_attn:
            raise ValueError(f"kv_cache_type = \"{self.kv_cache_type}\" needs flash_attn = true")
        return self


class GenerationSettings(_Section):
    max_tokens: int = Field(512, ge=1)
    """Answer length when a request does not say."""
    max_tokens_limit: int = Field(2048, ge=1)
    """Largest answer a request may ask for; larger requests are clamped to this."""
    stream_interval_ms: float = Field(50.0, ge=0.0, le=1000.0)
    """Tokens that come faster than this are streamed together (0: every token on its own).
    50, by measurement (bench/results/decode.json): sent one by one, the daemon's wake-ups took
    13% of the decode rate from llama.cpp on 2 cores; 20 pieces a second still read as a
    smooth stream, and the first token is never held back."""
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    """Sampling temperature when a request does not say (low: steady, factual answers)."""
    repeat_penalty: float = Field(1.1, ge=1.0, le=2.0)
    """Penalty on tokens already in the answer's last penalty_last_n tokens (1: off). 1.1, by
    measurement (bench/results/repetition.json): answers that ran to the limit in a loop fell
    from 23% to 1% (en, zh, ja), and a 256-token list was still written in full; 1.15 and
    frequency 0.3 cut that list short."""
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    """OpenAI's frequency_penalty when a request does not say (0: off; it cut lists short)."""
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    """OpenAI's presence_penalty when a request does not say (0: off)."""
    penalty_last_n: int = Field(64, ge=0, le=4096)
    """How many of the answer's latest tokens the penalties look at (0: penalties off)."""
    @model_validator(mode="after")
    def _default_within_limit(self) -> GenerationSettings:
        if self.max_tokens > self.max_tokens_limit:
            raise ValueError(f"max_tokens ({self.max_tokens}) is above max_tokens_limit "
                             f"({self.max_tokens_limit})")
        return self

    system_prompt: str = (
        "You are Gemba, an assistant for plant operators and engineers. "
        "Answer briefly and precisely. If you are not sure, say so."
    )
    """Instruction placed before every conversation."""


def check_thresholds(owner: Any, part: str, required: bool) -> None:
    """`{part}_careful_c < {part}_warning_c < {part}_critical_c`, all three or (if not
    `required`) none: shared by the [budgets] config and the firmware profiles."""
    values = [getattr(owner, f"{part}_{level}_c") for level in ("careful", "warning", "critical")]
    if all(v is None for v in values) and not required:
        return
    if any(v is None for v in values):
        raise ValueError(f"give all three {part} thresholds or none")
    if not values[0] < values[1] < values[2]:
        raise ValueError(f"{part}_careful_c < {part}_warning_c < {part}_critical_c must hold "
                         f"(got {values[0]}, {values[1]}, {values[2]})")


class BudgetSettings(_Section):
    """Limits the governor enforces; `gemba install apply` copies them from the profile."""

    cpu_careful_c: float = Field(75.0, ge=20, le=125)
    """CPU temperature where answers start to slow down, °C."""
    cpu_warning_c: float = Field(85.0, ge=20, le=125)
    """CPU temperature where new requests wait, °C."""
    cpu_critical_c: float = Field(95.0, ge=20, le=125)
    """CPU temperature where generation stops, °C."""
    gpu_careful_c: float | None = Field(None, ge=20, le=125)
    """GPU temperature where answers start to slow down, °C (unset: GPU not governed)."""
    gpu_warning_c: float | None = Field(None, ge=20, le=125)
    """GPU temperature where new requests wait, °C."""
    gpu_critical_c: float | None = Field(None, ge=20, le=125)
    """GPU temperature where generation stops, °C."""
    box_power_w: float | None = Field(None, gt=0, le=5000)
    """Power budget checked against a measured box input (Jetson VDD_IN), watts."""
    mem_reserve_bytes: int = Field(0, ge=0)
    """Available RAM below this pauses new requests (the plant's other software needs it)."""
    sensors_expected: bool = False
    """Whether missing temperature sensors mean trouble (slow down as a precaution). Set from
    the firmware profile by `gemba install apply`; before commissioning the host is trusted."""
    sample_interval_s: float = Field(1.0, ge=0.1, le=60)
    """Telemetry sampling period, seconds."""
    telemetry_raw_hours: float = Field(24.0, ge=1, le=720)
    """Per-second samples are kept this long, then only per-minute summaries."""
    telemetry_minute_days: float = Field(30.0, ge=1, le=365)
    """Per-minute summaries are kept this long, then only per-hour summaries (kept a year)."""

    @model_validator(mode="after")
    def _ordered(self) -> BudgetSettings:
        check_thresholds(self, "cpu", required=True)
        check_thresholds(self, "gpu", required=False)
        return self


class ConsoleSettings(_Section):
    kiosk: bool = False
    """Lock the operator console: it cannot be quit to a shell (Ctrl+Q does nothing)."""
    lang: Literal["en", "zh", "ja"] = "en"
    """The console's language when `gemba console` is not given --lang."""


class KnowledgeSettings(_Section):
    """The plant's documents (`gemba docs import`), and how answers rely on them."""

    mode: Literal["grounded", "off"] = "grounded"
    """grounded: once documents are imported, every question is answered from them, with
    citations, or refused with "no basis"; off: plain chat with the model alone."""
    locale: Literal["zh", "ja", "en"] = "en"
    """The plant's language: decides which legacy encoding is tried first for text files
    (zh: GB18030 before Shift_JIS; ja: Shift_JIS and EUC-JP before GB18030)."""
    max_file_bytes: int = Field(50_000_000, ge=1024, le=2_000_000_000)
    """Largest document file accepted by an import; larger files are refused, others go on."""


class PlanRecord(_Section):
    profile: str | None = None
    """Firmware profile the installer planned for (unset: not commissioned)."""
    planned_at: str | None = None
    """When `gemba install apply` wrote this plan (UTC)."""
    reasons: dict[str, str] = {}
    """Why the installer chose each setting, by key."""


class Settings(_Section):
    daemon: DaemonSettings = DaemonSettings()
    model: ModelSettings = ModelSettings()
    generation: GenerationSettings = GenerationSettings()
    budgets: BudgetSettings = BudgetSettings()
    console: ConsoleSettings = ConsoleSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    plan: PlanRecord = PlanRecord()


@dataclass(frozen=True)
class Paths:
    """Where the appliance keeps its files."""

    config_file: Path
    data_dir: Path
    models_dir: Path
    run_dir: Path
    log_dir: Path

    @property
    def db_file(self) -> Path:
        return self.data_dir / "gemba.db"

    @property
    def daemon_state_file(self) -> Path:
        return self.run_dir / "daemon.json"

    @property
    def daemon_start_error_file(self) -> Path:
        return self.run_dir / "daemon-start-error.json"

    @property
    def daemon_log_file(self) -> Path:
        return self.log_dir / "daemon.log"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Paths:
        env = os.environ if environ is None else environ
        home = env.get("GEMBA_HOME")
        if home:
            root = Path(home).expanduser()
            paths = cls(root / "config.toml", root / "data", root / "models", root / "run",
                        root / "logs")
        else:
            user_home = Path(env.get("HOME", "~")).expanduser()
            config = Path(env.get("XDG_CONFIG_HOME") or user_home / ".config") / "gemba"
            data = Path(env.get("XDG_DATA_HOME") or user_home / ".local/share") / "gemba"
            state = Path(env.get("XDG_STATE_HOME") or user_home / ".local/state") / "gemba"
            paths = cls(config / "config.toml", data, data / "models", state / "run",
                        state / "logs")
        if env.get("GEMBA_CONFIG"):
            paths = cls(Path(env["GEMBA_CONFIG"]).expanduser(), paths.data_dir,
                        paths.models_dir, paths.run_dir, paths.log_dir)
        return paths

    def ensure(self) -> None:
        for folder in (self.data_dir, self.models_dir, self.run_dir, self.log_dir):
            folder.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class SettingRow:
    """One effective setting for `gemba config show`."""

    key: str
    value: Any
    source: str
    doc: str
    reason: str | None = None
    """Why the installer chose this value, when it did."""


def load_settings(config_file: Path) -> Settings:
    """Read the TOML file (missing file: all defaults) into validated settings."""
    return _validate(_read_toml(config_file), config_file)


def _read_toml(config_file: Path) -> dict[str, Any]:
    try:
        text = config_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {config_file}: {exc}",
                          "check the file's permissions and that it is UTF-8 text") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file} is not valid TOML: {exc}",
                          "fix the line named above; docs/configuration.md lists every key") from exc


def validate_settings(raw: dict[str, Any], config_file: Path) -> Settings:
    """Settings from already-parsed TOML data; errors name `config_file`."""
    return _validate(raw, config_file)


def _validate(raw: dict[str, Any], config_file: Path) -> Settings:
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        raise ConfigError(
            f"{config_file}: " + "; ".join(problems),
            "correct or remove the key; docs/configuration.md lists every key with its default",
        ) from exc


def _describe(error: Mapping[str, Any]) -> str:
    location = [str(part) for part in error["loc"]]
    key = ".".join(location)
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(location[:-1])
        return f"unknown key '{key}' (allowed here: {', '.join(allowed)})"
    return f"key '{key}': {error['msg']} (got {error.get('input')!r})"


def _allowed_keys(section_path: list[str]) -> list[str]:
    model: type[BaseModel] = Settings
    for part in section_path:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type) \
                or not issubclass(field.annotation, BaseModel):
            return sorted(model.model_fields)
        model = field.annotation
    return sorted(model.model_fields)


def effective_settings(settings: Settings, config_file: Path) -> list[SettingRow]:
    """Every leaf setting with its value and where it came from (the file or the default)."""
    raw = _read_toml(config_file)
    rows: list[SettingRow] = []
    for section_name in Settings.model_fields:
        section = getattr(settings, section_name)
        in_file = raw.get(section_name, {})
        for key, field in type(section).model_fields.items():
            source = f"file {config_file}" if key in in_file else "default"
            name = f"{section_name}.{key}"
            rows.append(SettingRow(name, getattr(section, key), source, field.description or "",
                                   settings.plan.reasons.get(name)))
    return rows
