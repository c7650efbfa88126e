"""The store: durable settings on a real SQLite file, versioned schema, damage detected."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import NotFound, StorageError
from appliance.store import open_store
from appliance.store.conversations import (
    AnswerRecord,
    add_answer,
    add_question,
    get_conversation,
    list_conversations,
    start_conversation,
)


def _answer(text: str, finish: str = "stop") -> AnswerRecord:
    return AnswerRecord(text, finish, 12, 5, 0.05, 90.0, "m", "a" * 64)


def test_connection_is_durable(tmp_path: Path) -> None:
    db = open_store(tmp_path / "gemba.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_migrations_are_applied_once(tmp_path: Path) -> None:
    path = tmp_path / "gemba.db"
    open_store(path).conn.close()
    db = open_store(path)
    assert {"conversations", "messages"} <= set(db.table_names())


def test_conversation_round_trip_keeps_cjk_text(tmp_path: Path) -> None:
    db = open_store(tmp_path / "gemba.db")
    question = "搬送ラインの警報 E-104 は何ですか？ 传送带报警"
    conversation_id = start_conversation(db, question, "m", operator="佐藤")
    add_question(db, conversation_id, question)
    add_answer(db, conversation_id, _answer("ベルトの張りを確認してください。", "cancelled"))
    reopened = get_conversation(open_store(tmp_path / "gemba.db"), conversation_id)
    assert [m["content"] for m in reopened["messages"]] == [
        question, "ベルトの張りを確認してください。"]
    assert reopened["operator"] == "佐藤"
    listed = list_conversations(db)[0]
    assert listed["last_finish_reason"] == "cancelled"
    assert listed["message_count"] == 2


def test_unknown_conversation_is_not_found(tmp_path: Path) -> None:
    db = open_store(tmp_path / "gemba.db")
    with pytest.raises(NotFound):
        get_conversation(db, 42)
    with pytest.raises(NotFound):
        add_question(db, 42, "lost?")


def test_damaged_file_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "gemba.db"
    garbage = b"this is not a database" * 100
    path.write_bytes(garbage)
    with pytest.raises(StorageError) as caught:
        open_store(path)
    assert "damaged" in caught.value.message
    assert "backup" in caught.value.hint
    assert path.read_bytes() == garbage  # kept for support, nothing written into it
