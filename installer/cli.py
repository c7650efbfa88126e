"""`gemba install`: what a field engineer runs on a new box. Decisions live in plan.py."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

import click

from appliance.config import Paths, load_settings
from appliance.errors import ConfigError
from appliance.hardware.facts import HostFacts, from_dict, to_dict

GIB = 1 << 30
_MARK = {"pass": "PASS", "warn": "WARN", "fail": "FAIL"}


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange without NaN and infinity: NaN passes every bound (a comparison with
    NaN is always false), and infinity every missing one."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number in the range {self._describe_range()}.",
                      param, ctx)
        return number


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _facts(hardware: Path | None) -> HostFacts:
    if hardware is None:
        from appliance.hardware.probe import probe

        return probe(Paths.from_env().data_dir)
    try:
        return from_dict(HostFacts, json.loads(hardware.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{hardware} is not a recorded probe: {exc}",
                          "record one with `gemba install probe --json > box.json`") from exc


def _model_path(model: str) -> Path:
    from appliance.models import load_catalog, resolve

    models_dir = Paths.from_env().models_dir
    catalog = load_catalog(models_dir)
    if model in catalog:
        return resolve(catalog[model], models_dir)
    path = Path(model)
    if not path.is_file():
        raise ConfigError(f"model '{model}' is neither a catalog id nor a file",
                          "give a catalog id (`gemba models`) or the path of a .gguf file")
    return path


@click.group("install")
def install() -> None:
    """Field engineer's installer: probe, match a profile, plan, commission."""


def _choose_profile(name: str | None, facts: HostFacts) -> Any:
    """The named profile (a shipped name or a .toml file), else the shipped one that matches the
    box best, else one derived from the probe; with GPU levels from the cards if it has none."""
    from installer.derive import choose_profile, profile_for_box
    from installer.profiles import find_profile, load_profiles

    if name:
        return profile_for_box(find_profile(name), facts)
    chosen = choose_profile(load_profiles(), facts).profile
    if chosen.profile.derived:
        click.echo(f"No firmware profile matches this box: planning with {chosen.name}, derived "
                   "from the probe. Confirm its figures with the vendor's data; `gemba install "
                   "profile new` writes it as a file to review and keep.", err=True)
    return chosen


@install.command()
@click.option("--json", "as_json", is_flag=True)
def probe(as_json: bool) -> None:
    """Describe this box: CPU, memory, disk, sensors, NVIDIA GPUs, Jetson."""
    facts = _facts(None)
    if as_json:
        _emit_json(to_dict(facts))
        return
    for line in describe_facts(facts):
        click.echo(line)


def describe_facts(facts: HostFacts) -> list[str]:
    cpu, mem = facts.cpu, facts.memory
    features = ", ".join(name.upper() for name, has in cpu.features.items() if has) or "none"
    lines = [
        f"Host      {facts.hostname}  {facts.os}",
        f"CPU       {cpu.model} ({cpu.arch}), {cpu.physical_cores or '?'} cores / "
        f"{cpu.logical_cores} threads; {features}",
        f"Memory    {mem.total_bytes / GIB:.1f} GiB total, {mem.available_bytes / GIB:.1f} GiB "
        f"available, swap {mem.swap_total_bytes / GIB:.1f} GiB"
        + (f", cgroup limit {mem.cgroup_limit_bytes / GIB:.1f} GiB"
           if mem.cgroup_limit_bytes else ""),
        f"Disk      {facts.disk.free_bytes / GIB:.1f} GiB free of "
        f"{facts.disk.total_bytes / GIB:.1f} GiB at {facts.disk.path}",
    ]
    for temp in facts.temperatures:
        lines.append(f"Temp      {temp.source}/{temp.label}: {temp.temp_c:g} °C")
    if facts.nvml.available:
        lines.append(f"NVIDIA    driver {facts.nvml.driver_version}, CUDA {facts.nvml.cuda_version}")
        for gpu in facts.gpus:
            lines.append(f"GPU {gpu.index}     {gpu.name}: {_gib(gpu.memory_total_bytes)} GiB, "
                         f"{_num(gpu.temp_c)} °C, {_num(gpu.power_draw_w)} / "
                         f"{_num(gpu.power_limit_w)} W, throttle: "
                         f"{', '.join(gpu.throttle_reasons or ()) or 'none'}")
    if facts.tegra:
        lines.append(f"Jetson    {facts.tegra.model}, power mode {facts.tegra.nvpmodel_mode}")
        for rail in facts.tegra.power_rails:
            lines.append(f"Rail      {rail.name}: {_num(rail.power_w)} W")
    for what, why in sorted(facts.unavailable.items()):
        lines.append(f"n/a       {what}: {why}")
    return lines


