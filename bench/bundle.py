"""Offline bundle: how long build, verify and install take (issue 12, item 3).

What it measures, each a wall-clock time of the real command in a child process:
  * build_s:   `gemba bundle build` with the llama-cpp-python wheel `make setup` left in pip's
               cache (--llama-wheel; compiling the x86-64 / x86-64-v3 variants adds about 8
               minutes each on 2 cores and is not measured here), dependency wheels from pip
               (its cache, and PyPI for the index: this is the connected machine).
  * verify_s:  `python3 -S -I BUNDLE/install.py --verify-only`: the signature and every file's
               sha256, with the standard library only.
  * install_s: `python3 -S -I BUNDLE/install.py` into a fresh root: venv, pip --no-index
               --require-hashes, model self-test, switch. Inside `unshare -rn` (only loopback)
               when this machine allows it.
Goals: verify <= 15 s and install <= 180 s on 2 cores.

    .venv/bin/python bench/bundle.py [--output bench/results/bundle.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BARE_PYTHON = str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")
GOALS_S = {"verify_s": 15.0, "install_s": 180.0}


def _timed(command: list[str], **kwargs: object) -> float:
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])}... failed:\n{result.stderr[-2000:]}")
    return round(time.monotonic() - started, 2)


def _namespaces() -> bool:
    return shutil.which("unshare") is not None and \
        subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "bundle.json")
    options = parser.parse_args()
    wheels = sorted((Path.home() / ".cache" / "pip").rglob("llama_cpp_python-0.3.36-*.whl"))
    if not wheels:
        print("no llama_cpp_python wheel in pip's cache: run `make setup` first", file=sys.stderr)
        return 66
    gemba = [sys.executable, "-m", "appliance", "bundle"]
    with tempfile.TemporaryDirectory(prefix="gemba-bench-bundle-") as scratch:
        work = Path(scratch)
        subprocess.run([*gemba, "keygen", "--out", str(work / "keys")], check=True,
                       capture_output=True)
        bundle = work / "bundle"
        build_s = _timed([*gemba, "build", "--out", str(bundle), "--key",
                          str(work / "keys" / "gemba-bundle.key"), "--llama-wheel",
                          str(wheels[0])])
        size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
        trust = ["--trust", str(work / "keys" / "gemba-bundle.pub")]
        verify_s = _timed([BARE_PYTHON, "-S", "-I", str(bundle / "install.py"), "--verify-only",
                           "--root", str(work / "root"), *trust])
        install = [BARE_PYTHON, "-S", "-I", str(bundle / "install.py"), "--root",
                   str(work / "root"), "--home", str(work / "home"), *trust]
        offline = _namespaces()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMBA_", "PIP_"))}
        install_s = _timed(["unshare", "-rn", *install] if offline else install, env=env)
    result = {
        "build_s": build_s, "verify_s": verify_s, "install_s": install_s,
        "bundle_bytes": size, "install_in_network_namespace": offline,
        "goals_s": GOALS_S,
        "within_goals": verify_s <= GOALS_S["verify_s"] and install_s <= GOALS_S["install_s"],
        "llama_variants": "native (prebuilt wheel from pip's cache); variants not compiled",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
