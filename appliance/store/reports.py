"""Install reports: what `gemba install apply` decided, measured and judged, kept on the box."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from appliance.errors import NotFound
from appliance.store import audit
from appliance.store.conversations import now_iso
from appliance.store.db import write_transaction


def add_report(db: sqlite_utils.Database, report: dict[str, Any],
               config_sha256: str | None = None) -> int:
    """The report and its audit entry (with the hash of the config it left), in one
    transaction."""
    with write_transaction(db):
        report_id = db["install_reports"].insert({
            "created_at": now_iso(), "profile": report.get("profile"),
            "model_id": report.get("model_id"), "ok": int(bool(report.get("ok"))),
            "report_json": json.dumps(report, ensure_ascii=False, default=str)}).last_pk
        audit.record_install(db, report_id, report, config_sha256)
    return report_id


def last_report(db: sqlite_utils.Database) -> dict[str, Any]:
    rows = list(db["install_reports"].rows_where(order_by="id desc", limit=1))
    if not rows:
        raise NotFound("no install report on this box yet",
                       "commission it with `gemba install apply --profile NAME --model ID`")
    return {"id": rows[0]["id"], "created_at": rows[0]["created_at"],
            **json.loads(rows[0]["report_json"])}
