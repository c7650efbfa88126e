"""Checking the audit trail: the chain links, and every row it vouches for still matches.

Pure reads over one snapshot of the database (`verify` takes a connection already inside a read
transaction when a writer may be running). Each problem names the entry and the record, says what
was expected, and the verdict says what to do.

Entry problems: edited (its content no longer matches its hash), deleted (a seq is missing),
reordered (it links to an entry other than the one before it), inserted (it links to no entry of
the chain). Record problems: record_edited, record_deleted, record_inserted (a stored answer,
question, install report or governor stop that no entry vouches for).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from appliance.store.audit import (
    GENESIS_PREV,
    RECORD_FIELDS,
    STOP_MODES,
    Entry,
    entries,
    entry_hash,
    read_record,
    record_sha256,
    seal,
)

HINT = ("do not repair anything by hand: copy the database file aside as evidence, compare it "
        "with the last export (`gemba audit export`) to see what changed, and tell the quality "
        "lead; then export the trail as it is now")
_SHOWN_CHARS = 60


@dataclass(frozen=True)
class Problem:
    kind: str
    reason: str
    entry: int | None = None
    record: dict[str, Any] | None = None
    """table, id and label of the row concerned, with the hashes when they differ."""
    at: str | None = None
    label: str = ""
    """What the entry records, for people (e.g. "answer 42 in conversation 9")."""

    @property
    def message(self) -> str:
        if self.entry is None:  # a record no entry vouches for
            when = _local(self.at)
            return f"{self.label}{f' ({when})' if when else ''}: {self.reason}"
        where = ", ".join(x for x in (self.label, _local(self.at)) if x)
        return f"entry {self.entry}{f' ({where})' if where else ''}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "message": self.message}


@dataclass(frozen=True)
class Verdict:
    entries: int
    head: str | None
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_broken(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        first = self.first_broken
        return {"ok": self.ok, "entries": self.entries, "head": self.head,
                "first_broken": first.to_dict() if first else None,
                "problems": [p.to_dict() for p in self.problems],
                "hint": None if self.ok else HINT}


def verify(conn: Any) -> Verdict:
    """The verdict on the whole trail (`conn`: sqlite3 connection or sqlite-utils Database)."""
    if conn.execute("select 1 from sqlite_master where type = 'table' and name = 'audit'"
                    ).fetchone() is None:
        return Verdict(0, None, (Problem("deleted", "the audit table is gone: it was dropped "
                                         "after the trail began", 1),))
    chain = list(entries(conn))
    problems = [*_chain_problems(chain), *_record_problems(conn, chain),
                *_unaudited(conn, chain)]
    problems.sort(key=lambda p: p.entry if p.entry is not None else float("inf"))
    return Verdict(len(chain), chain[-1].hash if chain else None, tuple(problems))


# -- the chain ---------------------------------------------------------------------------------
def _chain_problems(chain: list[Entry]) -> Iterator[Problem]:
    if not chain:
        yield Problem("deleted", "the audit trail is empty: every entry, the first one included, "
                      "was deleted", 1)
        return
    seq_of = {entry.hash: entry.seq for entry in chain}
    for n, entry in enumerate(chain):
        problem = _link_problem(entry, chain[n - 1] if n else None, seq_of.get(entry.prev))
        if problem is not None:
            yield problem


def _link_problem(entry: Entry, before: Entry | None, linked_seq: int | None) -> Problem | None:
    """What is wrong with `entry`, found after `before`; `linked_seq`: the entry its `prev`
    names, if it names one."""
    expected_seq = before.seq + 1 if before is not None else 1
    expected_prev = before.hash if before is not None else GENESIS_PREV
    label = _entry_label(entry)

    def problem(kind: str, reason: str) -> Problem:
        return Problem(kind, reason, entry.seq, at=entry.at, label=label)

    if entry.seq > expected_seq:
        missing = (f"entry {expected_seq} is" if entry.seq == expected_seq + 1
                   else f"entries {expected_seq} to {entry.seq - 1} are")
        return problem("deleted", f"{missing} missing before it: deleted from the trail")
    if entry.seq < expected_seq:
        return problem("inserted", f"it comes before entry {expected_seq}, the first of the "
                       "trail: it was inserted")
    if entry.prev != expected_prev and linked_seq is not None:
        return problem("reordered", f"it was written after the entry now at seq {linked_seq}, "
                       f"not after entry {entry.seq - 1}: entries were moved or swapped")
    if entry.prev != expected_prev:
        return problem("inserted", f"it does not follow entry {entry.seq - 1} (it links to "
                       f"{str(entry.prev)[:12]}…, expected {expected_prev[:12]}…): it was "
                       "inserted, or the entry before it was replaced")
    if entry_hash(entry.prev, entry.seq, entry.at, entry.kind, entry.ref,
                  entry.payload) != entry.hash:
        return problem("edited", f"its content no longer matches its hash (recorded "
                       f"{str(entry.hash)[:12]}…): it was changed after it was written, or forged")
    return None


def _entry_label(entry: Entry) -> str:
    data = entry.data() or {}
    if entry.kind == "answer":
        return f"{_ref_name(entry.ref, 'answer')} in conversation {data.get('conversation')}"
    if entry.kind == "install":
        return f"install apply, {_ref_name(entry.ref, 'install report')}"
    if entry.kind == "governor_stop":
        return f"governor stop {data.get('from_mode')} → {data.get('to_mode')}"
    if entry.kind == "config":
        return f"config {str(data.get('config_sha256'))[:12]}"
    if entry.kind == "start":
        return "start of the trail"
    return f"{entry.kind} {entry.ref or ''}".strip()


def _ref_name(ref: str | None, name: str) -> str:
    return f"{name} {(ref or '').rpartition('/')[2]}"


# -- the rows the entries vouch for ------------------------------------------------------------
def _record_problems(conn: Any, chain: list[Entry]) -> Iterator[Problem]:
    for entry in chain:
        data = entry.data() or {}
        for record in _records(data):
            problem = _check_record(conn, entry, data, record)
            if problem is not None:
                yield problem
        if entry.kind == "start":
            yield from _check_seal(conn, entry)


def _records(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows an entry vouches for; a malformed list is an edited entry, which the chain check
    names."""
    records = data.get("records")
    return [r for r in records if isinstance(r, dict) and r.get("table") in RECORD_FIELDS
            and isinstance(r.get("id"), int)] if isinstance(records, list) else []


