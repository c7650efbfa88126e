"""Profiles ship with the code: a wheel built from this tree carries every firmware profile where
installer/profiles.py looks for it, and an unpacked copy outside the checkout finds them (issue 12,
item 4).

The wheel is built offline (no index, no build isolation) with the setuptools of this
environment, which the test extra pins to one that has bdist_wheel built in; a few seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from installer.profiles import PROFILES_DIR

ROOT = Path(__file__).resolve().parent.parent
NETGUARD = Path(__file__).resolve().parent / "netguard"
BUILT_FROM = ("pyproject.toml", "README.md", "appliance", "installer", "firmware_profiles")
SHIPPED = sorted(path.name for path in PROFILES_DIR.glob("*.toml"))


def _no_offline_backend() -> str | None:
    try:
        import setuptools.command.bdist_wheel  # noqa: F401
    except ImportError:
        return ("this environment's setuptools has no bdist_wheel (it is built in from 70.1, "
                "which the test extra asks for): run `make setup` to build wheels offline")
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = _no_offline_backend()
    if reason:
        pytest.skip(reason)
    source = tmp_path_factory.mktemp("source")
    for name in BUILT_FROM:  # a copy: building in place would leave build/ in the checkout
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(origin, source / name)
    dist = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
           "PYTHONPATH": str(NETGUARD)}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--quiet", "--wheel-dir", str(dist), str(source)],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (built,) = dist.glob("gemba-*.whl")
    return built


def test_wheel_carries_every_profile_where_the_loader_reads_them(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        # The loader reads the firmware_profiles folder beside the installer package.
        assert "installer/profiles.py" in names
        for profile in SHIPPED:
            assert f"firmware_profiles/{profile}" in names, profile
            assert archive.read(f"firmware_profiles/{profile}") == \
                (PROFILES_DIR / profile).read_bytes()
        assert "firmware_profiles/README.md" in names  # the schema travels with the files
    assert len(SHIPPED) >= 11


def test_unpacked_wheel_finds_its_profiles_outside_the_checkout(wheel: Path,
                                                               tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    code = ("import installer, installer.profiles as p; print(installer.__file__); "
            "print(p.PROFILES_DIR); print(' '.join(x.name for x in p.load_profiles())); "
            "print(p.find_profile('virtual-machine').name)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(NETGUARD), str(site)])}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    package, folder, names, found = result.stdout.splitlines()
    assert Path(package).is_relative_to(site), "the wheel's copy must be the one imported"
    assert Path(folder) == site / "firmware_profiles"
    assert sorted(names.split()) == [name.removesuffix(".toml") for name in SHIPPED]
    assert found == "virtual-machine"
