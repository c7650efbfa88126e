"""Offline: the appliance installs nothing and reaches nothing at run time.

The strongest proof: run `gemba ask` (which starts the daemon and the engine worker) inside a
new network namespace that has only a loopback interface. Every other test also runs under the
network guard in tests/netguard (any non-loopback connection or lookup fails the session).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import PYTHON, GembaHome

pytestmark = pytest.mark.model


def _namespaces_available() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _namespaces_available(),
                    reason="user+network namespaces (unshare -rn) not permitted here")
def test_ask_works_in_a_namespace_without_any_network(gemba_home: GembaHome) -> None:
    script = (
        "ip link set lo up && "
        "ip -o link show | awk -F': ' '{print $2}' > interfaces.txt && "
        f"exec {PYTHON} -m appliance ask --json --max-tokens 20 --temperature 0 "
        "'Which document describes the lockout procedure?'"
    )
    result = subprocess.run(["unshare", "-rn", "sh", "-c", script], env=gemba_home.env,
                            cwd=gemba_home.home, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    interfaces = (gemba_home.home / "interfaces.txt").read_text().split()
    assert interfaces == ["lo"]  # nothing but loopback existed
    answer = json.loads(result.stdout)
    assert answer["answer"].strip()
    assert answer["finish_reason"] in ("stop", "length")
