"""`gemba audit`: check the audit trail, and export it for a quality auditor.

Both commands open the database read-only (no migration, no write, with or without a running
daemon) and read one snapshot of it. `verify` exits 0 when the trail holds and 65 (a failed
integrity check, as `gemba models verify`) naming the first broken entry otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from appliance import __version__
from appliance.config import Paths
from appliance.errors import GembaError, NotFound, StorageError
from appliance.fileio import write_atomic
from appliance.store.audit import Entry, canonical, entries
from appliance.store.audit_verify import HINT, Verdict, summary, verify

BROKEN_EXIT = 65
"""The trail does not hold (EX_DATAERR, as a model file that fails its hash)."""
JSONL, HEAD = "audit.jsonl", "HEAD"
_LISTED = 20
"""Problems listed after the first one; --json lists them all."""


@click.group()
@click.option("--db", "db_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The database to check, e.g. a copy [default: this appliance's].")
@click.pass_context
def audit(click_ctx: click.Context, db_file: Path | None) -> None:
    """The audit trail of answers, installs, config changes and governor stops."""
    click_ctx.obj = db_file or Paths.from_env().db_file


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
@click.pass_obj
def verify_command(db_file: Path, as_json: bool) -> None:
    """Check that no entry or recorded answer was edited, deleted, reordered or inserted."""
    with closing(open_read_only(db_file)) as conn, snapshot(conn, db_file):
        verdict = verify(conn)
    if as_json:
        click.echo(json.dumps({**verdict.to_dict(), "database": str(db_file)},
                              ensure_ascii=False, indent=2))
    else:
        _print_verdict(verdict)
    if not verdict.ok:
        sys.exit(BROKEN_EXIT)


@audit.command("export")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--force", is_flag=True, help="Replace an earlier export in FOLDER.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@click.pass_obj
def export_command(db_file: Path, folder: Path, force: bool, as_json: bool) -> None:
    """Write the trail to FOLDER (e.g. a USB stick): audit.jsonl and HEAD, with the verdict."""
    earlier = [name for name in (JSONL, HEAD) if (folder / name).exists()]
    if earlier and not force:
        raise GembaError(f"{folder} already holds an audit export ({', '.join(earlier)}); "
                         "nothing was written",
                         "export into an empty folder (e.g. one named after today's date), or "
                         "pass --force to replace that export")
    with closing(open_read_only(db_file)) as conn, snapshot(conn, db_file):
        verdict = verify(conn)
        head = _write_export(folder, entries(conn) if verdict.entries else iter(()), verdict,
                             db_file)
    if as_json:
        click.echo(json.dumps({**head, "folder": str(folder),
                               "problems": verdict.to_dict()["problems"]},
                              ensure_ascii=False, indent=2))
    else:
        click.echo(f"exported {head['entries']} entries to {folder / JSONL}")
        click.echo(f"head {head['head']} (in {folder / HEAD})")
        _print_verdict(verdict)
    if not verdict.ok:
        sys.exit(BROKEN_EXIT)


def _print_verdict(verdict: Verdict) -> None:
    click.echo(summary(verdict))
    for problem in verdict.problems[1:1 + _LISTED]:
        click.echo(f"  also: {problem.message}")
    if not verdict.ok:
        click.echo(f"  what to do: {HINT}")


def open_read_only(path: Path) -> sqlite3.Connection:
    """The database at `path`, read-only; a missing file, another kind of file or a database
    from before the audit trail is a clear error."""
    if not path.is_file():
        raise NotFound(f"no database at {path}: nothing has been recorded there",
                       "check GEMBA_HOME, or pass --db with the database file (e.g. a copy)")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                               isolation_level=None, timeout=5)
        tables = {row[0] for row in conn.execute("select name from sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path} cannot be read as a Gemba database: {exc}",
                           "check the path; a damaged file: restore the latest backup") from exc
    if "audit" not in tables and not _trail_began(conn):
        conn.close()
        raise NotFound(f"the database {path} has no audit trail: it was last opened by a Gemba "
                       "older than the trail", "start the daemon once (`gemba serve`, or any "
                       "`gemba ask`): the trail begins then, sealing what is already stored")
    return conn  # a trail whose table was dropped is a broken trail, for verify to say


def _trail_began(conn: sqlite3.Connection) -> bool:
    """The migration that creates the trail is recorded as applied."""
    try:
        return conn.execute("select 1 from _sqlite_migrations where migration_set = 'gemba' "
                            "and name = 'create_audit'").fetchone() is not None
    except sqlite3.DatabaseError:
        return False


@contextmanager
def snapshot(conn: sqlite3.Connection, path: Path) -> Iterator[None]:
    """One read transaction: a daemon writing meanwhile is not seen half-way."""
    try:
        conn.execute("begin")
        yield
    except sqlite3.DatabaseError as exc:  # e.g. a table altered by hand
        raise StorageError(f"{path} could not be read to the end: {exc}",
                           "keep the file as evidence; `gemba audit export` what can be read, "
                           "and ask support to look at the database") from exc
    finally:
        if conn.in_transaction:
            conn.execute("rollback")


def _write_export(folder: Path, chain: Iterable[Entry], verdict: Verdict,
                  db_file: Path) -> dict[str, Any]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        count, digest = _write_lines(folder / JSONL, (_line(entry) for entry in chain))
        head = {"head": verdict.head, "entries": count,
                "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "chain_holds": verdict.ok,
                "first_broken": verdict.first_broken.message if verdict.first_broken else None,
                "audit_jsonl_sha256": digest, "database": str(db_file),
                "gemba_version": __version__}
        write_atomic(folder / HEAD, json.dumps(head, ensure_ascii=False, indent=2) + "\n")
    except OSError as exc:
        raise StorageError(f"cannot write the audit export to {folder}: {exc.strerror or exc}",
                           "check that the folder (or USB stick) is writable and has free "
                           "space (`df -h`)") from exc
    return head


def _line(entry: Entry) -> str:
    data = entry.data()
    body: dict[str, Any] = {"seq": entry.seq, "at": entry.at, "kind": entry.kind,
                            "ref": entry.ref, "prev": entry.prev, "hash": entry.hash}
    if data is not None and canonical(data) == entry.payload:
        body["payload"] = data
    else:
        body["payload_text"] = entry.payload  # not as Gemba writes it (edited): kept as stored
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _write_lines(path: Path, lines: Iterable[str]) -> tuple[int, str]:
    """Stream lines into `path` atomically (temp file, fsync, rename); how many, their sha256."""
    temp = path.with_name(f".{path.name}.tmp")
    digest, count = hashlib.sha256(), 0
    try:
        with temp.open("w", encoding="utf-8", newline="\n") as out:
            for line in lines:
                data = line + "\n"
                out.write(data)
                digest.update(data.encode("utf-8"))
                count += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return count, digest.hexdigest()
