"""Open the store: our own sqlite3 connection (WAL, synchronous=FULL, busy timeout) for sqlite-utils.

`sqlite_utils.Database(path)` would use Python's defaults, where an acknowledged write can be lost
on power failure. A damaged file is detected here, before anything writes into it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """One write transaction that takes the write lock first (`BEGIN IMMEDIATE`).

    A transaction that reads before it writes (sqlite-utils' `atomic()` is a deferred `BEGIN`)
    cannot wait for a lock another process holds: SQLite answers SQLITE_BUSY at once on the
    read-to-write upgrade. Taking the lock up front makes it wait up to the busy timeout, as a
    plain INSERT does. Nested inside another transaction it is a savepoint."""
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    try:
        db.conn.execute("COMMIT")
    except BaseException:
        db.rollback()
        raise


def is_busy(error: sqlite3.Error) -> bool:
    """The database is locked by another connection (a backup, a second program)."""
    text = str(error).lower()
    return "locked" in text or "busy" in text


def storage_error(error: sqlite3.Error, what: str) -> StorageError:
    """The error a person can act on, for a failed write of `what`."""
    if is_busy(error):
        return StorageError(
            f"storage busy: another program (a backup?) held the database for more than "
            f"{BUSY_TIMEOUT_MS // 1000} s, so {what} was not stored",
            "wait for the backup or other program to finish, then try again")
    text = str(error).lower()
    if "full" in text or "disk i/o" in text:
        return StorageError(f"storage full: {what} was not stored ({error})",
                            "free space on the appliance's disk (`df -h`), then try again")
    return StorageError(f"storage failed: {what} was not stored ({error})",
                        "check the disk (`df -h`) and the daemon log")


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
