"""Schema versions. Append new steps; never edit one that has shipped."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils import Migrations

migrations = Migrations("gemba")


@migrations()
def create_conversations(db: sqlite_utils.Database) -> None:
    db["conversations"].create(
        {"id": int, "title": str, "operator": str, "model_id": str, "created_at": str,
         "updated_at": str},
        pk="id",
    )
    db["messages"].create(
        {
            "id": int,
            "conversation_id": int,
            "role": str,
            "content": str,
            "prompt_tokens": int,
            "completion_tokens": int,
            "ttft_s": float,
            "tok_per_s": float,
            "model_id": str,
            "model_sha256": str,
            "finish_reason": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
        not_null={"conversation_id", "role", "content", "created_at"},
    )
    db["messages"].create_index(["conversation_id"])


@migrations()
def create_install_reports(db: sqlite_utils.Database) -> None:
    db["install_reports"].create(
        {"id": int, "created_at": str, "profile": str, "model_id": str, "ok": int,
         "report_json": str},
        pk="id",
        not_null={"created_at", "report_json"},
    )


@migrations()
def create_governor_events(db: sqlite_utils.Database) -> None:
    db["governor_events"].create(
        {"id": int, "at": str, "from_mode": str, "to_mode": str, "duty": float,
         "severity": str, "reason": str, "figures_json": str, "tok_per_s_before": float,
         "tok_per_s_after": float},
        pk="id",
        not_null={"at", "from_mode", "to_mode", "reason"},
    )