def _gib(value: int | None) -> str:
    return "?" if value is None else f"{value / GIB:.1f}"


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


@install.command()
@click.option("--hardware", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A recorded probe (JSON) instead of this box.")
@click.option("--json", "as_json", is_flag=True)
def profiles(hardware: Path | None, as_json: bool) -> None:
    """List the firmware profiles and which one matches this box."""
    from installer.derive import derive_profile
    from installer.profiles import best_match, load_profiles

    facts = _facts(hardware)
    all_profiles = load_profiles()
    best = best_match(all_profiles, facts)
    rows = [{"name": p.name, "description": p.profile.description,
             "matches": best is not None and best.profile.name == p.name} for p in all_profiles]
    derived = None if best else derive_profile(facts).name
    if as_json:
        _emit_json({"profiles": rows, "match": best.profile.name if best else None,
                    "reasons": list(best.reasons) if best else [], "derived": derived})
        return
    for row in rows:
        click.echo(f"{'*' if row['matches'] else ' '} {row['name']:<28} {row['description']}")
    if best:
        click.echo(f"\nThis box matches {best.profile.name}: {'; '.join(best.reasons)}", err=True)
    else:
        click.echo(f"\nNo shipped profile matches this box: `gemba install plan` derives "
                   f"{derived} from the probe, and `gemba install profile new` writes it as a "
                   "file to review (or pass --profile NAME to choose one).", err=True)


@install.group("profile")
def profile_group() -> None:
    """Firmware profiles for boxes that no shipped profile describes."""


@profile_group.command("new")
@click.option("--from-probe", "from_probe", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="A recorded probe (JSON) instead of this box.")
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The file to write (default: NAME.toml in the current folder).")
@click.option("--name", default=None, help="Profile name (default: from the CPU, GPU and RAM; "
              "with --output, the file's name).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def profile_new(from_probe: Path | None, output: Path | None, name: str | None,
                force: bool) -> None:
    """Derive a conservative profile from a probe and write it as TOML for review.

    Every figure carries its source in [profile.sources]; the file loads as any firmware profile
    does. Prints the file's path."""
    from datetime import UTC, datetime

    from appliance.fileio import write_atomic
    from installer.derive import derive_profile, profile_toml
    from installer.profiles import load_profile, match

    facts = _facts(from_probe)
    if output is not None and name is not None and output.stem != name:
        raise click.UsageError(f"--name {name} and --output {output.name} differ: a profile's "
                               "file is named after it")
    chosen = name or (output.stem if output else None)
    if chosen is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,63}", chosen):
        raise click.UsageError(f"profile name '{chosen}': use lower-case letters, digits and "
                               "'-', 2 to 64 characters")
    profile = derive_profile(facts, chosen)
    target = output or Path.cwd() / f"{profile.name}.toml"
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists", "pass --force to replace it, or "
                          "--output another file")
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    write_atomic(target, profile_toml(profile, facts, stamp))
    if match(load_profile(target), facts) is None:  # the written file must describe this box
        raise ConfigError(f"{target} does not match the box it was derived from",
                          "report this as a bug, with the probe")
    click.echo(str(target))
    click.echo(f"Wrote {profile.name} ({len(profile.profile.sources)} derived figures, each with "
               "its source). Check them against the vendor's data and set derived = false; "
               f"use it with `gemba install plan --profile {target}` or keep it in "
               "firmware_profiles/.", err=True)


