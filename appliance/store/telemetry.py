"""Telemetry history: a second SQLite file, written once a second, bounded for years.

`synchronous=NORMAL`: losing the last second of telemetry in a power cut is harmless, and it
keeps the once-a-second write off the disk's critical path. Per-second rows are kept for
`raw_hours`, then only per-minute summaries (for `minute_days`), then per-hour summaries for a
year: about 86 400 + 43 200 + 8 760 rows at the most.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import sqlite_utils

from appliance.hardware.telemetry import Sample
from appliance.store.db import connect

_FIGURES = ("cpu_temp_c", "gpu_temp_c", "gpu_power_w", "box_power_w", "mem_available_bytes",
            "process_rss_bytes", "cpu_percent", "tok_per_s", "duty")
_YEAR_S = 366 * 86400
# The most severe mode of a bucket, in SQL.
_WORST_MODE = ("case max(case mode when 'refused' then 3 when 'paused' then 2 "
               "when 'slowed' then 1 else 0 end) when 3 then 'refused' when 2 then 'paused' "
               "when 1 then 'slowed' else 'normal' end")


class TelemetryStore:
    def __init__(self, path: Path, raw_hours: float = 24.0, minute_days: float = 30.0) -> None:
        self.db = sqlite_utils.Database(connect(path, synchronous="NORMAL"))
        self.raw_s = raw_hours * 3600
        self.minute_s = minute_days * 86400
        columns: dict[str, Any] = {"t": float, **{name: float for name in _FIGURES},
                                   "mode": str}
        for table in ("samples", "samples_1m", "samples_1h"):
            if table not in self.db.table_names():
                self.db[table].create(columns, pk="t")

    def record(self, sample: Sample, mode: str, duty: float, tok_per_s: float | None,
               wall_t: float | None = None) -> None:
        row = {k: v for k, v in asdict(sample).items() if k in _FIGURES}
        row.update(t=wall_t if wall_t is not None else time.time(), mode=mode, duty=duty,
                   tok_per_s=tok_per_s)
        self.db["samples"].insert(row, replace=True)

    def roll_up(self, now: float | None = None) -> None:
        """Summarise old rows into coarser tables and drop what is past its retention."""
        now = time.time() if now is None else now
        with self.db.atomic():
            self._summarise("samples", "samples_1m", 60, now - self.raw_s)
            self._summarise("samples_1m", "samples_1h", 3600, now - self.minute_s)
            self.db.execute("delete from samples_1h where t < ?", [now - _YEAR_S])

    def _summarise(self, source: str, target: str, bucket_s: int, before: float) -> None:
        # Temperatures, power and memory keep their worst value per bucket; rates the mean.
        worst = {"cpu_temp_c": "max", "gpu_temp_c": "max", "gpu_power_w": "max",
                 "box_power_w": "max", "mem_available_bytes": "min", "process_rss_bytes": "max"}
        parts = ", ".join(f"{worst.get(name, 'avg')}({name})" for name in _FIGURES)
        before = before // bucket_s * bucket_s  # whole buckets only: never summarise half
        self.db.execute(
            f"insert or replace into {target} (t, {', '.join(_FIGURES)}, mode) "
            f"select cast(t / {bucket_s} as integer) * {bucket_s}, {parts}, {_WORST_MODE} "
            f"from {source} where t < ? group by cast(t / {bucket_s} as integer)", [before])
        self.db.execute(f"delete from {source} where t < ?", [before])

    def recent(self, seconds: float, now: float | None = None) -> list[dict[str, Any]]:
        """Per-second rows of the last `seconds`, oldest first."""
        since = (time.time() if now is None else now) - seconds
        return list(self.db["samples"].rows_where("t >= ?", [since], order_by="t"))

    def count(self, table: str = "samples") -> int:
        return self.db[table].count

    def close(self) -> None:
        self.db.conn.close()
