"""The offline site bundle (issue 12, items 1-3): build, sign, verify, install, roll back.

One small bundle is built per module on this (connected) machine: gemba's own wheel, the
dependency wheels pinned to this environment's versions (pip, with its cache; the only step
allowed the network), the llama-cpp-python wheel `make setup` built (pip's wheel cache), the
embedded model's package, profiles and docs. Then:
- the six tamper cases are refused by the bundle's own install.py, run with `python -S -I`
  (so it can use nothing but the standard library), naming the file or reason, with every file
  of the box's trees byte-identical before and after;
- the untouched bundle is installed inside a network namespace with only loopback
  (`unshare -rn`) and answers a question from the new release there.
No llama.cpp variant is compiled here (~8 minutes each on 2 cores).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from installer.bundle import ed25519, manifest, minisign, releases
from installer.bundle.build import _STDLIB_MODULES
from installer.bundle.errors import BundleError
from installer.bundle.install import candidate_variants, cpu_features
from tests.conftest import PYTHON, free_port

ROOT = Path(__file__).resolve().parent.parent
# A Python with none of our packages: the base interpreter of this virtual environment.
BARE_PYTHON = str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")
BUNDLE_VERSION = "0.1.0.5"
INSTALLED_VERSION = "0.1.0.3"


def _cached_llama_wheel() -> Path | None:
    found = sorted((Path.home() / ".cache" / "pip").rglob("llama_cpp_python-0.3.36-*.whl"))
    return found[0] if found else None


def _namespaces_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0


# ---------------------------------------------------------------- Ed25519 and minisign formats

RFC8032_TEST_2 = (  # RFC 8032, 7.1, TEST 2: seed, public key, message, signature
    "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
    "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    "72",
    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")


def test_ed25519_matches_rfc8032() -> None:
    seed, public, message, signature = (bytes.fromhex(h) for h in RFC8032_TEST_2)
    assert ed25519.public_key(seed) == public
    assert ed25519.sign(seed, message) == signature
    assert ed25519.verify(public, message, signature)
    assert not ed25519.verify(public, b"\x73", signature)
    assert not ed25519.verify(public, message, signature[:63] + bytes([signature[63] ^ 1]))


def test_minisign_files_round_trip_and_refuse_tampering() -> None:
    secret = minisign.generate()
    assert minisign.parse_secret_key(secret.to_text()) == secret
    public = minisign.parse_public_key(secret.public.to_text())
    text = minisign.sign_bytes(secret, b"data", "gemba-bundle version=1.2")
    key, comment = minisign.verify_bytes([public], b"data", text, "x.minisig")
    assert (key, comment) == (public, "gemba-bundle version=1.2")
    with pytest.raises(BundleError, match="does not match"):
        minisign.verify_bytes([public], b"dat4", text, "x.minisig")
    forged = text.replace("version=1.2", "version=9.9")
    with pytest.raises(BundleError, match="trusted comment was changed"):
        minisign.verify_bytes([public], b"data", forged, "x.minisig")
    with pytest.raises(BundleError, match="does not trust"):
        minisign.verify_bytes([minisign.generate().public], b"data", text, "x.minisig")


def _minisign_binary() -> str | None:
    return os.environ.get("GEMBA_TEST_MINISIGN") or shutil.which("minisign")


@pytest.mark.skipif(_minisign_binary() is None,
                    reason="the minisign tool is not installed (apt-get download minisign; "
                           "dpkg -x; GEMBA_TEST_MINISIGN=PATH)")
def test_minisign_tool_and_ours_read_each_others_files(tmp_path: Path) -> None:
    tool = _minisign_binary() or ""
    ours = minisign.generate()
    (tmp_path / "ours.pub").write_text(ours.public.to_text())
    (tmp_path / "ours.key").write_text(ours.to_text())
    (tmp_path / "a.txt").write_bytes(b"signed by gemba\n")
    (tmp_path / "a.txt.minisig").write_text(
        minisign.sign_bytes(ours, b"signed by gemba\n", "gemba-bundle version=1"))
    checked = subprocess.run([tool, "-V", "-p", "ours.pub", "-m", "a.txt"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "gemba-bundle version=1" in checked.stdout
    # the tool signs with our secret key, and makes keys we read
    subprocess.run([tool, "-S", "-s", "ours.key", "-m", "a.txt", "-x", "b.minisig",
                    "-t", "by the tool"], cwd=tmp_path, check=True, capture_output=True)
    assert minisign.verify_bytes([ours.public], b"signed by gemba\n",
                                 (tmp_path / "b.minisig").read_text(), "b")[1] == "by the tool"
    subprocess.run([tool, "-G", "-W", "-p", "t.pub", "-s", "t.key"], cwd=tmp_path, check=True,
                   capture_output=True)
    theirs = minisign.parse_secret_key((tmp_path / "t.key").read_text())
    assert theirs.public == minisign.parse_public_key((tmp_path / "t.pub").read_text())


def test_the_bundle_installer_imports_only_the_standard_library() -> None:
    folder = ROOT / "installer" / "bundle"
    for name in _STDLIB_MODULES:
        tree = ast.parse((folder / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            for module in roots:
                assert module in sys.stdlib_module_names or module == "__future__", \
                    f"{name} imports {module}"


# ----------------------------------------------------------- variants, releases, backups

@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the variants are x86-64 builds")
def test_variant_picker_takes_the_best_build_this_cpu_allows() -> None:
    both = {"variants": [
        {"name": "x86-64-v3", "requires": ["avx2", "fma"], "machine": "x86_64"},
        {"name": "x86-64", "requires": ["sse4_2"], "machine": "x86_64"}]}
    atom = {"sse2", "sse4_2"}
    assert [v["name"] for v in candidate_variants(both, atom | {"avx2", "fma"})] == \
        ["x86-64-v3", "x86-64"]  # the second is tried if the first fails its self-test
    assert [v["name"] for v in candidate_variants(both, atom)] == ["x86-64"]
    assert candidate_variants({"variants": both["variants"][:1]}, atom) == []
    single = {"variants": [{"name": "native", "requires": [], "machine": "x86_64"}]}
    assert [v["name"] for v in candidate_variants(single, set())] == ["native"]


def test_cpu_features_read_flags_and_nvidia(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse4_2 avx2 fma\n\nprocessor\t: 1\n")
    assert cpu_features(cpuinfo, tmp_path / "none") == {"fpu", "sse4_2", "avx2", "fma"}
    (tmp_path / "nvidia").write_text("NVRM version: 550")
    assert "nvidia" in cpu_features(cpuinfo, tmp_path / "nvidia")


def _fake_release(root: Path, version: str) -> None:
    folder = releases.releases_dir(root) / version
    folder.mkdir(parents=True)
    (folder / releases.MARKER).write_text(json.dumps({"version": version, "variant": "x"}))


def test_switch_keeps_two_previous_releases_and_rollback_goes_back(tmp_path: Path) -> None:
    for version in ("0.1.0.1", "0.1.0.2", "0.1.0.10", "0.1.0.11"):
        _fake_release(tmp_path, version)
        releases.switch(tmp_path, version)
    assert os.readlink(tmp_path / "current") == "releases/0.1.0.11"
    assert releases.prune(tmp_path) == ["0.1.0.1"]  # 10 > 2: numbers, not text
    assert releases.installed(tmp_path) == ["0.1.0.2", "0.1.0.10", "0.1.0.11"]
    assert releases.rollback(tmp_path) == ("0.1.0.11", "0.1.0.10")
    assert releases.rollback(tmp_path) == ("0.1.0.10", "0.1.0.2")
    with pytest.raises(BundleError, match="no earlier release") as refused:
        releases.rollback(tmp_path)
    assert refused.value.exit_code == 66
    assert not list(tmp_path.glob(".current.*"))


def test_database_is_backed_up_before_a_switch(tmp_path: Path) -> None:
    database = tmp_path / "data" / "gemba.db"
    database.parent.mkdir(parents=True)
    with sqlite3.connect(database) as connection:
        connection.execute("create table t (x)")
        connection.execute("insert into t values (42)")
    connection.close()
    backup = releases.backup_database(tmp_path, "0.1.0.9")
    assert backup is not None and "before-0.1.0.9" in backup.name
    with sqlite3.connect(backup) as copy:
        assert copy.execute("select x from t").fetchall() == [(42,)]
    copy.close()
    assert releases.backup_database(tmp_path / "empty", "1") is None


# ------------------------------------------------------------------- the real bundle

@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    subprocess.run([PYTHON, "-m", "appliance", "bundle", "keygen", "--out", str(folder)],
                   check=True, capture_output=True, env=_build_env())
    other = minisign.generate()
    (folder / "other.key").write_text(other.to_text())
    return {"secret": folder / "gemba-bundle.key", "public": folder / "gemba-bundle.pub",
            "other": folder / "other.key"}


def _build_env() -> dict[str, str]:
    # The build runs on the connected machine: pip may reach PyPI (the network guard is not
    # loaded into this child). Everything after the build is offline.
    return {k: v for k, v in os.environ.items() if not k.startswith("GEMBA_")}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Path:
    wheel = _cached_llama_wheel()
    if wheel is None:
        pytest.skip("no llama_cpp_python wheel in pip's cache (run `make setup` first)")
    out = tmp_path_factory.mktemp("bundle") / "gemba-bundle"
    result = subprocess.run(
        [PYTHON, "-m", "appliance", "bundle", "build", "--out", str(out), "--key",
         str(keys["secret"]), "--llama-wheel", str(wheel), "--version", BUNDLE_VERSION,
         "--json"], capture_output=True, text=True, env=_build_env(), timeout=900)
    if result.returncode != 0 and "downloading" in result.stderr:
        pytest.skip(f"the build machine cannot reach PyPI: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"] == BUNDLE_VERSION
    return out


def test_bundle_lists_and_locks_every_file(bundle: Path) -> None:
    signed = json.loads((bundle / manifest.MANIFEST).read_text())
    assert set(signed["files"]) == set(manifest.bundle_files(bundle))
    lock = (bundle / "wheels" / "requirements.lock").read_text()
    assert "gemba==0.1.0 --hash=sha256:" in lock and "llama" not in lock
    assert len(signed["wheels"]) == lock.count("--hash=sha256:")
    assert [v["name"] for v in signed["variants"]] == ["native"]
    (model,) = signed["models"]
    assert model["licence"] == "Apache-2.0" and len(model["sha256"]) == 64
    assert (bundle / "profiles").glob("*.toml") and (bundle / "docs" / "offline.md").is_file()
    assert (bundle / "licences" / "THIRD-PARTY.txt").read_text().count("\n") > 40


def test_verify_is_fast_and_changes_nothing(bundle: Path, keys: dict[str, Path],
                                           tmp_path: Path) -> None:
    before = _tree_hashes(bundle)
    started = time.monotonic()
    result = subprocess.run([PYTHON, "-m", "appliance", "bundle", "verify", str(bundle),
                             "--root", str(tmp_path / "root"), "--trust", str(keys["public"]),
                             "--json"], capture_output=True, text=True, env=_build_env())
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 15
    assert json.loads(result.stdout)["version"] == BUNDLE_VERSION
    assert _tree_hashes(bundle) == before and not (tmp_path / "root").exists()


def _tree_hashes(*folders: Path) -> dict[str, str]:
    hashes = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            key = str(path)
            if path.is_symlink():
                hashes[key] = "-> " + os.readlink(path)
            elif path.is_file():
                hashes[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                hashes[key] = "dir"
    return hashes


@pytest.fixture
def box(tmp_path: Path, keys: dict[str, Path]) -> tuple[Path, Path]:
    """A box with release 0.1.0.3 current, the site's key trusted and a database."""
    root, home = tmp_path / "opt-gemba", tmp_path / "home"
    _fake_release(root, INSTALLED_VERSION)
    releases.switch(root, INSTALLED_VERSION)
    releases.keys_dir(root).mkdir()
    shutil.copy(keys["public"], releases.keys_dir(root) / "site.pub")
    (home / "data").mkdir(parents=True)
    with sqlite3.connect(home / "data" / "gemba.db") as connection:
        connection.execute("create table t (x)")
    connection.close()
    return root, home


