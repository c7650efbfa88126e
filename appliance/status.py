"""`gemba status`: the running daemon's view, or the stored events when it is not running."""

from __future__ import annotations

from typing import Any

from appliance.client import ApplianceClient
from appliance.config import Paths, Settings
from appliance.launcher import local_url
from appliance.store import open_store
from appliance.store.events import recent_events


def read_status(settings: Settings, paths: Paths) -> dict[str, Any]:
    client = ApplianceClient(local_url(settings), settings.daemon.api_key)
    try:
        if client.health() is not None:
            return {"running": True, **client.status()}
    finally:
        client.close()
    events = recent_events(open_store(paths.db_file)) if paths.db_file.exists() else []
    return {"running": False, "health": None, "governor": None, "last_sample": None,
            "events": events}


def status_lines(report: dict[str, Any]) -> list[str]:
    if not report["running"]:
        lines = ["The appliance is not running (start it with `gemba console` or `gemba serve`)."]
    else:
        health, governor = report["health"], report["governor"]
        rate = report.get("tok_per_s")
        lines = [
            f"Engine    {health['engine_state']}  model {health['model_id']}",
            f"Governor  {governor['mode']} (severity {governor['severity']}, duty "
            f"{governor['duty']:.0%}): {governor['reason']}",
            f"Speed     {rate:.1f} tok/s" if rate else "Speed     idle",
        ]
        sample = report.get("last_sample") or {}
        figures = [f"{name} {sample[key]:g}{unit}" for key, name, unit in (
            ("cpu_temp_c", "CPU", " °C"), ("gpu_temp_c", "GPU", " °C"),
            ("gpu_power_w", "GPU", " W"), ("box_power_w", "box", " W")) if sample.get(key)
            is not None]
        if sample:
            figures.append(f"free RAM {sample['mem_available_bytes'] / 2**30:.1f} GiB")
        lines.append("Sample    " + (", ".join(figures) or "no sensors"))
        storage = health.get("storage") or {}
        if storage.get("free_bytes") is not None:
            lines.append(f"Storage   {storage['free_bytes'] / 2**30:.1f} GiB free")
        if storage.get("warning"):
            lines.append(f"WARNING   {storage['message']}")
    for event in report["events"][:5]:
        lines.append(f"Event     {event['at'][:19].replace('T', ' ')}  {event['from_mode']} -> "
                     f"{event['to_mode']}: {event['reason']}")
    return lines
