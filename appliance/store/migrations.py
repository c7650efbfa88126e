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


@migrations()
def create_knowledge(db: sqlite_utils.Database) -> None:
    """Plant documents: each document has revisions (the newest current, the older superseded
    but kept for the record), each revision its chunks; only current chunks are searched."""
    db["knowledge_documents"].create(
        {"id": int, "key": str, "title": str, "created_at": str, "updated_at": str},
        pk="id", not_null={"key", "title", "created_at", "updated_at"},
    )
    db["knowledge_documents"].create_index(["key"], unique=True)
    db["knowledge_revisions"].create(
        {"id": int, "document_id": int, "number": int, "label": str, "title": str, "file": str,
         "sha256": str, "bytes": int, "format": str, "encoding": str, "pages": int,
         "flagged_pages_json": str, "warnings_json": str, "chunk_count": int,
         "imported_at": str, "superseded_at": str, "superseded_by": int},
        pk="id", foreign_keys=[("document_id", "knowledge_documents", "id")],
        not_null={"document_id", "number", "label", "title", "file", "sha256", "bytes", "format",
                  "chunk_count", "imported_at"},
    )
    db["knowledge_revisions"].create_index(["sha256"], unique=True)
    db["knowledge_revisions"].create_index(["document_id", "number"], unique=True)
    db["knowledge_chunks"].create(
        {"id": int, "revision_id": int, "document_id": int, "ord": int, "section": str,
         "page": int, "kind": str, "text": str, "search_text": str},
        pk="id", foreign_keys=[("revision_id", "knowledge_revisions", "id"),
                               ("document_id", "knowledge_documents", "id")],
        not_null={"revision_id", "document_id", "ord", "section", "kind", "text",
                  "search_text"},
    )
    db["knowledge_chunks"].create_index(["revision_id"])
    db["knowledge_codes"].create({"chunk_id": int, "code": str}, pk=("code", "chunk_id"),
                                 foreign_keys=[("chunk_id", "knowledge_chunks", "id")])
    # External content: the FTS index keeps only the tokens; the text lives in knowledge_chunks.
    # search_text arrives as tokens already (CJK split, words stemmed: knowledge/text.py), so
    # Python can tell which of a question's terms a passage holds without asking FTS again.
    db.execute("""create virtual table knowledge_chunks_fts using fts5(
        search_text, content='knowledge_chunks', content_rowid='id',
        tokenize='unicode61 remove_diacritics 0')""")


@migrations()
def add_answer_basis(db: sqlite_utils.Database) -> None:
    """What each answer relied on: `documents` (with the cited passages and their revisions),
    `none` (refused: no basis in the plant documents), or unset (plain chat)."""
    db["messages"].add_column("basis", str)
    db["messages"].add_column("citations_json", str)


@migrations()
def create_audit(db: sqlite_utils.Database) -> None:
    """The hash-chained audit trail (store/audit.py); its first entry seals the rows already
    stored, so that an upgraded box's earlier answers are checked as they were."""
    from appliance.store import audit  # audit writes through db.py, which imports this module

    audit.create(db)