@install.command()
@click.option("--profile", "profile_name", default=None,
              help="Firmware profile, by name or as a .toml file (default: the one that matches "
                   "the box, else one derived from the probe).")
@click.option("--model", "model", default="smollm2-135m-instruct-q4_1", show_default=True,
              help="Catalog id or path of a .gguf file.")
@click.option("--ctx", type=click.IntRange(min=128), default=None, help="Wanted context.")
@click.option("--parallel", type=click.IntRange(1, 64), default=None,
              help="Wanted answers at once (default 4); fewer if memory is short.")
@click.option("--hardware", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Plan for a recorded probe (JSON) instead of this box.")
@click.option("--json", "as_json", is_flag=True)
def plan(profile_name: str | None, model: str, ctx: int | None, parallel: int | None,
         hardware: Path | None, as_json: bool) -> None:
    """Plan threads, context, answers at once, GPU layers, KV cache and power for a model.

    Exit status 0 when no check fails, 3 when one does."""
    from installer.gguf_info import read_model_facts
    from installer.plan import make_plan

    facts = _facts(hardware)
    profile = _choose_profile(profile_name, facts)
    result = make_plan(facts, profile, read_model_facts(_model_path(model)), ctx, parallel)
    if as_json:
        _emit_json(plan_to_dict(result))
    else:
        for line in describe_plan(result):
            click.echo(line)
    sys.exit(result.exit_code)


def plan_to_dict(result: Any) -> dict[str, Any]:
    memory = result.memory
    return {
        "profile": result.profile, "model": result.model, "ok": result.ok,
        "derived": result.derived,
        "profile_figures": {k: {"value": c.value, "reason": c.reason}
                            for k, c in result.profile_figures.items()},
        "settings": {k: {"value": c.value, "reason": c.reason}
                     for k, c in result.settings.items()},
        "memory": {**memory.__dict__, "ram_bytes": memory.ram_bytes,
                   "vram_bytes": memory.vram_bytes},
        "power_w": result.power_w,
        "checks": [{"name": c.name, "status": c.status, "message": c.message,
                    "figures": c.figures} for c in result.checks],
    }


def describe_plan(result: Any) -> list[str]:
    m = result.memory
    lines = [f"Plan for {result.model} on profile {result.profile}"
             + (" (derived: confirm with the vendor's data)" if result.derived else ""), ""]
    if result.profile_figures:
        lines.append("Derived profile figures:" if result.derived else
                     "Profile figures and their sources:")
        for key, choice in result.profile_figures.items():
            lines.append(f"  {key:<28} {_figure(choice.value):<8} {choice.reason}")
        lines.append("")
    lines.append("Settings:")
    for key, choice in result.settings.items():
        lines.append(f"  {key:<16} {str(choice.value):<8} {choice.reason}")
    lines += ["", "Memory (MiB):",
              f"  weights  CPU {m.weights_cpu_bytes / 2**20:8.1f}   GPU {m.weights_gpu_bytes / 2**20:8.1f}",
              f"  KV cache CPU {m.kv_cpu_bytes / 2**20:8.1f}   GPU {m.kv_gpu_bytes / 2**20:8.1f}",
              f"  compute  CPU {m.compute_cpu_bytes / 2**20:8.1f}   GPU {m.compute_gpu_bytes / 2**20:8.1f}",
              f"  overhead     {m.overhead_bytes / 2**20:8.1f}",
              f"  total RAM    {m.ram_bytes / 2**20:8.1f} of {m.ram_budget_bytes / 2**20:.1f}"
              f"   VRAM {m.vram_bytes / 2**20:.1f} of {m.vram_budget_bytes / 2**20:.1f}",
              "", "Checks:"]
    for check in result.checks:
        lines.append(f"  {_MARK[check.status]}  {check.name:<14} {check.message}")
    lines.append("")
    lines.append("Result: " + ("ready to install" if result.ok else
                               "REFUSED: fix the failed checks above (exit status 3)"))
    return lines


def _figure(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _bar(label: str, quiet: bool):  # type: ignore[no-untyped-def]
    """A progress callback (done, total) drawing a bar on stderr; silent for --json."""
    state: dict[str, Any] = {}

    def update(done: float, total: float) -> None:
        if quiet:
            return
        if "bar" not in state:
            state["bar"] = click.progressbar(length=int(total) or 1, label=label,
                                             file=sys.stderr)
            state["bar"].__enter__()
        bar = state["bar"]
        bar.update(int(done) - bar.pos)
        if done >= total:
            bar.__exit__(None, None, None)

    return update


def _source(model: str, sha256: str | None, model_id: str | None, paths: Paths,
            progress: Any) -> tuple[Any, Any]:
    """The model to install and its facts. The file is hashed before anything reads it: a
    truncated copy is named as such, with both hashes, not as a GGUF it cannot parse."""
    from appliance.models import CatalogEntry, load_catalog, resolve, validate_model_id
    from installer.commission import ModelSource, verify_file, verify_source
    from installer.gguf_info import read_model_facts

    catalog = load_catalog(paths.models_dir)
    if model in catalog:
        entry = catalog[model]
        if sha256 and sha256.lower() != entry.sha256:
            raise ConfigError(f"--sha256 {sha256} is not the catalog's hash for {model} "
                              f"({entry.sha256})", "omit --sha256 for catalog models")
        source = ModelSource(entry, resolve(entry, paths.models_dir))
        verify_source(source, progress)
        return source, read_model_facts(source.path)
    path = Path(model)
    if not path.is_file():
        raise ConfigError(f"model '{model}' is neither a catalog id nor a file",
                          "give a catalog id (`gemba models`) or the path of a .gguf file")
    if not sha256 or len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower()):
        raise ConfigError(f"installing {path.name} needs its sha256 (64 hex digits) from the "
                          "model's vendor manifest", "pass --sha256 HASH; Gemba does not install "
                          "a model it cannot verify")
    known = next((e for e in catalog.values() if e.sha256 == sha256.lower()), None)
    if known is not None:
        source = ModelSource(known, path)
        verify_source(source, progress)
        return source, read_model_facts(path)
    verify_file(path, sha256.lower(), None, progress)
    facts = read_model_facts(path)
    entry = CatalogEntry(
        id=validate_model_id(model_id or path.stem.lower().replace(" ", "-")), file=path.name,
        sha256=sha256.lower(), licence="as supplied", quantization=facts.quantization,
        context_length=facts.context_train, parameters="", source="folder",
        description=f"{facts.name}, installed from {path}", size_bytes=facts.file_bytes)
    return ModelSource(entry, path), facts


@install.command()
@click.option("--profile", "profile_name", default=None,
              help="Firmware profile, by name or as a .toml file (default: the one that matches "
                   "the box, else one derived from the probe).")
@click.option("--model", default="smollm2-135m-instruct-q4_1", show_default=True,
              help="Catalog id or path of a .gguf file.")
@click.option("--sha256", default=None, help="Expected hash of a model given by path.")
@click.option("--model-id", default=None, help="Id to install a model file under.")
@click.option("--ctx", type=click.IntRange(min=128), default=None, help="Wanted context.")
@click.option("--parallel", type=click.IntRange(1, 64), default=None,
              help="Wanted answers at once (default 4); fewer if memory is short.")
@click.option("--burn-in-s", type=FiniteFloatRange(min=1), default=120.0, show_default=True,
              help="Length of the sustained-generation burn-in.")
@click.option("--system", is_flag=True, help="Also write a hardened systemd unit.")
@click.option("--unit-dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("/etc/systemd/system"), show_default=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def apply(profile_name: str | None, model: str, sha256: str | None, model_id: str | None,
          ctx: int | None, parallel: int | None, burn_in_s: float, system: bool, unit_dir: Path,
          yes: bool, as_json: bool) -> None:
    """Commission this box: verify and install the model, write the planned config, burn in."""
    from appliance.hardware.probe import probe as probe_box
    from installer import commission
    from installer.burnin import judge, run_burn_in
    from installer.plan import make_plan

    paths = Paths.from_env()
    paths.ensure()
    load_settings(paths.config_file)  # a broken config is named now, before anything changes
    for leftover in commission.clean_leftovers(paths):
        click.echo(f"Removed {leftover} left by an interrupted install.", err=True)
    facts = probe_box(paths.data_dir)
    profile = _choose_profile(profile_name, facts)
    source, model_facts = _source(model, sha256, model_id, paths,
                                  _bar("Verifying model ", as_json))
    result = make_plan(facts, profile, model_facts, ctx, parallel)
    plan_dict = plan_to_dict(result)
    if not as_json:
        for line in describe_plan(result):
            click.echo(line, err=True)
    if not result.ok:
        report = commission.build_report(facts, profile, source, result, plan_dict, None, [],
                                         committed=False, error="the plan has failed checks")
        _finish(paths, report, as_json)
        sys.exit(3)
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("confirmation needed: run in a terminal or pass --yes")
        click.confirm(f"Install {source.entry.id} with this plan?", abort=True, err=True)
    staged = None
    try:
        staged = commission.stage(source, paths, _bar("Copying model   ", as_json))
        bar = _bar("Burn-in         ", as_json)
        burn = run_burn_in(commission.engine_config(source, staged, result, profile, paths),
                           burn_in_s,
                           tick=lambda t, _s: bar(t, burn_in_s),
                           gpu_cap_w=result.value("gpu_power_cap_w"))
        checks = judge(burn, profile, result, len(facts.gpus))
        if any(c["status"] == "fail" for c in checks):
            report = commission.build_report(facts, profile, source, result, plan_dict, burn,
                                             checks, committed=False,
                                             error="the burn-in failed its checks")
            _finish(paths, report, as_json)
            sys.exit(3)
        final = commission.commit(source, staged, paths, result, profile)
        staged = None
        report = commission.build_report(facts, profile, source, result, plan_dict, burn,
                                         checks, committed=True)
        if system:
            unit = commission.write_unit(unit_dir, paths, final, result)
            report["systemd_unit"] = str(unit)
        _finish(paths, report, as_json)
    finally:
        if staged is not None and staged.name.endswith(".partial"):
            staged.unlink(missing_ok=True)


def _finish(paths: Paths, report: dict[str, Any], as_json: bool) -> None:
    from installer import commission

    json_path, text_path = commission.record(paths, report)
    if as_json:
        _emit_json({**report, "report_files": [str(json_path), str(text_path)]})
        return
    click.echo("")
    for line in commission.report_lines(report):
        click.echo(line)
    click.echo(f"\nReport written to {text_path} (and .json).", err=True)
    if report["committed"]:
        click.echo("A running daemon keeps its old settings: restart it with `gemba stop`; "
                   "the next `gemba ask` or console starts it with the plan.", err=True)


@install.command()
@click.option("--json", "as_json", is_flag=True)
def report(as_json: bool) -> None:
    """Show the last install report stored on this box."""
    from appliance.store import open_store
    from appliance.store.reports import last_report
    from installer.commission import report_lines

    last = last_report(open_store(Paths.from_env().db_file))
    if as_json:
        _emit_json(last)
        return
    for line in report_lines(last):
        click.echo(line)
