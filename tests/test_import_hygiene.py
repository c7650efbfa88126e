"""Layers point one way: the core imports no UI, HTTP framework, llama_cpp or pynvml.

Each core module is imported in a fresh interpreter, and the heavy libraries must not have been
loaded as a side effect (harlequin's test_import_hygiene pattern).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE_MODULES = [
    "appliance.config",
    "appliance.errors",
    "appliance.models",
    "appliance.store",
    "appliance.store.conversations",
    "appliance.inference.protocol",
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
