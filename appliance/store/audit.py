"""The audit trail: a hash chain of entries, each written in the transaction of what it records.

An entry is (seq, at, kind, ref, payload, prev, hash): `payload` is canonical JSON, `prev` the hash
of the entry before (64 zeros for the first), `hash` the sha256 of the canonical encoding of
[prev, seq, at, kind, ref, payload] (`entry_hash`). An entry that vouches for stored rows lists
them in `payload["records"]` with the sha256 of their fields (`record_sha256`), so a row edited
or deleted later no longer matches. The first entry (kind `start`, written by the migration that
creates the table) seals the rows stored before the trail began. Checking is in audit_verify.py.

Kinds: start, answer, install, config, governor_stop.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from appliance.store.db import write_transaction

GENESIS_PREV = "0" * 64
STOP_MODES = ("paused", "refused")
"""Governor modes that stop work (appliance.governor.MODES): a change into one is audited."""

# The fields each vouched-for row is hashed over. Never change a list that has shipped: every
# entry already written would stop matching. Fields updated after the fact are left out
# (conversations.updated_at, governor_events.tok_per_s_after).
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "conversations": ("id", "title", "operator", "model_id", "created_at"),
    "messages": ("id", "conversation_id", "role", "content", "prompt_tokens",
                 "completion_tokens", "ttft_s", "tok_per_s", "model_id", "model_sha256",
                 "finish_reason", "created_at", "basis", "citations_json"),
    "install_reports": ("id", "created_at", "profile", "model_id", "ok", "report_json"),
    "governor_events": ("id", "at", "from_mode", "to_mode", "duty", "severity", "reason",
                        "figures_json", "tok_per_s_before"),
}


@dataclass(frozen=True)
class AnswerContext:
    """What an answer's entry records besides its stored rows, as it was when it was stored."""

    config_sha256: str | None = None
    """The effective config the daemon answered with (appliance.audit_context)."""
    governor: Mapping[str, Any] | None = None
    """The governor's state: mode, duty, severity."""


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    kind: str
    ref: str | None
    payload: str
    prev: str
    hash: str

    def data(self) -> dict[str, Any] | None:
        """The payload, or None when it is not JSON (edited by hand)."""
        try:
            value = json.loads(self.payload)
        except (ValueError, TypeError):
            return None
        return value if isinstance(value, dict) else None


def canonical(value: Any) -> str:
    """One text for one value: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str)


def entry_hash(prev: str, seq: int, at: str, kind: str, ref: str | None, payload: str) -> str:
    encoded = json.dumps([prev, seq, at, kind, ref, payload], ensure_ascii=False,
                         separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def record_sha256(table: str, row: Mapping[str, Any]) -> str:
    values = [row[name] for name in RECORD_FIELDS[table]]
    return hashlib.sha256(canonical([table, values]).encode("utf-8")).hexdigest()


def read_record(conn: Any, table: str, record_id: int) -> dict[str, Any] | None:
    """A vouched-for row's hashed fields, or None when the row is gone."""
    fields = RECORD_FIELDS[table]
    cursor = conn.execute(f"select {', '.join(fields)} from {table} where id = ?", [record_id])
    row = cursor.fetchone()
    return dict(zip(fields, row, strict=True)) if row is not None else None


def entries(conn: Any) -> Iterator[Entry]:
    """Every entry in seq order (`conn`: a sqlite3 connection or a sqlite-utils Database)."""
    for row in conn.execute("select seq, at, kind, ref, payload, prev, hash from audit "
                            "order by seq"):
        yield Entry(*row)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def append(db: sqlite_utils.Database, kind: str, ref: str | None,
           payload: Mapping[str, Any]) -> int:
    """Add an entry after the newest one; inside the caller's transaction when there is one."""
    text = canonical(payload)
    with write_transaction(db):
        last = db.execute("select seq, hash from audit order by seq desc limit 1").fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS_PREV)
        at = now_iso()
        db.execute("insert into audit (seq, at, kind, ref, payload, prev, hash) "
                   "values (?, ?, ?, ?, ?, ?, ?)",
                   [seq, at, kind, ref, text, prev, entry_hash(prev, seq, at, kind, ref, text)])
    return seq


def create(db: sqlite_utils.Database) -> None:
    """The table and its first entry, which seals the rows stored before the trail began."""
    db["audit"].create({"seq": int, "at": str, "kind": str, "ref": str, "payload": str,
                        "prev": str, "hash": str}, pk="seq",
                       not_null={"at", "kind", "payload", "prev", "hash"})
    append(db, "start", None, {"before": {table: seal(db, table) for table in RECORD_FIELDS}})