def _resign(bundle: Path, key_file: Path, version: str | None = None) -> None:
    signed = json.loads((bundle / manifest.MANIFEST).read_text())
    if version:
        signed["version"] = version
    secret = minisign.parse_secret_key(key_file.read_text())
    manifest.write_signed(bundle, signed, secret)


def _one_byte_changed(copy: Path, keys: dict[str, Path]) -> str:
    wheel = sorted((copy / "wheels").glob("numpy-*.whl"))[0]
    data = bytearray(wheel.read_bytes())
    data[len(data) // 2] ^= 0x01
    wheel.write_bytes(bytes(data))
    return f"wheels/{wheel.name} was changed"


def _missing(copy: Path, keys: dict[str, Path]) -> str:
    (copy / "profiles" / "README.md").unlink()
    return "profiles/README.md is missing"


def _extra(copy: Path, keys: dict[str, Path]) -> str:
    (copy / "wheels" / "helper-1.0-py3-none-any.whl").write_bytes(b"PK\x05\x06" + bytes(18))
    return "wheels/helper-1.0-py3-none-any.whl is not in the manifest"


def _bad_signature(copy: Path, keys: dict[str, Path]) -> str:
    # someone edits the manifest to match a changed file, but cannot sign it
    signed = (copy / manifest.MANIFEST).read_text()
    (copy / manifest.MANIFEST).write_text(signed.replace('"size": ', '"size":  ', 1))
    return "the signature does not match"


def _unknown_key(copy: Path, keys: dict[str, Path]) -> str:
    _resign(copy, keys["other"])
    return "which this box does not trust"


def _older_version(copy: Path, keys: dict[str, Path]) -> str:
    _resign(copy, keys["secret"], "0.1.0.2")
    return f"bundle 0.1.0.2 is older than the release installed ({INSTALLED_VERSION}"


TAMPERED = [_one_byte_changed, _missing, _extra, _bad_signature, _unknown_key, _older_version]


@pytest.mark.parametrize("tamper", TAMPERED, ids=lambda f: f.__name__.strip("_"))
def test_tampered_bundle_is_refused_with_the_box_unchanged(
        tamper, bundle: Path, keys: dict[str, Path], box: tuple[Path, Path],
        tmp_path: Path) -> None:
    root, home = box
    copy = tmp_path / "carried"
    shutil.copytree(bundle, copy)
    reason = tamper(copy, keys)
    before = _tree_hashes(root, home)
    started = time.monotonic()
    result = subprocess.run([BARE_PYTHON, "-S", "-I", str(copy / "install.py"), "--root",
                             str(root), "--home", str(home)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 65, result.stderr
    assert reason in result.stderr
    assert "what to do:" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 15
    assert _tree_hashes(root, home) == before


def test_gemba_bundle_install_refuses_a_changed_wheel_too(
        bundle: Path, keys: dict[str, Path], box: tuple[Path, Path], tmp_path: Path) -> None:
    root, home = box
    copy = tmp_path / "carried"
    shutil.copytree(bundle, copy)
    reason = _one_byte_changed(copy, keys)
    before = _tree_hashes(root, home)
    result = subprocess.run([PYTHON, "-m", "appliance", "bundle", "install", str(copy),
                             "--root", str(root), "--home", str(home)],
                            capture_output=True, text=True, env=_build_env(), timeout=120)
    assert result.returncode == 65 and reason in result.stderr, result.stderr
    assert _tree_hashes(root, home) == before


@pytest.mark.model
@pytest.mark.skipif(not _namespaces_available(),
                    reason="user+network namespaces (unshare -rn) not permitted here")
def test_bundle_installs_and_answers_with_no_network_at_all(
        bundle: Path, keys: dict[str, Path], tmp_path: Path) -> None:
    root, home = tmp_path / "opt-gemba", tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(f"[daemon]\nport = {free_port()}\nidle_timeout_s = 60\n")
    gemba = root / "current" / "bin" / "gemba"
    script = (
        "ip link set lo up && ip -o link show | awk -F': ' '{print $2}' > interfaces.txt && "
        f"{BARE_PYTHON} -S -I {bundle / 'install.py'} --root {root} --home {home} "
        f"--trust {keys['public']} && "
        f"{gemba} ask --json --max-tokens 12 --temperature 0 'What does a torque wrench do?'; "
        f"status=$?; {gemba} stop >/dev/null 2>&1; exit $status")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GEMBA_", "PIP_", "XDG_")) and k != "PYTHONPATH"}
    env.update(GEMBA_HOME=str(home), PIP_CONFIG_FILE=os.devnull, NO_COLOR="1")
    started = time.monotonic()
    result = subprocess.run(["unshare", "-rn", "sh", "-c", script], env=env, cwd=home,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (home / "interfaces.txt").read_text().split() == ["lo"]
    assert time.monotonic() - started < 180
    answer = json.loads(result.stdout[result.stdout.index("{"):])
    assert answer["answer"].strip() and answer["model_id"] == "smollm2-135m-instruct-q4_1"
    assert os.readlink(root / "current") == f"releases/{BUNDLE_VERSION}"
    info = releases.release_info(root, BUNDLE_VERSION)
    assert info["variant"] == "native"
    assert len(list(releases.keys_dir(root).glob("*.pub"))) == 1  # trusted from now on
    assert not list(bundle.rglob("__pycache__"))  # the bundle stays as signed
