"""Layers point one way: the core imports no UI, HTTP framework, llama_cpp or pynvml.

Each core module is imported in a fresh interpreter, and the heavy libraries must not have been
loaded as a side effect (harlequin's test_import_hygiene pattern).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "appliance" / "store"
CORE_MODULES = [
    "appliance.config",
    "appliance.errors",
    "appliance.models",
    "appliance.governor",
    "appliance.inference.protocol",
    "appliance.inference.stops",
    "appliance.limits",
    "installer.derive",
    "installer.plan",
    "installer.profiles",
    "appliance.store",
    # Every store module, found on disk: a new one is checked without being listed here.
    *sorted(f"appliance.store.{p.stem}" for p in STORE.glob("*.py") if p.stem != "__init__"),
]
FORBIDDEN = ["textual", "llama_cpp", "pynvml", "fastapi", "starlette", "uvicorn", "httpx"]


def _loaded_after_import(module: str, cwd: Path = ROOT) -> list[str]:
    code = (f"import sys, {module}; "
            f"print(' '.join(m for m in {FORBIDDEN!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=cwd, check=True)
    return result.stdout.split()


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_loads_no_ui_http_or_native_library(module: str) -> None:
    assert _loaded_after_import(module) == []


def test_daemon_side_engine_code_does_not_load_llama_cpp() -> None:
    # The daemon must survive llama.cpp aborts, so only the worker process may load it.
    assert "llama_cpp" not in _loaded_after_import("appliance.daemon")


def test_installer_package_is_ours_not_pypas(tmp_path: Path) -> None:
    # `installer` is also PyPA's wheel installer; from any folder it must resolve to this project.
    code = "import installer; print(installer.__file__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, check=True)
    assert Path(result.stdout.strip()).resolve().is_relative_to(ROOT)


def test_only_the_engine_module_imports_llama_cpp() -> None:
    """llama.cpp is driven one way: the self-test, burn-in and daemon all go through
    appliance.inference.llama, so what setup checks is what the appliance runs."""
    importers = sorted(
        str(path.relative_to(ROOT)) for folder in ("appliance", "installer")
        for path in (ROOT / folder).rglob("*.py")
        if re.search(r"^\s*(import llama_cpp|from llama_cpp\b)", path.read_text("utf-8"),
                     re.MULTILINE))
    assert importers == ["appliance/inference/llama.py"]