def seal(conn: Any, table: str, upto: int | None = None) -> dict[str, Any]:
    """The rows of `table` with id up to `upto` (all, when None): how many, and one hash."""
    fields = RECORD_FIELDS[table]
    if upto is None:
        upto = conn.execute(f"select coalesce(max(id), 0) from {table}").fetchone()[0]
    digest, rows = hashlib.sha256(), 0
    for row in conn.execute(f"select {', '.join(fields)} from {table} where id <= ? order by id",
                            [upto]):
        digest.update(record_sha256(table, dict(zip(fields, row, strict=True))).encode())
        rows += 1
    return {"upto": upto, "rows": rows, "sha256": digest.hexdigest()}


def _vouch(db: sqlite_utils.Database, table: str, record_id: int, name: str) -> dict[str, Any]:
    row = read_record(db, table, record_id)
    assert row is not None, f"{table} {record_id} is written in this transaction"
    return {"table": table, "id": record_id, "name": name, "sha256": record_sha256(table, row)}


def record_answer(db: sqlite_utils.Database, message_id: int,
                  context: AnswerContext | None = None) -> int:
    """The entry of a stored answer, vouching for it, its question and its conversation."""
    context = context or AnswerContext()
    answer = read_record(db, "messages", message_id)
    assert answer is not None, "the answer is stored in this transaction"
    conversation_id = answer["conversation_id"]
    conversation = read_record(db, "conversations", conversation_id) or {}
    question = db.execute("select id, content from messages where conversation_id = ? and "
                          "role = 'user' and id < ? order by id desc limit 1",
                          [conversation_id, message_id]).fetchone()
    records = [_vouch(db, "conversations", conversation_id, "conversation")]
    if question is not None:
        records.append(_vouch(db, "messages", question[0], "question"))
    records.append(_vouch(db, "messages", message_id, "answer"))
    cited = json.loads(answer["citations_json"] or "[]")
    return append(db, "answer", f"messages/{message_id}", {
        "conversation": conversation_id, "operator": conversation.get("operator"),
        "question": question[1] if question is not None else None,
        "answer": answer["content"], "finish_reason": answer["finish_reason"],
        "basis": answer["basis"],
        "citations": [{key: c.get(key) for key in ("n", "document", "revision", "file",
                                                    "passage_id")} for c in cited],
        "model_id": answer["model_id"], "model_sha256": answer["model_sha256"],
        "config_sha256": context.config_sha256,
        "governor": dict(context.governor) if context.governor is not None else None,
        "records": records})


def record_install(db: sqlite_utils.Database, report_id: int, report: Mapping[str, Any],
                   config_sha256: str | None) -> int:
    """The entry of a stored install report: what was planned, on which model, the outcome."""
    plan = report.get("plan") or {}
    checks = [*plan.get("checks", []), *report.get("burn_in_checks", [])]
    return append(db, "install", f"install_reports/{report_id}", {
        "profile": report.get("profile"), "model_id": report.get("model_id"),
        "model_sha256": report.get("model_sha256"), "ok": report.get("ok"),
        "committed": report.get("committed"), "error": report.get("error"),
        "settings": {key: choice.get("value") for key, choice in
                     (plan.get("settings") or {}).items()},
        "failed_checks": [c.get("name") for c in checks if c.get("status") == "fail"],
        "config_sha256": config_sha256,
        "records": [_vouch(db, "install_reports", report_id, "install report")]})


def record_governor_stop(db: sqlite_utils.Database, event_id: int) -> int:
    event = read_record(db, "governor_events", event_id)
    assert event is not None, "the event is stored in this transaction"
    return append(db, "governor_stop", f"governor_events/{event_id}", {
        "from_mode": event["from_mode"], "to_mode": event["to_mode"], "duty": event["duty"],
        "severity": event["severity"], "reason": event["reason"],
        "records": [_vouch(db, "governor_events", event_id, "governor event")]})


def record_config(db: sqlite_utils.Database, config_sha256: str, config: Mapping[str, Any],
                  source: str) -> bool:
    """An entry for the effective config when it differs from the last one audited."""
    with write_transaction(db):
        last = db.execute("select payload from audit where kind = 'config' "
                          "order by seq desc limit 1").fetchone()
        if last is not None and _config_sha256(last[0]) == config_sha256:
            return False
        append(db, "config", None, {"config_sha256": config_sha256, "config": dict(config),
                                    "source": source})
    return True


def _config_sha256(payload: str) -> str | None:
    try:
        return json.loads(payload).get("config_sha256")
    except (ValueError, AttributeError):
        return None  # edited by hand: verify names it; a new entry records the config again
