"""`gemba install apply`: the side effects, in an order that never leaves a half-installed box.

1. verify the source model's sha256, before anything parses it   (nothing changed yet)
2. stage: copy to a hidden temp file, hashing while copying, fsync
3. burn-in with the planned settings on the staged file
4. commit: rename the model into place, write the manifest and the config atomically
5. record: database initialised, report stored and written as JSON and text, unit written

An interruption or failure before step 4 leaves the previous config and model as they were; the
staged file is removed (or, after a power cut, by the next apply).
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomlkit

from appliance.audit_context import config_sha256
from appliance.config import Paths, load_settings, validate_settings
from appliance.errors import ModelIntegrityError
from appliance.fileio import write_atomic
from appliance.hardware.facts import HostFacts
from appliance.inference.factory import engine_config as make_engine_config
from appliance.inference.factory import system_prompts
from appliance.inference.protocol import EngineConfig
from appliance.models import (
    MANIFEST,
    CatalogEntry,
    load_catalog,
    manifest_text,
    package_folder,
    sha256_file,
    size_note,
)
from appliance.store import open_store
from appliance.store.reports import add_report
from installer.burnin import BurnInResult
from installer.gguf_info import needed_file_bytes
from installer.plan import Plan
from installer.profiles import Profile, budget_reason, budget_table
from installer.systemd import unit_text

_CHUNK = 4 << 20
_PLANNED_KEYS = ("n_threads", "n_ctx", "n_parallel", "n_gpu_layers", "n_batch", "n_ubatch",
                 "kv_cache_type", "flash_attn", "use_mmap", "use_mlock", "gpu_power_cap_w")

Bytes = Callable[[int, int], None]
"""Progress of a byte-long step: (done, total)."""


@dataclass(frozen=True)
class ModelSource:
    """The model to install: a catalog entry and the file it comes from."""

    entry: CatalogEntry
    path: Path

    @property
    def in_package(self) -> bool:
        """The file is the one its Python package ships (the embedded default): no copy."""
        package_dir = package_folder(self.entry)
        return package_dir is not None and self.path.resolve().is_relative_to(package_dir)


def clean_leftovers(paths: Paths) -> list[Path]:
    """Remove temp files a power cut left behind (staged models, half-written configs)."""
    removed = []
    for folder, pattern in ((paths.models_dir, ".*.partial"),
                            (paths.config_file.parent, f".{paths.config_file.name}.*.tmp")):
        for leftover in folder.glob(pattern) if folder.is_dir() else ():
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


def verify_source(source: ModelSource, progress: Bytes | None) -> None:
    verify_file(source.path, source.entry.sha256, source.entry.size_bytes, progress)


def verify_file(path: Path, sha256: str, size_bytes: int | None, progress: Bytes | None) -> None:
    """The file's sha256 is `sha256`, or ModelIntegrityError with both hashes and the sizes."""
    try:
        actual = sha256_file(path, progress)
    except OSError as exc:
        raise ModelIntegrityError(f"{path} cannot be read: {exc.strerror or exc}; nothing was "
                                  "changed", "check the file and the medium it is on") from exc
    if actual != sha256:
        raise ModelIntegrityError(
            f"{path} failed its integrity check: expected sha256 {sha256}, got {actual}; "
            f"{_sizes(path, size_bytes)}; nothing was changed",
            "copy the model from the install medium again, or check the --sha256 you gave")


def _sizes(path: Path, size_bytes: int | None) -> str:
    """What the sizes say: the catalog's, else the one the file's own GGUF header implies."""
    actual = path.stat().st_size
    if size_bytes is not None:
        return size_note(actual, size_bytes)
    needed = needed_file_bytes(path)
    if needed is not None and actual < needed:
        return (f"the file has {actual:,} bytes, but its GGUF header lists tensor data up to "
                f"byte {needed:,}: it is truncated (an interrupted copy?)")
    return size_note(actual, None)


def stage(source: ModelSource, paths: Paths, progress: Bytes | None) -> Path:
    """The model where the daemon will load it from; copied to a hidden temp file if needed."""
    if source.in_package:
        return source.path
    final = paths.models_dir / source.entry.file
    if final.exists() and final.resolve() == source.path.resolve():
        return final
    paths.models_dir.mkdir(parents=True, exist_ok=True)
    staged = paths.models_dir / f".{source.entry.file}.partial"
    digest, done, total = hashlib.sha256(), 0, source.path.stat().st_size
    try:
        with source.path.open("rb") as reader, staged.open("wb") as writer:
            while chunk := reader.read(_CHUNK):
                writer.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
            writer.flush()
            os.fsync(writer.fileno())
        if digest.hexdigest() != source.entry.sha256:
            raise ModelIntegrityError(f"the copy of {source.path} in {paths.models_dir} does not "
                                      f"match sha256 {source.entry.sha256}",
                                      "check the disk for errors, then run apply again")
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged


def engine_config(source: ModelSource, model_path: Path, plan: Plan, profile: Profile,
                  paths: Paths) -> EngineConfig:
    """The engine the daemon will run once this plan is written: built from the very config
    text `commit` writes, through the daemon's own factory, so the burn-in runs the same
    settings (stream interval included) and not a copy of them."""
    text = planned_config(paths.config_file, source.entry.id, plan, profile)
    settings = validate_settings(tomllib.loads(text), paths.config_file)
    return make_engine_config(settings.model, settings.generation, source.entry.id, model_path,
                              source.entry.sha256, system_prompts=system_prompts(settings))


