"""`gemba install` as a field engineer runs it: probe, profiles, plan, apply, report.

`apply` runs for real: the embedded model is verified, copied, burned in with llama.cpp and
installed; an interrupted or failed apply must leave the previous config and model as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import tomllib
from pathlib import Path

import click
import psutil
import pytest

from appliance.cli import cli
from appliance.models import CATALOG, locate
from tests.conftest import GembaHome
from tests.fakes.hardware import FIXTURES, FakeNvml
from tests.test_plan import EMBEDDED

DEFAULT = CATALOG["smollm2-135m-instruct-q4_1"]


@pytest.fixture
def usb_model(tmp_path: Path) -> Path:
    """The embedded model as it arrives on a USB stick: a plain file outside any package."""
    source = locate(DEFAULT, Path("/nonexistent"))
    assert source is not None
    stick = tmp_path / "usb"
    stick.mkdir()
    return Path(shutil.copy(source, stick / DEFAULT.file))


def test_probe_describes_this_machine(gemba_home: GembaHome) -> None:
    result = gemba_home.gemba("install", "probe", "--json", check=True)
    facts = json.loads(result.stdout)
    assert facts["cpu"]["logical_cores"] == os.cpu_count()
    assert facts["memory"]["total_bytes"] == psutil.virtual_memory().total
    assert facts["nvml"]["available"] is False and facts["nvml"]["reason"]
    text = gemba_home.gemba("install", "probe", check=True).stdout
    assert "CPU" in text and "Memory" in text


def test_profiles_names_the_match_for_this_vm(gemba_home: GembaHome) -> None:
    shown = json.loads(gemba_home.gemba("install", "profiles", "--json", check=True).stdout)
    assert shown["match"] == "virtual-machine"
    assert len(shown["profiles"]) >= 10


@pytest.mark.parametrize("box, failing, _gpu", EMBEDDED)
def test_plan_for_each_recorded_box(gemba_home: GembaHome, box: str, failing: set[str],
                                    _gpu: bool) -> None:
    result = gemba_home.gemba("install", "plan", "--hardware", str(FIXTURES / f"{box}.json"),
                              "--json")
    assert result.returncode == (3 if failing else 0), result.stderr
    plan = json.loads(result.stdout)
    assert {c["name"] for c in plan["checks"] if c["status"] == "fail"} == failing
    assert all(choice["reason"] for choice in plan["settings"].values())


def test_plan_text_shows_reasons_and_the_refusal(gemba_home: GembaHome) -> None:
    result = gemba_home.gemba("install", "plan", "--hardware",
                              str(FIXTURES / "atom-e3845-4gb.json"))
    assert result.returncode == 3
    assert "FAIL  cpu" in result.stdout and "REFUSED" in result.stdout
    assert "n_threads" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("box, failing", [("i5-12400-rtx-3060-12gb", set()),
                                          ("apu2-gx-412tc-no-avx2", {"cpu"})])
def test_box_no_profile_describes_is_planned_on_a_derived_profile(
        gemba_home: GembaHome, box: str, failing: set[str]) -> None:
    result = gemba_home.gemba("install", "plan", "--hardware", str(FIXTURES / f"{box}.json"),
                              "--json")
    assert result.returncode == (3 if failing else 0), result.stderr  # never 78, "no profile"
    assert "No firmware profile matches this box: planning with" in result.stderr
    plan = json.loads(result.stdout)
    assert plan["derived"] is True and plan["profile_figures"]
    assert all(figure["reason"] for figure in plan["profile_figures"].values())
    statuses = {c["name"]: c["status"] for c in plan["checks"]}
    assert statuses["profile"] == "warn"
    assert {name for name, status in statuses.items() if status == "fail"} == failing
    text = gemba_home.gemba("install", "plan", "--hardware", str(FIXTURES / f"{box}.json"))
    assert "(derived: confirm with the vendor's data)" in text.stdout
    assert "Derived profile figures:" in text.stdout
    shown = json.loads(gemba_home.gemba("install", "profiles", "--hardware",
                                        str(FIXTURES / f"{box}.json"), "--json").stdout)
    assert shown["match"] is None and shown["derived"] == plan["profile"]


def test_profile_new_writes_a_profile_that_loads_and_plans(gemba_home: GembaHome,
                                                           tmp_path: Path) -> None:
    from installer.profiles import load_profile, match
    from tests.fakes.hardware import load_recorded

    probe = str(FIXTURES / "i5-12400-rtx-3060-12gb.json")
    result = gemba_home.gemba("install", "profile", "new", "--from-probe", probe)
    assert result.returncode == 0, result.stderr
    written = Path(result.stdout.strip())
    assert written == gemba_home.home / "i5-12400-rtx-3060-16gb.toml"  # in the current folder
    profile = load_profile(written)
    assert profile.profile.derived and profile.profile.sources
    assert match(profile, load_recorded("i5-12400-rtx-3060-12gb")) is not None
    assert "derived figures, each with its source" in result.stderr
    again = gemba_home.gemba("install", "profile", "new", "--from-probe", probe)
    assert again.returncode == 78 and "already exists" in again.stderr
    named = tmp_path / "qa-cell-2.toml"
    assert gemba_home.gemba("install", "profile", "new", "--from-probe", probe, "--output",
                            str(named), check=True).stdout.strip() == str(named)
    assert load_profile(named).name == "qa-cell-2"
    plan = gemba_home.gemba("install", "plan", "--hardware", probe, "--profile", str(named),
                            "--json")
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["profile"] == "qa-cell-2"
    bad = gemba_home.gemba("install", "profile", "new", "--from-probe", probe, "--name", "Box 1")
    assert bad.returncode == 2 and "lower-case" in bad.stderr


def test_apply_commissions_a_box_no_profile_describes(gemba_home: GembaHome,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """apply probes the box it runs on, so the box is swapped for the recorded RTX 3060 desktop
    and the burn-in for its figures; everything else (verify, judge, commit, report) is real."""
    from dataclasses import replace

    from click.testing import CliRunner

    import appliance.hardware.probe
    import installer.burnin
    from installer.cli import install
    from tests.fakes.hardware import fake_proc_tree, fake_psutil, load_recorded
    from tests.test_limits import _quiet_burn_in

    facts = load_recorded("i5-12400-rtx-3060-12gb")
    sample = installer.burnin.take_sample(fake_psutil(facts), FakeNvml.from_facts(facts.nvml),
                                          fake_proc_tree(facts, tmp_path / "root"))
    measured = replace(_quiet_burn_in(), gpu_temp_c_max=sample.gpu_temp_c,
                       gpu_power_w_max=sample.gpu_power_w, cpu_temp_c_max=sample.cpu_temp_c)
    caps: list[float | None] = []

    def burn_in(config: object, duration_s: float, tick: object = None,
                gpu_cap_w: float | None = None, **_: object) -> installer.burnin.BurnInResult:
        caps.append(gpu_cap_w)
        return replace(measured, gpu_power_cap_w=gpu_cap_w)

    monkeypatch.setattr(appliance.hardware.probe, "probe", lambda _data_dir: facts)
    monkeypatch.setattr(installer.burnin, "run_burn_in", burn_in)
    for key, value in gemba_home.env.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(install, ["apply", "--yes", "--json", "--burn-in-s", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["committed"]
    assert report["profile"] == "i5-12400-rtx-3060-16gb" and report["plan"]["derived"]
    assert caps == [136.0]  # the burn-in ran with the planned cap
    judged = {c["name"]: c["status"] for c in report["burn_in_checks"]}
    assert judged["burn_in_gpu_thermal"] == "pass" and judged["burn_in_gpu_power"] == "pass"
    config = tomllib.loads(gemba_home.config_file.read_text("utf-8"))
    assert (config["budgets"]["gpu_careful_c"], config["budgets"]["gpu_warning_c"],
            config["budgets"]["gpu_critical_c"]) == (80, 90, 93)
    reason = config["plan"]["reasons"]["budgets.gpu_warning_c"]
    assert "derived from the probe: confirm with the vendor's data" in reason
    assert "nvmlDeviceGetTemperatureThreshold(SLOWDOWN)" in reason


def test_unknown_profile_lists_the_known_ones(gemba_home: GembaHome) -> None:
    result = gemba_home.gemba("install", "plan", "--profile", "toaster")
    assert result.returncode == 78
    assert "no firmware profile named 'toaster'" in result.stderr
    assert "virtual-machine" in result.stderr


def test_bad_recorded_probe_is_a_clear_error(gemba_home: GembaHome, tmp_path: Path) -> None:
    bad = tmp_path / "box.json"
    bad.write_text('{"cpu": 1}')
    result = gemba_home.gemba("install", "plan", "--hardware", str(bad))
    assert result.returncode == 78 and "not a recorded probe" in result.stderr


ENGINEER_CONFIG = """\
# Line 3 press cell. Commissioned by R. Tanaka, 2026-11-02.
[daemon]
port = 8765  # the cell's firewall opens this one only
idle_timeout_s = 600

