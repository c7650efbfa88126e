"""Firmware profiles: the shipped ones load and match their boxes; bad ones are refused with the
file, the key and what is allowed, and nothing from a bad folder is used (FAULTS case 26)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from installer.profiles import (
    PROFILES_DIR,
    QUANTIZATIONS,
    best_match,
    find_profile,
    load_profile,
    load_profiles,
    match,
)
from tests.fakes.hardware import load_recorded, recorded_names

# Which profile each recorded box is meant to get.
INTENDED = {
    "fanless-n100-8gb": "fanless-n100-8gb",
    "atom-e3845-4gb": "atom-e3845-4gb",
    "i7-ipc-32gb": "i7-ipc-32gb",
    "ipc-rtx-a2000-12gb": "ipc-rtx-a2000-12gb",
    "rack-l4-24gb": "rack-l4-24gb",
    "jetson-orin-nx-16gb-10w": "jetson-orin-nx-16gb-10w",
    "jetson-orin-nx-16gb-15w": "jetson-orin-nx-16gb-15w",
    "jetson-orin-nx-16gb-25w": "jetson-orin-nx-16gb-25w",
    "two-gpus-one-hot": "gpu-server-2x-rtx-a4000",
    "vm-no-sensors": "virtual-machine",
    # None: no shipped profile describes the box; the installer derives one (tests/test_derive.py).
    "ryzen-7840u-fanless-16gb": None,
    "i5-12400-rtx-3060-12gb": None,
    "apu2-gx-412tc-no-avx2": None,
    "panel-i3-4010u-2gb-too-little-ram": None,
}
SHIPPED_FOR = {box: name for box, name in INTENDED.items() if name is not None}
BASE = PROFILES_DIR / "fanless-n100-8gb.toml"


# --- shipped profiles ------------------------------------------------------------------------
def test_every_shipped_profile_loads() -> None:
    profiles = load_profiles()
    files = sorted(path.stem for path in PROFILES_DIR.glob("*.toml"))
    assert [profile.name for profile in profiles] == files
    assert len(profiles) >= 10


def test_every_recorded_box_has_an_intended_profile() -> None:
    assert sorted(INTENDED) == recorded_names()
    assert set(SHIPPED_FOR.values()) <= {profile.name for profile in load_profiles()}


@pytest.mark.parametrize("box", sorted(set(INTENDED) - set(SHIPPED_FOR)))
def test_box_no_profile_describes_matches_none(box: str) -> None:
    assert best_match(load_profiles(), load_recorded(box)) is None


@pytest.mark.parametrize(("box", "profile"), sorted(SHIPPED_FOR.items()))
def test_recorded_box_matches_its_profile(box: str, profile: str) -> None:
    profiles, facts = load_profiles(), load_recorded(box)
    best = best_match(profiles, facts)
    assert best is not None and best.profile.name == profile, best and best.reasons
    # Strictly the best: no other profile ties with it (a tie would be decided by file order).
    others = [r.score for p in profiles if p.name != profile and (r := match(p, facts))]
    assert all(score < best.score for score in others)


@pytest.mark.parametrize("mode", ["10W", "15W", "25W", "MAXN"])
def test_jetson_matches_the_profile_of_its_power_mode(mode: str) -> None:
    facts = load_recorded("jetson-orin-nx-16gb-25w")
    assert facts.tegra is not None
    in_mode = dataclasses.replace(facts, tegra=dataclasses.replace(facts.tegra,
                                                                   nvpmodel_mode=mode))
    best = best_match(load_profiles(), in_mode)
    assert best is not None and best.profile.name == f"jetson-orin-nx-16gb-{mode.lower()}"
    assert f"power mode {mode}" in best.reasons
    for other in ("10W", "15W", "25W", "MAXN"):
        if other != mode:
            assert match(find_profile(f"jetson-orin-nx-16gb-{other.lower()}"), in_mode) is None


def test_a_jetson_in_an_unknown_mode_matches_no_jetson_profile() -> None:
    facts = load_recorded("jetson-orin-nx-16gb-15w")
    assert facts.tegra is not None
    custom = dataclasses.replace(facts, tegra=dataclasses.replace(facts.tegra,
                                                                  nvpmodel_mode="MODE_12W"))
    assert best_match(load_profiles(), custom) is None


def test_gpu_profiles_cap_the_card_within_its_range() -> None:
    for box, name in SHIPPED_FOR.items():
        profile, facts = find_profile(name), load_recorded(box)
        for gpu in facts.gpus:
            cap = profile.power.gpu_cap_w
            assert cap is not None, f"{name}: set gpu_cap_w for a GPU box"
            assert gpu.power_limit_min_w <= cap <= gpu.power_limit_max_w, name
            assert profile.thermal.gpu_critical_c < gpu.temp_slowdown_c, name


def test_profiles_fit_their_boxes() -> None:
    for box, name in SHIPPED_FOR.items():
        profile, facts = find_profile(name), load_recorded(box)
        if name != "virtual-machine":  # one profile for VMs of any size
            assert profile.model.thread_cap <= facts.cpu.logical_cores, name
        assert profile.memory.reserved_ram_gib < facts.memory.total_bytes / 2**30, name
        for reading in facts.temperatures:
            if reading.critical_c is not None and reading.source == "coretemp":
                assert profile.thermal.cpu_critical_c <= reading.critical_c, name


def test_readme_documents_every_key_and_profile() -> None:
    readme = (PROFILES_DIR / "README.md").read_text("utf-8")
    profile = load_profile(BASE)
    for section in type(profile).model_fields:
        assert f"`[{section}]`" in readme, section
        for key in type(getattr(profile, section)).model_fields:
            assert f"`{key}`" in readme, key
    for quantization in QUANTIZATIONS:
        assert f"`{quantization}`" in readme
    for path in PROFILES_DIR.glob("*.toml"):
        assert f"`{path.stem}`" in readme, path.stem


# --- bad profiles ------------------------------------------------------------------------------
def _variant(tmp_path: Path, old: str, new: str, name: str = "fanless-n100-8gb") -> Path:
    text = BASE.read_text("utf-8")
    assert old in text, f"the base profile no longer contains {old!r}"
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace(old, new, 1), "utf-8")
    return path


# (case, text to replace, replacement, phrases the error must contain)
BAD = [
    ("unknown-key", "cpu_critical_c = 100\n", "cpu_critical_c = 100\nfan_curve = \"silent\"\n",
     ["unknown key 'thermal.fan_curve'"]),
    ("unknown-section", "[memory]", "[network]\nport = 8080\n\n[memory]",
     ["unknown key 'network'"]),
    ("string-with-unit-for-number", "box_budget_w = 25", 'box_budget_w = "25 W"',
     ["power.box_budget_w", "valid number", "'25 W'"]),
    ("list-expected", 'cpu_model = ["*N100*"]', 'cpu_model = "*N100*"',
     ["match.cpu_model", "valid list"]),
    ("missing-key", "idle_w = 6\n", "", ["missing key 'power.idle_w'"]),
    ("missing-section", "[memory]\nreserved_ram_gib = 1.5\nmin_free_disk_gib = 8\n", "",
     ["missing key 'memory'"]),
    ("context-too-small", "max_context = 4096", "max_context = 100",
     ["model.max_context", "greater than or equal to 256", "100"]),
    ("ambient-out-of-range", "rated_ambient_c = 40", "rated_ambient_c = 120",
     ["thermal.rated_ambient_c", "less than or equal to 85", "120"]),
    ("negative-watts", "cpu_load_w = 12", "cpu_load_w = -5",
     ["power.cpu_load_w", "greater than or equal to 0"]),
    ("careful-not-below-warning", "cpu_careful_c = 85", "cpu_careful_c = 95",
     ["'thermal'", "cpu_careful_c < cpu_warning_c < cpu_critical_c", "95.0, 92.0, 100.0"]),
    ("careful-equal-warning", "cpu_careful_c = 85", "cpu_careful_c = 92",
     ["cpu_careful_c < cpu_warning_c < cpu_critical_c", "92.0, 92.0, 100.0"]),
    ("gpu-thresholds-incomplete", "rated_ambient_c = 40", "gpu_careful_c = 80\nrated_ambient_c = 40",
     ["give all three gpu thresholds or none"]),
    ("idle-above-budget", "idle_w = 6", "idle_w = 30", ["idle_w must be below box_budget_w"]),
    ("ram-range-reversed", "ram_min_gib = 6", "ram_min_gib = 12",
     ["ram_min_gib must not exceed ram_max_gib"]),
    ("unknown-quantization", '"IQ4_NL", "Q3_K"]', '"IQ4_NL", "Q4_K_M"]',
     ["unknown quantizations ['Q4_K_M']", "allowed: ['F16'", "'IQ4_XS']"]),
    ("no-quantizations", 'allowed_quantizations = ["Q4_0", "Q4_1", "Q4_K", "IQ4_XS", "IQ4_NL", "Q3_K"]',
     "allowed_quantizations = []", ["model.allowed_quantizations", "at least 1"]),
    ("name-not-file-name", 'name = "fanless-n100-8gb"', 'name = "fanless-n100"',
     ["'profile.name' is 'fanless-n100'", "fanless-n100-8gb.toml"]),
    ("name-not-an-id", 'name = "fanless-n100-8gb"', 'name = "Fanless N100"',
     ["profile.name", "should match pattern"]),
    ("broken-toml", "box_budget_w = 25", "box_budget_w = ", ["cannot read it", "line"]),
    ("not-utf8", "description = ", "", ["cannot read it"]),  # written as Latin-1 below
]


@pytest.mark.parametrize(("case", "old", "new", "phrases"), BAD, ids=[row[0] for row in BAD])
def test_bad_profile_is_refused_naming_file_key_and_what_is_allowed(
        case: str, old: str, new: str, phrases: list[str], tmp_path: Path) -> None:
    if case == "not-utf8":
        path = tmp_path / "fanless-n100-8gb.toml"
        text = BASE.read_text("utf-8").replace(old, "# caf\xe9\n" + old, 1)
        path.write_bytes(text.encode("latin-1"))
    else:
        path = _variant(tmp_path, old, new)
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    error = caught.value
    assert str(path) in error.message
    for phrase in phrases:
        assert phrase in error.message, f"{phrase!r} not in {error.message!r}"
    assert error.hint, "say what to do"
    assert error.exit_code == 78


@pytest.mark.parametrize(("old", "new"), [
    ("box_budget_w = 25", 'box_budget_w = "25"'),
    ("thread_cap = 3", "thread_cap = true"),
    ("max_context = 4096", 'max_context = "4096"'),
], ids=["quoted-watts", "bool-for-threads", "quoted-context"])
def test_wrong_type_is_refused_even_when_it_converts(old: str, new: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_profile(_variant(tmp_path, old, new))


def test_unknown_quantization_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile(_variant(tmp_path, '"IQ4_NL", "Q3_K"]', '"IQ4_NL", "Q4_K_M"]'))
    assert "model.allowed_quantizations" in caught.value.message


def test_unknown_key_points_to_the_list_of_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_profile(_variant(tmp_path, "idle_w = 6", "idle_watts = 6\nidle_w = 6"))
    assert "unknown key 'power.idle_watts'" in caught.value.message
    assert "firmware_profiles/README.md" in caught.value.hint


def test_a_bad_profile_in_the_folder_stops_the_whole_load(tmp_path: Path) -> None:
    for path in PROFILES_DIR.glob("*.toml"):
        shutil.copy(path, tmp_path / path.name)
    assert len(load_profiles(tmp_path)) == len(load_profiles())
    bad = tmp_path / "zz-broken-box.toml"
    bad.write_text(BASE.read_text("utf-8").replace('name = "fanless-n100-8gb"',
                                                   'name = "zz-broken-box"')
                   .replace("idle_w = 6", "idle_w = 60"), "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_profiles(tmp_path)
    assert str(bad) in caught.value.message
    assert "idle_w must be below box_budget_w" in caught.value.message


def test_find_profile_lists_the_choices_for_an_unknown_name() -> None:
    with pytest.raises(ConfigError) as caught:
        find_profile("fanless-n200-16gb")
    assert "fanless-n200-16gb" in caught.value.message
    assert "fanless-n100-8gb" in caught.value.hint
    with pytest.raises(ConfigError):
        find_profile("../firmware_profiles/fanless-n100-8gb")
