"""FAULTS.md 9: with an API key set, every route but /healthz needs it; refusals say nothing about
which part was wrong, and the daemon log records them."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import GembaHome

pytestmark = pytest.mark.model


def test_a_missing_or_wrong_key_is_refused_and_logged(gemba_home: GembaHome) -> None:
    gemba_home.write_config(gemba_home.config_file.read_text().replace(
        "[daemon]\n", '[daemon]\napi_key = "s3cret-key"\n'))
    daemon = gemba_home.start_daemon()
    url = f"{gemba_home.url}/v1/appliance/documents"
    missing = httpx.get(url, timeout=5)
    wrong = httpx.get(url, headers={"Authorization": "Bearer s3cret-kez"}, timeout=5)
    scheme = httpx.get(url, headers={"Authorization": "Basic s3cret-key"}, timeout=5)
    assert missing.status_code == wrong.status_code == scheme.status_code == 401
    assert missing.json() == wrong.json() == scheme.json(), "no hint which part was wrong"
    right = httpx.get(url, headers={"Authorization": "Bearer s3cret-key"}, timeout=5)
    assert right.status_code == 200
    assert httpx.get(f"{gemba_home.url}/healthz", timeout=5).status_code == 200
    sop = gemba_home.home / "sop.md"
    sop.write_text("# Pump SOP\n\nClose the valve.\n", encoding="utf-8")
    laptop = gemba_home.gemba("docs", "--connect", gemba_home.url, "--api-key", "wrong",
                              "import", str(sop), str(sop))
    assert laptop.returncode == 77, "a wrong key stops the import, not file by file"
    assert "API key" in laptop.stderr and "Traceback" not in laptop.stderr
    keyed = gemba_home.gemba("docs", "--connect", gemba_home.url, "--api-key", "s3cret-key",
                             "import", str(sop))
    assert keyed.returncode == 0, keyed.stderr
    gemba_home.stop_all()
    log = daemon.stderr.read() if daemon.stderr else ""
    assert "without a valid API key" in log and "/v1/appliance/documents" in log
    assert "s3cret" not in log, "the key itself is never logged"