[model]
# Planned by `gemba install apply`: ask R. Tanaka before changing.
n_ctx = 99999

[generation]
max_tokens = 256  # short answers on the line

[budgets]
telemetry_minute_days = 30  # quality asked for a month
cpu_careful_c = 1.0

[plan]
profile = "old"
[plan.reasons]
"model.n_ctx" = "old reason"
"""


def test_apply_keeps_the_engineers_comments_and_settings(tmp_path: Path) -> None:
    from installer.commission import planned_config
    from installer.gguf_info import read_model_facts
    from installer.plan import make_plan
    from installer.profiles import best_match, load_profiles
    from tests.fakes.hardware import load_recorded

    config = tmp_path / "config.toml"
    config.write_text(ENGINEER_CONFIG, encoding="utf-8")
    facts = load_recorded("i7-ipc-32gb")
    matched = best_match(load_profiles(), facts)
    assert matched is not None
    model_path = locate(DEFAULT, Path("/nonexistent"))
    assert model_path is not None
    plan = make_plan(facts, matched.profile, read_model_facts(model_path))

    text = planned_config(config, DEFAULT.id, plan, matched.profile)
    for kept in ("# Line 3 press cell. Commissioned by R. Tanaka, 2026-11-02.",
                 "port = 8765  # the cell's firewall opens this one only",
                 "# Planned by `gemba install apply`: ask R. Tanaka before changing.",
                 "max_tokens = 256  # short answers on the line",
                 "telemetry_minute_days = 30  # quality asked for a month"):
        assert kept in text, f"lost: {kept}"
    written = tomllib.loads(text)
    assert written["daemon"] == {"port": 8765, "idle_timeout_s": 600}
    assert written["generation"] == {"max_tokens": 256}
    assert written["model"]["id"] == DEFAULT.id
    assert written["model"]["n_ctx"] == plan.value("n_ctx")
    assert written["budgets"]["telemetry_minute_days"] == 30
    assert written["budgets"]["cpu_careful_c"] != 1.0, "the profile's budgets replace old ones"
    assert written["plan"]["profile"] == matched.profile.name
    assert "old reason" not in text
    config.write_text(text, encoding="utf-8")  # applied again: the same shape, no duplicates
    again = planned_config(config, DEFAULT.id, plan, matched.profile)
    assert again.count("[plan]") == 1 and again.count("ask R. Tanaka") == 1


def test_apply_writes_the_planned_slots_and_the_engine_gets_them(tmp_path: Path) -> None:
    from appliance.config import Paths
    from installer.commission import ModelSource, engine_config, planned_config
    from installer.plan import make_plan
    from installer.profiles import best_match, load_profiles
    from tests.fakes.hardware import load_recorded
    from tests.test_plan import llama_8b_q4_k

    # An 8B model on the A2000 box: its VRAM holds fewer than the 4 slots a config defaults to.
    facts = load_recorded("ipc-rtx-a2000-12gb")
    matched = best_match(load_profiles(), facts)
    assert matched is not None
    plan = make_plan(facts, matched.profile, llama_8b_q4_k(), 8192)
    slots = plan.value("n_parallel")
    assert 1 <= slots < 4
    paths = Paths.from_env({"GEMBA_HOME": str(tmp_path)})
    written = tomllib.loads(planned_config(paths.config_file, DEFAULT.id, plan, matched.profile))
    assert written["model"]["n_parallel"] == slots
    assert written["plan"]["reasons"]["model.n_parallel"] == plan.settings["n_parallel"].reason
    # The burn-in's engine is built from that very text, as the daemon builds its own.
    model_path = locate(DEFAULT, Path("/nonexistent"))
    assert model_path is not None
    config = engine_config(ModelSource(DEFAULT, model_path), model_path, plan, matched.profile,
                           paths)
    assert config.n_parallel == slots


@pytest.mark.model
def test_apply_commissions_the_box_and_the_daemon_obeys_the_plan(
        gemba_home: GembaHome, usb_model: Path) -> None:
    units = gemba_home.home / "units"
    result = gemba_home.gemba("install", "apply", "--model", str(usb_model), "--sha256",
                              DEFAULT.sha256, "--burn-in-s", "3", "--yes", "--json", "--system",
                              "--unit-dir", str(units), timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["committed"]
    assert report["burn_in"]["answers"] >= 1 and report["burn_in"]["tok_per_s_median"] > 0
    # The model was copied into the models folder and verifies there.
    installed = gemba_home.home / "models" / DEFAULT.file
    assert installed.read_bytes() == usb_model.read_bytes()
    assert not list((gemba_home.home / "models").glob(".*.partial"))
    # The config carries the plan and its reasons.
    shown = json.loads(gemba_home.gemba("config", "show", "--json", check=True).stdout)
    rows = {row["key"]: row for row in shown["settings"]}
    planned_ctx = report["plan"]["settings"]["n_ctx"]["value"]
    assert rows["model.n_ctx"]["value"] == planned_ctx
    assert rows["model.n_ctx"]["reason"] == report["plan"]["settings"]["n_ctx"]["reason"]
    assert rows["plan.profile"]["value"] == "virtual-machine"
    # The report is stored and shown; files were written.
    stored = json.loads(gemba_home.gemba("install", "report", "--json", check=True).stdout)
    assert stored["ok"] and stored["model_sha256"] == DEFAULT.sha256
    assert all(Path(p).exists() for p in report["report_files"])
    # The hardened unit.
    unit = (units / "gemba.service").read_text()
    for line in ("IPAddressDeny=any", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 f"Environment=GEMBA_HOME={gemba_home.home}", "MemoryMax="):
        assert line in unit
    # The daemon then serves with the planned settings.
    gemba_home.start_daemon()
    assert gemba_home.health()["n_ctx"] == planned_ctx


@pytest.mark.model
def test_wrong_hash_changes_nothing(gemba_home: GembaHome, usb_model: Path) -> None:
    before = gemba_home.config_file.read_bytes()
    result = gemba_home.gemba("install", "apply", "--model", str(usb_model), "--sha256",
                              "0" * 64, "--model-id", "plant-model", "--burn-in-s", "2",
                              "--yes", timeout=120)
    assert result.returncode == 65
    assert "failed its integrity check" in result.stderr and "0" * 64 in result.stderr
    assert "Traceback" not in result.stderr
    assert gemba_home.config_file.read_bytes() == before
    assert not (gemba_home.home / "models" / DEFAULT.file).exists()


def test_model_file_without_a_hash_is_refused(gemba_home: GembaHome, usb_model: Path) -> None:
    result = gemba_home.gemba("install", "apply", "--model", str(usb_model), "--yes")
    assert result.returncode == 78
    assert "needs its sha256" in result.stderr


def _start_apply(home: GembaHome, usb_model: Path, burn_in_s: str) -> tuple:
    before = home.config_file.read_bytes()
    process = home.start_gemba("install", "apply", "--model", str(usb_model), "--sha256",
                               DEFAULT.sha256, "--burn-in-s", burn_in_s, "--yes")
    staged = home.home / "models" / f".{DEFAULT.file}.partial"
    deadline = time.monotonic() + 120
    while not staged.exists() or staged.stat().st_size < usb_model.stat().st_size:
        assert time.monotonic() < deadline and process.poll() is None, "apply never staged"
        time.sleep(0.05)
    time.sleep(1.0)  # now in the burn-in
    return process, before, staged


@pytest.mark.model
def test_power_cut_during_apply_leaves_the_old_config_and_model(
        gemba_home: GembaHome, usb_model: Path) -> None:
    process, before, staged = _start_apply(gemba_home, usb_model, "60")
    for child in psutil.Process(process.pid).children(recursive=True):
        child.kill()
    process.kill()  # no chance to clean up: as after a power cut
    process.wait()
    assert gemba_home.config_file.read_bytes() == before
    assert not (gemba_home.home / "models" / DEFAULT.file).exists()
    # The next apply cleans what the cut left behind, and says so.
    result = gemba_home.gemba("install", "apply", "--model", str(usb_model), "--sha256",
                              DEFAULT.sha256, "--burn-in-s", "6", "--yes", timeout=300)
    assert "left by an interrupted install" in result.stderr
    assert result.returncode == 0, result.stderr
    assert not staged.exists()


@pytest.mark.model
def test_ctrl_c_during_apply_cleans_up_and_changes_nothing(
        gemba_home: GembaHome, usb_model: Path) -> None:
    process, before, staged = _start_apply(gemba_home, usb_model, "60")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "Traceback" not in stderr
    assert gemba_home.config_file.read_bytes() == before
    assert not staged.exists()
    assert not (gemba_home.home / "models" / DEFAULT.file).exists()


# -- Numbers on the command line, for every gemba command ----------------------------------------
def _options(group: click.Group, path: str = "gemba") -> list[tuple[str, click.Parameter]]:
    found = []
    for name, command in group.commands.items():
        for param in command.params:
            found.append((f"{path} {name} {param.opts[0] if param.opts else param.name}", param))
        if isinstance(command, click.Group):
            found += _options(command, f"{path} {name}")
    return found


FLOAT_OPTIONS = [(where, p) for where, p in _options(cli)
                 if isinstance(p.type, click.types.FloatParamType)]


def test_every_float_option_is_found() -> None:
    names = {where for where, _ in FLOAT_OPTIONS}
    assert {"gemba ask --temperature", "gemba serve --idle-timeout",
            "gemba install apply --burn-in-s"} <= names


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e999"])
@pytest.mark.parametrize("where, param", FLOAT_OPTIONS, ids=[w for w, _ in FLOAT_OPTIONS])
def test_float_options_refuse_nan_and_infinity(where: str, param: click.Parameter,
                                               text: str) -> None:
    # click's FloatRange lets NaN through every bound (all comparisons with NaN are false).
    with pytest.raises(click.BadParameter, match="finite|not in the range"):
        param.type.convert(text, param, None)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_ask_with_nan_temperature_is_a_usage_error(gemba_home: GembaHome, value: str) -> None:
    result = gemba_home.gemba("ask", "--temperature", value, "Is the press ready?", timeout=60)
    assert result.returncode == 2, result.stderr
    assert "--temperature" in result.stderr and "0<=x<=2" in result.stderr
    assert "Traceback" not in result.stderr
    assert gemba_home.health() is None  # refused before a daemon was started


TOO_BIG_FOR_SQLITE = str(10**20)


@pytest.mark.parametrize("args", [("history", "show", TOO_BIG_FOR_SQLITE),
                                  ("ask", "--conversation", TOO_BIG_FOR_SQLITE, "Go on."),
                                  ("ask", "--seed", str(2**32), "Go on."),
                                  ("serve", "--port", "99999")],
                         ids=["history-show", "ask-conversation", "ask-seed", "serve-port"])
def test_integers_out_of_range_are_usage_errors(gemba_home: GembaHome,
                                                args: tuple[str, ...]) -> None:
    result = gemba_home.gemba(*args, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "is not in the range" in result.stderr
    assert "Traceback" not in result.stderr
    assert gemba_home.health() is None


def test_largest_conversation_id_is_simply_not_found(gemba_home: GembaHome) -> None:
    result = gemba_home.gemba("history", "show", str(2**63 - 1))
    assert result.returncode == 66
    assert "does not exist" in result.stderr


# -- apply hashes the model before it parses it ------------------------------------------------
@pytest.fixture
def truncated_usb_model(tmp_path: Path) -> Path:
    """An interrupted copy from a USB stick: the first 3 MB of the model (its whole header)."""
    source = locate(DEFAULT, Path("/nonexistent"))
    assert source is not None
    stick = tmp_path / "usb"
    stick.mkdir()
    with source.open("rb") as whole:
        (stick / DEFAULT.file).write_bytes(whole.read(3 << 20))
    return stick / DEFAULT.file


@pytest.mark.parametrize("model_id", [None, "plant-model"], ids=["catalog-hash", "new-model"])
def test_apply_with_a_truncated_model_shows_hashes_and_sizes(
        gemba_home: GembaHome, truncated_usb_model: Path, model_id: str | None) -> None:
    before = gemba_home.config_file.read_bytes()
    sha256 = DEFAULT.sha256 if model_id is None else "ab" * 32
    extra = ("--model-id", model_id) if model_id else ()
    result = gemba_home.gemba("install", "apply", "--model", str(truncated_usb_model),
                              "--sha256", sha256, *extra, "--yes", timeout=120)
    assert result.returncode == 65, result.stderr
    assert f"expected sha256 {sha256}" in result.stderr and "got " in result.stderr
    size = locate(DEFAULT, Path("/nonexistent")).stat().st_size
    assert f"{3 << 20:,} bytes" in result.stderr and f"{size:,}" in result.stderr
    assert "truncated" in result.stderr
    assert "Traceback" not in result.stderr and "mmap" not in result.stderr
    assert gemba_home.config_file.read_bytes() == before
    assert not (gemba_home.home / "models" / DEFAULT.file).exists()
