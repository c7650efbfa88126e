"""The audit trail on real SQLite files: it holds after real work, and every kind of tampering
with its entries or with the answers it vouches for makes `gemba audit verify` fail, naming them.

Tampering is done the way a person would: plain SQL on the database file, outside Gemba.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlite_utils

from appliance.audit_context import audit_config, config_sha256
from appliance.cli import main
from appliance.config import DaemonSettings, Paths, Settings
from appliance.governor import MODES, Decision, Severity
from appliance.store import open_store
from appliance.store.audit import (
    GENESIS_PREV,
    STOP_MODES,
    AnswerContext,
    canonical,
    entries,
    entry_hash,
)
from appliance.store.conversations import (
    AnswerRecord,
    add_answer,
    add_question,
    mark_interrupted,
    start_conversation,
)
from appliance.store.db import connect
from appliance.store.events import add_event
from appliance.store.migrations import migrations
from installer import commission
from tests.conftest import GembaHome

OPERATOR = "佐藤"
QUESTIONS = ("搬送ラインの警報 E-104 は何ですか？", "传送带报警 E-104 怎么办？",
             "And after the belt is tensioned?")
CITATION = {"n": 1, "document": "SOP-7", "title": "Conveyor alarms", "file": "sop7.pdf",
            "revision": 3, "section": "4.2 E-104", "page": 2,
            "text": "E-104: check the belt tension.", "passage_id": 11}
GOVERNOR = {"mode": "slowed", "duty": 0.8, "severity": "careful"}


@dataclass
class Box:
    """A store after real work: three answers, an install apply, a governor stop and a config
    change, all through the functions the daemon and the installer use."""

    db_file: Path
    answers: list[tuple[int, int]]
    """(conversation id, answer message id), oldest first."""


def _answer(text: str, cited: bool) -> AnswerRecord:
    return AnswerRecord(text, "stop", 40, 12, 0.08, 55.5, "smollm2", "a" * 64,
                        "documents" if cited else None, (CITATION,) if cited else ())


def _install_report() -> dict[str, Any]:
    return {"created_at": "2026-11-29T09:00:00+00:00", "ok": True, "committed": True,
            "error": None, "host": {"hostname": "line3", "cpu": "x86"},
            "profile": "virtual-machine", "model_id": "smollm2", "model_sha256": "a" * 64,
            "plan": {"settings": {"n_ctx": {"value": 2048, "reason": "fits"}},
                     "checks": [{"name": "memory", "status": "pass", "message": "ok"}]},
            "burn_in": None, "burn_in_checks": []}


@pytest.fixture
def box(tmp_path: Path) -> Box:
    paths = Paths(tmp_path / "config.toml", tmp_path / "data", tmp_path / "models",
                  tmp_path / "run", tmp_path / "logs")
    db = open_store(paths.db_file)
    context = AnswerContext(audit_config(db, Settings()).config_sha256, GOVERNOR)
    commission.record(paths, _install_report())
    answers = []
    first = start_conversation(db, QUESTIONS[0], "smollm2", OPERATOR)
    for n, (conversation_id, question) in enumerate(
            ((first, QUESTIONS[0]), (None, QUESTIONS[1]), (first, QUESTIONS[2]))):
        if conversation_id is None:
            conversation_id = start_conversation(db, question, "smollm2", "badge-17")
        add_question(db, conversation_id, question)
        answer_id = add_answer(db, conversation_id,
                               _answer(f"Answer {n}: check the belt.", cited=n == 0), context)
        answers.append((conversation_id, answer_id))
    add_event(db, "slowed", "refused", 0.2, "critical", "CPU at 96 °C", {"cpu_temp_c": 96.0},
              31.5)
    add_event(db, "normal", "slowed", 0.9, "careful", "CPU at 76 °C", {}, 40.0)  # no stop
    add_event(db, "refused", "refused", 0.2, "critical", "cap not applied", {}, None)  # a note
    audit_config(db, Settings(daemon=DaemonSettings(max_queue=4)))
    db.conn.close()
    return Box(paths.db_file, answers)


def _gemba(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`gemba ARGS` in this process: exit code, stdout, stderr."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _verify(capsys: pytest.CaptureFixture[str], db_file: Path) -> tuple[int, dict[str, Any]]:
    code, out, err = _gemba(capsys, "audit", "--db", str(db_file), "verify", "--json")
    assert "Traceback" not in err
    return code, json.loads(out)


def _sql(db_file: Path, statement: str, params: tuple[Any, ...] = ()) -> None:
    """What `sqlite3 gemba.db "..."` does: one statement, committed."""
    with sqlite3.connect(db_file) as conn:
        conn.execute(statement, params)
    conn.close()


def _entry_of(db_file: Path, message_id: int) -> int:
    with sqlite3.connect(db_file) as conn:
        return conn.execute("select seq from audit where ref = ?",
                            [f"messages/{message_id}"]).fetchone()[0]


# -- the trail holds ---------------------------------------------------------------------------
def test_chain_holds_after_answers_an_install_a_governor_stop_and_a_config_change(
        box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    code, verdict = _verify(capsys, box.db_file)
    assert code == 0, verdict
    with sqlite3.connect(box.db_file) as conn:
        chain = list(entries(conn))
    assert [e.kind for e in chain] == ["start", "config", "install", "answer", "answer",
                                       "answer", "governor_stop", "config"]
    assert verdict == {"ok": True, "entries": 8, "head": chain[-1].hash, "first_broken": None,
                       "problems": [], "hint": None, "database": str(box.db_file)}
    assert chain[0].prev == GENESIS_PREV
    assert all(e.prev == before.hash for before, e in zip(chain, chain[1:], strict=False))
    code, out, _ = _gemba(capsys, "audit", "--db", str(box.db_file), "verify")
    assert code == 0 and out.startswith(f"audit trail holds: 8 entries, head {chain[-1].hash}")


def test_answer_entry_records_who_asked_what_relied_on_which_revision_and_the_box_state(
        box: Box) -> None:
    with sqlite3.connect(box.db_file) as conn:
        chain = list(entries(conn))
    answer = next(e for e in chain if e.kind == "answer").data()
    config = next(e for e in chain if e.kind == "config").data()
    assert answer is not None and config is not None
    assert answer["operator"] == OPERATOR
    assert answer["question"] == QUESTIONS[0]
    assert answer["answer"] == "Answer 0: check the belt."
    assert answer["finish_reason"] == "stop" and answer["basis"] == "documents"
    assert answer["citations"] == [{"n": 1, "document": "SOP-7", "revision": 3,
                                    "file": "sop7.pdf", "passage_id": 11}]
    assert answer["model_sha256"] == "a" * 64
    assert answer["config_sha256"] == config["config_sha256"] == config_sha256(Settings())
    assert answer["governor"] == GOVERNOR
    assert [r["name"] for r in answer["records"]] == ["conversation", "question", "answer"]
    install = next(e for e in chain if e.kind == "install").data()
    assert install is not None
    assert install["model_sha256"] == "a" * 64 and install["settings"] == {"n_ctx": 2048}
    assert install["config_sha256"] == config_sha256(Settings())
    stop = next(e for e in chain if e.kind == "governor_stop").data()
    assert stop is not None and (stop["from_mode"], stop["to_mode"]) == ("slowed", "refused")


def test_stop_modes_are_the_governors_modes_that_stop_work() -> None:
    stopping = {mode for mode in MODES
                if not Decision(mode, 1.0, Severity.OK, "", 0.0, 0.0).accepts_new_work}
    assert stopping == set(STOP_MODES)


def test_an_unchanged_config_is_not_recorded_again_and_the_api_key_never_in_clear(
        tmp_path: Path) -> None:
    db = open_store(tmp_path / "gemba.db")
    keyed = Settings(daemon=DaemonSettings(api_key="line3-secret-key-0042"))
    audit_config(db, keyed)
    audit_config(db, keyed)  # a restart with the same config
    rotated = Settings(daemon=DaemonSettings(api_key="line3-secret-key-0043"))
    audit_config(db, rotated)
    configs = [e for e in entries(db) if e.kind == "config"]
    assert len(configs) == 2  # a new key is a config change
    assert config_sha256(keyed) != config_sha256(rotated)
    stored = db.execute("select group_concat(payload) from audit").fetchone()[0]
    assert "line3-secret-key" not in stored
    assert configs[0].data()["config"]["daemon"]["api_key"].startswith("sha256:")


def test_a_question_being_answered_is_not_a_problem_and_an_interrupted_one_is_audited(
        box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    db = open_store(box.db_file)
    conversation_id = start_conversation(db, "pending?", "smollm2", OPERATOR)
    add_question(db, conversation_id, "pending?")
    assert _verify(capsys, box.db_file)[0] == 0  # the answer is still being written
    assert mark_interrupted(db, AnswerContext("c" * 64)) == 1  # then the power was cut
    code, verdict = _verify(capsys, box.db_file)
    assert code == 0 and verdict["entries"] == 9


# -- tampering with the answers ----------------------------------------------------------------
def test_editing_a_stored_answer_names_the_entry_and_the_answer(
        box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    conversation_id, answer_id = box.answers[1]
    seq = _entry_of(box.db_file, answer_id)
    _sql(box.db_file, "UPDATE messages SET content = 'All clear, restart the line.' WHERE id = ?",
         (answer_id,))
    code, out, err = _gemba(capsys, "audit", "--db", str(box.db_file), "verify")
    assert code == 65 and "Traceback" not in err
    assert f"entry {seq} (answer {answer_id} in conversation {conversation_id}, " in out
    assert "the stored answer was changed after it was recorded" in out
    assert "'All clear, restart the line.'" in out and "'Answer 1: check the belt.'" in out
    assert "what to do:" in out
    code, verdict = _verify(capsys, box.db_file)
    first = verdict["first_broken"]
    assert (code, verdict["ok"], first["entry"], first["kind"]) == (65, False, seq,
                                                                    "record_edited")
    assert first["record"]["table"] == "messages" and first["record"]["id"] == answer_id
    assert first["record"]["expected_sha256"] != first["record"]["found_sha256"]
    assert first["reason"] and verdict["hint"]


@pytest.mark.parametrize("statement, name, detail", [
    ("UPDATE messages SET content = 'Is E-104 harmless?' WHERE id = {question}", "question",
     "'Is E-104 harmless?'"),
    ("UPDATE messages SET finish_reason = 'length' WHERE id = {answer}", "answer",
     "a stored field differs"),
    ("UPDATE conversations SET operator = 'someone else' WHERE id = {conversation}",
     "conversation", "'someone else'"),
])
def test_editing_the_question_a_field_or_the_operator_is_named(
        box: Box, capsys: pytest.CaptureFixture[str], statement: str, name: str,
        detail: str) -> None:
    conversation_id, answer_id = box.answers[0]
    _sql(box.db_file, statement.format(question=answer_id - 1, answer=answer_id,
                                       conversation=conversation_id))
    code, verdict = _verify(capsys, box.db_file)
    first = verdict["first_broken"]
    assert code == 65 and first["kind"] == "record_edited"
    assert first["entry"] == _entry_of(box.db_file, answer_id)
    assert f"the stored {name} was changed after it was recorded" in first["reason"]
    assert detail in first["reason"]


def test_deleting_a_stored_answer_names_it_and_keeps_its_text(
        box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    conversation_id, answer_id = box.answers[2]
    _sql(box.db_file, "DELETE FROM messages WHERE id = ?", (answer_id,))
    code, verdict = _verify(capsys, box.db_file)
    first = verdict["first_broken"]
    assert (code, first["kind"], first["entry"]) == (65, "record_deleted",
                                                     _entry_of(box.db_file, answer_id))
    assert first["record"]["label"] == f"answer {answer_id} in conversation {conversation_id}"
    assert "deleted after it was recorded" in first["reason"]
    assert "'Answer 2: check the belt.'" in first["reason"]


def test_an_answer_stored_outside_gemba_is_named(
        box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    conversation_id, _ = box.answers[1]
    _sql(box.db_file, "INSERT INTO messages (conversation_id, role, content, created_at) "
                      "VALUES (?, 'assistant', 'Forged: no action needed.', ?)",
         (conversation_id, "2026-11-29T10:04:00+00:00"))
    code, verdict = _verify(capsys, box.db_file)
    first = verdict["first_broken"]
    assert (code, first["kind"], first["entry"]) == (65, "record_inserted", None)
    forged_id = first["record"]["id"]
    assert first["message"].startswith(
        f"answer {forged_id} in conversation {conversation_id} (2026-11-29 ")
    assert "no audit entry vouches for it" in first["reason"]


# -- tampering with the trail ------------------------------------------------------------------
def test_editing_an_entry_names_it(box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    seq = _entry_of(box.db_file, box.answers[0][1])
    _sql(box.db_file, "UPDATE audit SET payload = replace(payload, 'check the belt', "
                      "'ignore the alarm') WHERE seq = ?", (seq,))
    code, verdict = _verify(capsys, box.db_file)
    first = verdict["first_broken"]
    assert (code, first["kind"], first["entry"]) == (65, "edited", seq)
    assert "no longer matches its hash" in first["reason"]
    assert len(verdict["problems"]) == 1  # the answer row itself still matches its hash


def test_deleting_an_entry_names_the_gap_and_the_answer_left_without_one(
        box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    conversation_id, answer_id = box.answers[1]
    seq = _entry_of(box.db_file, answer_id)
    _sql(box.db_file, "DELETE FROM audit WHERE seq = ?", (seq,))
    code, verdict = _verify(capsys, box.db_file)
    first = verdict["first_broken"]
    assert (code, first["kind"], first["entry"]) == (65, "deleted", seq + 1)
    assert f"entry {seq} is missing" in first["reason"]
    orphans = [p["record"]["label"] for p in verdict["problems"]
               if p["kind"] == "record_inserted"]
    assert f"answer {answer_id} in conversation {conversation_id}" in orphans


def test_deleting_the_newest_entries_leaves_their_record_without_one(
        box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(box.db_file, "DELETE FROM audit WHERE seq >= "
                      "(SELECT seq FROM audit WHERE kind = 'governor_stop')")
    code, verdict = _verify(capsys, box.db_file)
    first = verdict["first_broken"]
    assert (code, first["kind"], first["entry"]) == (65, "record_inserted", None)
    assert first["record"]["table"] == "governor_events"
    assert first["message"].startswith("governor stop slowed → refused (event 1")


def test_swapping_two_entries_is_named_as_reordered(
        box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    first_seq = _entry_of(box.db_file, box.answers[0][1])
    columns = "at, kind, ref, payload, prev, hash"
    with sqlite3.connect(box.db_file) as conn:
        rows = {seq: conn.execute(f"select {columns} from audit where seq = ?", [seq]).fetchone()
                for seq in (first_seq, first_seq + 1)}
        for seq, other in ((first_seq, first_seq + 1), (first_seq + 1, first_seq)):
            conn.execute("update audit set at = ?, kind = ?, ref = ?, payload = ?, prev = ?, "
                         "hash = ? where seq = ?", [*rows[other], seq])
    conn.close()
    code, verdict = _verify(capsys, box.db_file)
    first = verdict["first_broken"]
    assert (code, first["kind"], first["entry"]) == (65, "reordered", first_seq)
    assert f"written after the entry now at seq {first_seq + 1}" in first["reason"]


@pytest.mark.parametrize("linked_to_head, kind", [(True, "edited"), (False, "inserted")])
def test_a_forged_entry_is_named(box: Box, capsys: pytest.CaptureFixture[str],
                                 linked_to_head: bool, kind: str) -> None:
    with sqlite3.connect(box.db_file) as conn:
        last, head = conn.execute("select seq, hash from audit order by seq desc").fetchone()
        payload = conn.execute("select payload from audit where kind = 'answer'").fetchone()[0]
    conn.close()
    forged = payload.replace("check the belt", "no action needed")
    _sql(box.db_file, "INSERT INTO audit (seq, at, kind, ref, payload, prev, hash) "
                      "VALUES (?, '2026-11-29T10:04:00+00:00', 'answer', 'messages/99', ?, ?, ?)",
         (last + 1, forged, head if linked_to_head else "f" * 64,
          hashlib.sha256(forged.encode()).hexdigest()))
    code, verdict = _verify(capsys, box.db_file)
    first = verdict["first_broken"]
    assert (code, first["kind"], first["entry"]) == (65, kind, last + 1)


@pytest.mark.parametrize("statement", ["DELETE FROM audit", "DROP TABLE audit"])
def test_an_emptied_or_dropped_trail_is_broken(box: Box, tmp_path: Path, statement: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _sql(box.db_file, statement)
    code, verdict = _verify(capsys, box.db_file)
    assert (code, verdict["first_broken"]["kind"], verdict["entries"]) == (65, "deleted", 0)
    code, _, _ = _gemba(capsys, "audit", "--db", str(box.db_file), "export", str(tmp_path / "e"))
    assert code == 65 and (tmp_path / "e" / "audit.jsonl").read_text() == ""


# -- export, read-only, old databases ----------------------------------------------------------
def test_export_writes_jsonl_and_head_that_an_auditor_can_check(
        box: Box, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stick = tmp_path / "usb" / "2026-11-29"
    code, out, _ = _gemba(capsys, "audit", "--db", str(box.db_file), "export", str(stick))
    assert code == 0, out
    head = json.loads((stick / "HEAD").read_text(encoding="utf-8"))
    lines = (stick / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    _, verdict = _verify(capsys, box.db_file)
    assert head["head"] == verdict["head"] and head["entries"] == len(lines) == 8
    assert head["chain_holds"] is True and head["first_broken"] is None
    assert head["audit_jsonl_sha256"] == hashlib.sha256(
        (stick / "audit.jsonl").read_bytes()).hexdigest()
    # The documented recipe recomputes every hash from the export alone.
    prev = GENESIS_PREV
    for line in lines:
        entry = json.loads(line)
        assert entry["prev"] == prev
        assert entry_hash(prev, entry["seq"], entry["at"], entry["kind"], entry["ref"],
                          canonical(entry["payload"])) == entry["hash"]
        prev = entry["hash"]
    assert prev == head["head"]
    # An earlier export is never overwritten by accident.
    code, _, err = _gemba(capsys, "audit", "--db", str(box.db_file), "export", str(stick))
    assert code == 1 and "already holds an audit export" in err and "--force" in err
    code, _, _ = _gemba(capsys, "audit", "--db", str(box.db_file), "export", str(stick),
                        "--force")
    assert code == 0


def test_export_of_a_broken_trail_says_so(box: Box, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _sql(box.db_file, "UPDATE messages SET content = 'edited' WHERE id = ?", (box.answers[0][1],))
    code, out, _ = _gemba(capsys, "audit", "--db", str(box.db_file), "export", str(tmp_path / "x"),
                          "--json")
    written = json.loads(out)
    head = json.loads((tmp_path / "x" / "HEAD").read_text(encoding="utf-8"))
    assert code == 65 and written["chain_holds"] is False and head["chain_holds"] is False
    assert "the stored answer was changed" in head["first_broken"]
    assert written["problems"][0]["kind"] == "record_edited"


def test_an_edited_entry_is_exported_exactly_as_stored(
        box: Box, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(box.db_file, "UPDATE audit SET payload = payload || ' ' WHERE seq = 2")
    code, _, _ = _gemba(capsys, "audit", "--db", str(box.db_file), "export", str(tmp_path / "e"))
    second = json.loads((tmp_path / "e" / "audit.jsonl").read_text().splitlines()[1])
    assert code == 65 and second["payload_text"].endswith("} ") and "payload" not in second


def test_a_table_altered_by_hand_is_a_clear_error(
        box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(box.db_file, "ALTER TABLE messages DROP COLUMN basis")
    code, _, err = _gemba(capsys, "audit", "--db", str(box.db_file), "verify")
    assert code == 74 and "could not be read to the end" in err and "Traceback" not in err


def test_verify_and_export_leave_the_database_untouched(
        box: Box, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [box.db_file, box.db_file.with_name(box.db_file.name + "-wal")]

    def state() -> list[tuple[str, int] | None]:
        return [(hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
                if f.exists() and f.stat().st_size else None for f in files]

    before = state()
    assert _verify(capsys, box.db_file)[0] == 0
    export = _gemba(capsys, "audit", "--db", str(box.db_file), "export", str(tmp_path / "e"))
    assert export[0] == 0
    assert state() == before


def test_a_database_from_before_the_trail_is_named_then_sealed_when_upgraded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db_file = tmp_path / "gemba.db"
    old = sqlite_utils.Database(connect(db_file))
    migrations.apply(old, stop_before="create_audit")
    conversation_id = start_conversation(old, "E-104?", "smollm2", OPERATOR)
    add_question(old, conversation_id, "E-104?")
    old_answer = old["messages"].insert({
        "conversation_id": conversation_id, "role": "assistant", "content": "Check the belt.",
        "created_at": "2025-01-01T00:00:00+00:00", "finish_reason": "stop"}).last_pk
    old.conn.close()
    code, _, err = _gemba(capsys, "audit", "--db", str(db_file), "verify")
    assert code == 66 and "has no audit trail" in err and "what to do:" in err
    assert "Traceback" not in err
    # Upgraded (the daemon opens it): the rows already stored are sealed, not flagged.
    db = open_store(db_file)
    add_question(db, conversation_id, "And then?")
    add_answer(db, conversation_id, _answer("Tension it.", cited=False))
    db.conn.close()
    code, verdict = _verify(capsys, db_file)
    assert (code, verdict["entries"]) == (0, 2)
    _sql(db_file, "UPDATE messages SET content = 'Ignore it.' WHERE id = ?", (old_answer,))
    code, verdict = _verify(capsys, db_file)
    first = verdict["first_broken"]
    assert (code, first["kind"], first["entry"]) == (65, "record_edited", 1)
    assert "stored before the trail began" in first["message"]


def test_a_missing_database_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _gemba(capsys, "audit", "--db", str(tmp_path / "none.db"), "verify")
    assert code == 66 and "no database at" in err and "Traceback" not in err


# -- the real daemon ---------------------------------------------------------------------------
@pytest.mark.model
def test_an_answer_from_the_daemon_is_audited_and_editing_it_is_caught(
        gemba_home: GembaHome) -> None:
    applied = gemba_home.gemba("install", "apply", "--burn-in-s", "3", "--yes", timeout=300)
    # A busy test machine may fail the burn-in (exit 3, nothing changed): audited all the same.
    assert applied.returncode in (0, 3), applied.stderr
    gemba_home.start_daemon()
    response = httpx.post(f"{gemba_home.url}/v1/chat/completions", timeout=120, json={
        "messages": [{"role": "user", "content": QUESTIONS[0]}], "max_tokens": 16,
        "temperature": 0, "user": OPERATOR})
    assert response.status_code == 200
    answered = response.json()["gemba"]
    conversation_id, answer_id = answered["conversation_id"], answered["message_id"]
    checked = gemba_home.gemba("audit", "verify", "--json")  # the daemon is running
    assert checked.returncode == 0, checked.stdout + checked.stderr
    with sqlite3.connect(gemba_home.db_file) as conn:
        chain = [e for e in entries(conn) if e.kind != "governor_stop"]
    assert [e.kind for e in chain] == ["start", "install", "config", "answer"]
    install, config, answer = (e.data() or {} for e in chain[1:])
    assert install["committed"] == (applied.returncode == 0)
    assert install["config_sha256"] == config["config_sha256"]  # the config the daemon obeys
    assert answer["operator"] == OPERATOR and answer["question"] == QUESTIONS[0]
    assert answer["answer"] == response.json()["choices"][0]["message"]["content"]
    assert answer["model_sha256"] == gemba_home.health()["model_sha256"]
    assert answer["config_sha256"] == config["config_sha256"]
    assert answer["governor"]["mode"] in MODES
    # Someone edits the stored answer on the live database, as `sqlite3 gemba.db "UPDATE …"`.
    _sql(gemba_home.db_file, "UPDATE messages SET content = 'No action needed.' WHERE id = ?",
         (answer_id,))
    named = f"entry {chain[-1].seq} (answer {answer_id} in conversation {conversation_id}, "
    broken = gemba_home.gemba("audit", "verify")  # the daemon is still running
    assert broken.returncode == 65 and named in broken.stdout
    assert "the stored answer was changed after it was recorded" in broken.stdout
    gemba_home.stop_all()
    broken = gemba_home.gemba("audit", "verify", "--json")
    assert broken.returncode == 65
    assert json.loads(broken.stdout)["first_broken"]["message"].startswith(named)
