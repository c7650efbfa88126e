"""Open the store: our own sqlite3 connection (WAL, synchronous=FULL, busy timeout) for sqlite-utils.

`sqlite_utils.Database(path)` would use Python's defaults, where an acknowledged write can be lost
on power failure. A damaged file is detected here, before anything writes into it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from appliance.errors import StorageError
from appliance.store.migrations import migrations

BUSY_TIMEOUT_MS = 5000


def connect(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA foreign_keys = ON")
        _check_integrity(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _damaged(path, str(exc)) from exc
    return conn


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    result = conn.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        raise _damaged(path, result)


def _damaged(path: Path, detail: str) -> StorageError:
    if "locked" in detail or "busy" in detail:
        return StorageError(f"storage busy: {path} is locked by another process ({detail})",
                            "wait for the backup or other program to finish, then try again")
    return StorageError(
        f"the database {path} is damaged ({detail}); nothing will be written into it",
        "keep the file for support, move it aside and restore the latest backup into its place "
        "(or start empty by moving it away)",
    )


def open_store(path: Path) -> sqlite_utils.Database:
    """The migrated database at `path`, created if absent."""
    db = sqlite_utils.Database(connect(path))
    try:
        migrations.apply(db)
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, str(exc)) from exc
    return db