def commit(source: ModelSource, staged: Path, paths: Paths, plan: Plan, profile: Profile) -> Path:
    """Put the model and the config in place; each file switches atomically."""
    final = staged
    if staged.name.endswith(".partial"):
        final = paths.models_dir / source.entry.file
        os.replace(staged, final)
        _fsync_dir(paths.models_dir)
    if source.entry.id not in load_catalog(None):
        installed = [e for e in load_catalog(paths.models_dir).values()
                     if e.source == "folder" and e.id != source.entry.id]
        write_atomic(paths.models_dir / MANIFEST, manifest_text([*installed, source.entry]))
    text = planned_config(paths.config_file, source.entry.id, plan, profile)
    validate_settings(tomllib.loads(text), paths.config_file)  # refuse before writing
    write_atomic(paths.config_file, text)
    return final


def planned_config(config_file: Path, model_id: str, plan: Plan, profile: Profile) -> str:
    """The existing config with the plan's [model] settings, [budgets] and [plan] record
    replaced. Everything else stays as the engineer wrote it, comments and order included."""
    try:
        document = tomlkit.parse(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        document = tomlkit.document()
    model = _table(document, "model")
    model["id"] = model_id
    reasons = {"model.id": f"installed by `gemba install apply` on profile {profile.name}"}
    for key in _PLANNED_KEYS:
        value = plan.value(key)
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value
        reasons[f"model.{key}"] = plan.settings[key].reason
    budgets = _table(document, "budgets")
    for key in [k for k in budgets if not k.startswith(("sample_", "telemetry_"))]:
        del budgets[key]  # the profile's budgets replace the old ones, not merge with them
    for key, value in budget_table(profile).items():
        budgets[key] = value
        reasons[f"budgets.{key}"] = budget_reason(profile, key)
    record = tomlkit.table()
    record["profile"] = profile.name
    record["planned_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    record["reasons"] = reasons
    document["plan"] = record
    return tomlkit.dumps(document)


def _table(document: tomlkit.TOMLDocument, name: str) -> Any:
    """The document's top-level table `name`, added at the end if it has none."""
    if name not in document:
        document[name] = tomlkit.table()
    return document[name]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_report(facts: HostFacts, profile: Profile, source: ModelSource, plan: Plan,
                 plan_dict: dict[str, Any], burn_in: BurnInResult | None,
                 burn_in_checks: list[dict[str, Any]], committed: bool,
                 error: str | None = None) -> dict[str, Any]:
    failed = [c for c in [*plan_dict["checks"], *burn_in_checks] if c["status"] == "fail"]
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "ok": committed and not failed and error is None,
        "committed": committed,
        "error": error,
        "host": {"hostname": facts.hostname, "cpu": facts.cpu.model,
                 "memory_total_bytes": facts.memory.total_bytes,
                 "gpus": [g.name for g in facts.gpus],
                 "jetson": facts.tegra.model if facts.tegra else None},
        "profile": profile.name,
        "model_id": source.entry.id,
        "model_sha256": source.entry.sha256,
        "plan": plan_dict,
        "burn_in": None if burn_in is None else
        {k: v for k, v in asdict(burn_in).items() if k != "rates"},
        "burn_in_checks": burn_in_checks,
    }


def record(paths: Paths, report: dict[str, Any]) -> tuple[Path, Path]:
    """Store the report in the database, audited with the hash of the config the apply left,
    and write it as JSON and text next to the data."""
    report_id = add_report(open_store(paths.db_file), report,
                           config_sha256(load_settings(paths.config_file)))
    folder = paths.data_dir / "reports"
    stamp = report["created_at"].replace(":", "").replace("-", "")
    json_path = folder / f"install-{stamp}-{report_id}.json"
    text_path = json_path.with_suffix(".txt")
    write_atomic(json_path, json.dumps(report, indent=2, ensure_ascii=False, default=str))
    write_atomic(text_path, "\n".join(report_lines(report)) + "\n")
    return json_path, text_path


def report_lines(report: dict[str, Any]) -> list[str]:
    burn = report.get("burn_in") or {}
    lines = [
        f"Gemba install report  {report['created_at']}",
        f"Result: {'OK' if report['ok'] else 'NOT OK'}"
        + ("" if report["committed"] else " (nothing was changed)"),
        f"Box: {report['host']['hostname']}, {report['host']['cpu']}",
        f"Profile: {report['profile']}   Model: {report['model_id']}",
    ]
    if report.get("error"):
        lines.append(f"Error: {report['error']}")
    lines.append("Settings:")
    for key, choice in report["plan"]["settings"].items():
        lines.append(f"  {key} = {choice['value']}  ({choice['reason']})")
    lines.append("Checks:")
    for check in [*report["plan"]["checks"], *report["burn_in_checks"]]:
        lines.append(f"  {check['status'].upper():<4}  {check['name']}: {check['message']}")
    if burn:
        lines.append(f"Burn-in: {burn['duration_s']} s, {burn['answers']} answers, "
                     f"{burn['tok_per_s_median']} tok/s median, {burn['tok_per_s_p5']} tok/s p5, "
                     f"TTFT {burn['ttft_s_median']} s, peak RSS "
                     f"{(burn['peak_rss_bytes'] or 0) / 2**20:.0f} MiB")
    return lines


def write_unit(unit_dir: Path, paths: Paths, model_path: Path, plan: Plan) -> Path:
    memory_max = int(plan.memory.ram_bytes * 1.5) + 256 * 2**20
    text = unit_text(paths, model_path, memory_max, bool(plan.value("use_mlock")), None,
                     plan.value("n_gpu_layers") > 0)
    target = unit_dir / "gemba.service"
    write_atomic(target, text)
    return target