def _check_record(conn: Any, entry: Entry, data: Mapping[str, Any],
                  record: Mapping[str, Any]) -> Problem | None:
    table, record_id = record["table"], record["id"]
    name = record.get("name") or table
    label = _record_label(table, record_id, name, data.get("conversation"))
    ref = {"table": table, "id": record_id, "label": label}
    row = read_record(conn, table, record_id)
    if row is None:
        return Problem("record_deleted", f"the stored {name} is gone: it was deleted after it "
                       f"was recorded{_recorded_text(name, data)}", entry.seq, ref, entry.at,
                       label)
    found = record_sha256(table, row)
    if found == record.get("sha256"):
        return None
    return Problem("record_edited", f"the stored {name} was changed after it was recorded"
                   f"{_difference(name, row, data)}", entry.seq,
                   {**ref, "expected_sha256": record.get("sha256"), "found_sha256": found},
                   entry.at, label)


def _record_label(table: str, record_id: int, name: str, conversation: Any) -> str:
    if table == "messages":
        return f"{name} {record_id} in conversation {conversation}"
    return f"{name} {record_id}"


def _recorded_text(name: str, data: Mapping[str, Any]) -> str:
    text = data.get(name) if name in ("question", "answer") else None
    return f" (the entry keeps its text: {_quote(text)})" if isinstance(text, str) else ""


