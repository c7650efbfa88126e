"""Conversations and their messages: the operator's history."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from appliance.errors import NotFound
from appliance.store import audit
from appliance.store.db import write_transaction

_TITLE_CHARS = 80


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def local_time(stamp: str, spec: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A stored stamp (UTC) on this machine's clock, for people to read; as stored if it is not
    one of ours."""
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime(spec)
    except ValueError:
        return stamp


@dataclass(frozen=True)
class AnswerRecord:
    """What the engine reported about one answer, as it is stored."""

    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float | None
    tok_per_s: float | None
    model_id: str
    model_sha256: str
    basis: str | None = None
    """documents, none (refused for lack of basis) or None (plain chat)."""
    citations: tuple[dict[str, Any], ...] = ()
    """The passages relied on, each with the document revision it came from."""
    nearest: tuple[dict[str, Any], ...] = ()
    """With basis none: the closest passages shown instead (not stored: the answer's text
    lists them)."""

    def row(self) -> dict[str, Any]:
        fields = {k: v for k, v in self.__dict__.items() if k not in ("citations", "nearest")}
        return {**fields, "citations_json": json.dumps(list(self.citations), ensure_ascii=False)
                if self.basis is not None else None}


def start_conversation(db: sqlite_utils.Database, question: str, model_id: str,
                       operator: str | None = None) -> int:
    stamp = now_iso()
    title = " ".join(question.split())[:_TITLE_CHARS]
    with write_transaction(db):
        return db["conversations"].insert(
            {"title": title, "operator": operator, "model_id": model_id, "created_at": stamp,
             "updated_at": stamp}
        ).last_pk


def add_question(db: sqlite_utils.Database, conversation_id: int, question: str) -> int:
    return _add(db, conversation_id, {"role": "user", "content": question})


def add_answer(db: sqlite_utils.Database, conversation_id: int, answer: AnswerRecord,
               context: audit.AnswerContext | None = None) -> int:
    """The answer and its audit entry, in one transaction."""
    with write_transaction(db):
        message_id = _add(db, conversation_id, {"role": "assistant", **answer.row()})
        audit.record_answer(db, message_id, context)
    return message_id


def _add(db: sqlite_utils.Database, conversation_id: int, row: dict[str, Any]) -> int:
    stamp = now_iso()
    with write_transaction(db):
        if not db["conversations"].count_where("id = ?", [conversation_id]):
            raise NotFound(f"conversation {conversation_id} does not exist",
                           "run `gemba history` to list conversations")
        message_id = db["messages"].insert(
            {"conversation_id": conversation_id, "created_at": stamp, **row}).last_pk
        db["conversations"].update(conversation_id, {"updated_at": stamp})
    return message_id


def mark_interrupted(db: sqlite_utils.Database,
                     context: audit.AnswerContext | None = None) -> int:
    """Questions left without an answer by a power cut or kill -9 get one that says so (finish
    reason `interrupted`, audited like any answer), so history never shows a question as if it
    were still being answered. Run at start-up, before any new question; returns how many were
    marked."""
    with write_transaction(db):
        dangling = [row[0] for row in db.execute(
            """select m.conversation_id from messages m
               where m.id = (select max(id) from messages where conversation_id =
                             m.conversation_id) and m.role = 'user'""")]
        for conversation_id in dangling:
            message_id = _add(db, conversation_id, {
                "role": "assistant", "content": "", "finish_reason": "interrupted",
                "prompt_tokens": 0, "completion_tokens": 0})
            audit.record_answer(db, message_id, context)
    return len(dangling)


def list_conversations(db: sqlite_utils.Database, limit: int = 50,
                       query: str | None = None,
                       operator: str | None = None) -> list[dict[str, Any]]:
    """Newest first, each with its first question's title and its last answer's outcome.

    `query` matches any question or answer containing it, literally (no wildcards), so an
    operator can type "E-104", "100%" or "搬送" and find exactly that. `operator` keeps only
    the conversations that operator started."""
    conditions, params = [], []
    if query:
        pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append("exists (select 1 from messages m where m.conversation_id = c.id "
                          "and m.content like ? escape '\\')")
        params.append(pattern)
    if operator:
        conditions.append("c.operator = ?")
        params.append(operator)
    where = "where " + " and ".join(conditions) if conditions else ""
    return list(db.query(
        f"""
        select c.id, c.title, c.operator, c.model_id, c.created_at, c.updated_at,
               (select count(*) from messages m where m.conversation_id = c.id) as message_count,
               (select finish_reason from messages m where m.conversation_id = c.id
                  and m.role = 'assistant' order by m.id desc limit 1) as last_finish_reason
        from conversations c {where} order by c.updated_at desc, c.id desc limit ?
        """,
        [*params, limit],
    ))


def get_conversation(db: sqlite_utils.Database, conversation_id: int) -> dict[str, Any]:
    rows = list(db["conversations"].rows_where("id = ?", [conversation_id]))
    if not rows:
        raise NotFound(f"conversation {conversation_id} does not exist",
                       "run `gemba history` to list conversations")
    conversation = rows[0]
    conversation["messages"] = [
        _with_citations(m) for m in
        db["messages"].rows_where("conversation_id = ?", [conversation_id], order_by="id")]
    return conversation


def _with_citations(message: dict[str, Any]) -> dict[str, Any]:
    stored = message.pop("citations_json", None)
    message["citations"] = json.loads(stored) if stored else []
    message.setdefault("basis", None)
    return message
