"""llama.cpp's own `llama-bench`, built from the llama.cpp inside the llama-cpp-python sdist.

The reference for bench/decode.py: the same llama.cpp source the engine runs, compiled with the
Makefile's flags (native, minus AMX), measured without Python. Everything is cached under
bench/.cache/ (ignored by git): the sdist (from pip's cache or `pip download`, offline once
cached), its extracted source and the build. A built binary is never rebuilt.

    .venv/bin/python bench/llama_bench.py            # build only (several minutes on 2 cores)
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
BUILD = CACHE / "llama-bench-build"
BINARY = BUILD / "bin" / "llama-bench"

# The Makefile's LLAMA_CMAKE_ARGS: AMX tiles fault in VMs that advertise them.
_NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
_CMAKE_FLAGS = ["-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_BUILD_TOOLS=ON",
                "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_CURL=OFF"]


def llama_cpp_version() -> str:
    from importlib.metadata import version

    return version("llama_cpp_python")


def sdist(version: str) -> Path:
    """The sdist tarball, downloaded once into the cache."""
    cached = CACHE / f"llama_cpp_python-{version}.tar.gz"
    if not cached.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                        ":all:", f"llama-cpp-python=={version}", "-d", str(CACHE)], check=True)
    return cached


def source(version: str) -> Path:
    """llama.cpp's source tree from the sdist (vendor/llama.cpp), extracted once."""
    top = CACHE / f"llama_cpp_python-{version}"
    tree = top / "vendor" / "llama.cpp"
    if not (tree / "CMakeLists.txt").exists():
        with tarfile.open(sdist(version)) as archive:
            archive.extractall(CACHE, filter="data")
    return tree


def cmake_flags() -> list[str]:
    flags = list(_CMAKE_FLAGS)
    if platform.machine() == "x86_64":
        flags += [f"-DCMAKE_C_FLAGS={_NO_AMX}", f"-DCMAKE_CXX_FLAGS={_NO_AMX}"]
    return flags


def build(jobs: int = 2) -> Path:
    """The llama-bench binary: configured and built only the first time."""
    if BINARY.exists():
        return BINARY
    tree = source(llama_cpp_version())
    subprocess.run(["cmake", "-S", str(tree), "-B", str(BUILD), *cmake_flags()], check=True)
    subprocess.run(["cmake", "--build", str(BUILD), "--target", "llama-bench", f"-j{jobs}"],
                   check=True)
    return BINARY


def tg_at_depth(model_path: Path, n_threads: int, tokens: int, depth: int,
                repetitions: int, flash_attn: bool) -> dict[str, Any]:
    """llama-bench's tg<tokens> at depth <depth>: decode rate with <depth> tokens already in the
    KV cache (the prompt), no prompt processing measured (-p 0). Flash attention is set as the
    engine sets it (llama-bench's own default, auto, turns it on for the CPU)."""
    command = [str(build()), "-m", str(model_path), "-p", "0", "-n", str(tokens),
               "-d", str(depth), "-t", str(n_threads), "-r", str(repetitions),
               "-fa", "on" if flash_attn else "off", "-o", "json"]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result = json.loads(done.stdout)[0]
    return {"command": " ".join(command[1:]), "tok_per_s": round(result["avg_ts"], 3),
            "stddev_tok_per_s": round(result["stddev_ts"], 3),
            "samples_tok_per_s": [round(x, 3) for x in result.get("samples_ts", [])],
            "build_commit": result.get("build_commit"), "n_depth": result.get("n_depth"),
            "flash_attn": result.get("flash_attn")}


if __name__ == "__main__":
    print(build())