def _difference(name: str, row: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """What differs, when the entry kept the original."""
    if name in ("question", "answer") and data.get(name) != row["content"]:
        return (f": it now reads {_quote(row['content'])}, the entry recorded "
                f"{_quote(data.get(name))}")
    if name == "conversation" and data.get("operator") != row["operator"]:
        return (f": its operator is now {row['operator']!r}, the entry recorded "
                f"{data.get('operator')!r}")
    return " (a stored field differs from what the entry recorded)"


def _quote(text: Any) -> str:
    text = str(text)
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…")


def _sealed(entry: Entry) -> dict[str, Any]:
    """What the first entry sealed: by table, the rows stored before the trail began."""
    before = (entry.data() or {}).get("before") if entry.kind == "start" else None
    return before if isinstance(before, dict) else {}


def _check_seal(conn: Any, entry: Entry) -> Iterator[Problem]:
    for table, sealed in _sealed(entry).items():
        if table not in RECORD_FIELDS or not isinstance(sealed, dict):
            continue
        upto = sealed.get("upto") or 0
        now = seal(conn, table, upto)
        if now["sha256"] != sealed.get("sha256"):
            label = f"{table} stored before the trail began (ids up to {upto})"
            yield Problem("record_edited", f"they no longer match what the first entry sealed "
                          f"({sealed.get('rows')} rows then, {now['rows']} now): one was "
                          "changed, deleted or inserted", entry.seq,
                          {"table": table, "id": None, "label": label}, entry.at, label)


# -- rows no entry vouches for -----------------------------------------------------------------
def _unaudited(conn: Any, chain: list[Entry]) -> Iterator[Problem]:
    vouched = {(record["table"], record["id"]) for entry in chain
               for record in _records(entry.data() or {})}
    before = _sealed(chain[0]) if chain else {}

    def upto(table: str) -> int:
        sealed = before.get(table)
        return (sealed.get("upto") or 0) if isinstance(sealed, dict) else 0

    # A question is vouched for by its answer's entry; the last one of a conversation may still
    # be being answered.
    for row in conn.execute(
            """select m.id, m.conversation_id, m.role, m.created_at,
                      exists(select 1 from messages n where n.conversation_id = m.conversation_id
                             and n.id > m.id)
               from messages m where m.id > ? order by m.id""", [upto("messages")]):
        message_id, conversation_id, role, created_at, followed = row
        if ("messages", message_id) in vouched or (role == "user" and not followed):
            continue
        name = "question" if role == "user" else "answer"
        yield _inserted("messages", message_id,
                        f"{name} {message_id} in conversation {conversation_id}", created_at)
    for report_id, created_at in conn.execute(
            "select id, created_at from install_reports where id > ? order by id",
            [upto("install_reports")]):
        if ("install_reports", report_id) not in vouched:
            yield _inserted("install_reports", report_id, f"install report {report_id}",
                            created_at)
    marks = ", ".join("?" * len(STOP_MODES))
    for event_id, at, from_mode, to_mode in conn.execute(
            f"select id, at, from_mode, to_mode from governor_events where id > ? and to_mode in "
            f"({marks}) and from_mode != to_mode order by id",
            [upto("governor_events"), *STOP_MODES]):
        if ("governor_events", event_id) not in vouched:
            yield _inserted("governor_events", event_id,
                            f"governor stop {from_mode} → {to_mode} (event {event_id})", at)


def _inserted(table: str, record_id: int, label: str, at: str | None) -> Problem:
    return Problem("record_inserted", "no audit entry vouches for it: it was stored outside "
                   "Gemba, or its entry was deleted", None,
                   {"table": table, "id": record_id, "label": label}, at, label)


def _local(stamp: str | None) -> str:
    if not stamp:
        return ""
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except (ValueError, TypeError):
        return str(stamp)


def summary(verdict: Verdict) -> str:
    """One line for people."""
    if verdict.ok:
        return f"audit trail holds: {verdict.entries} entries, head {verdict.head}"
    extra = len(verdict.problems) - 1
    first = verdict.first_broken
    assert first is not None
    return (f"audit trail BROKEN at {first.message}"
            + (f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""))


def to_json(verdict: Verdict) -> str:
    return json.dumps(verdict.to_dict(), ensure_ascii=False, indent=2)
