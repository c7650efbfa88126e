"""Governor events: every change of mode with its reason, figures and the speed it caused."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from appliance.store import audit
from appliance.store.conversations import now_iso
from appliance.store.db import write_transaction


def add_event(db: sqlite_utils.Database, from_mode: str, to_mode: str, duty: float,
              severity: str, reason: str, figures: dict[str, Any],
              tok_per_s_before: float | None) -> int:
    """The event; a stop (a change into a mode that stops work) with its audit entry."""
    with write_transaction(db):
        event_id = db["governor_events"].insert({
            "at": now_iso(), "from_mode": from_mode, "to_mode": to_mode, "duty": duty,
            "severity": severity, "reason": reason,
            "figures_json": json.dumps(figures, default=str),
            "tok_per_s_before": tok_per_s_before}).last_pk
        if to_mode in audit.STOP_MODES and from_mode != to_mode:
            audit.record_governor_stop(db, event_id)
    return event_id


def set_rate_after(db: sqlite_utils.Database, event_id: int, tok_per_s: float | None) -> None:
    with write_transaction(db):
        db["governor_events"].update(event_id, {"tok_per_s_after": tok_per_s})


def recent_events(db: sqlite_utils.Database, limit: int = 10) -> list[dict[str, Any]]:
    rows = list(db["governor_events"].rows_where(order_by="id desc", limit=limit))
    for row in rows:
        row["figures"] = json.loads(row.pop("figures_json") or "{}")
    return rows
