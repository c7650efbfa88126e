"""The plant's document library in the store: import a file whole or not at all, keep revisions.

One file is one transaction: a power cut or an error mid-import leaves no half document. The
same bytes again change nothing; the same document (its number, else its file name without a
revision suffix) with new content becomes a new revision that supersedes the old one. Older
revisions stay for the record, and are never searched.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import PurePath
from typing import Any

import sqlite_utils

from appliance.errors import NotFound
from appliance.knowledge.chunking import chunk_blocks
from appliance.knowledge.document import Block, ImportRefused, ParsedDocument
from appliance.knowledge.text import codes_in, search_form
from appliance.store.conversations import now_iso
from appliance.store.db import write_transaction

DEFAULT_MAX_FILE_BYTES = 50_000_000

# A document number as plants write them: SOP-PR-012, WI-031, OM-PS3-001 (a letter prefix and
# three digits or more, or two segments before the number). Alarm and machine codes such as
# E-104, CV-23 or P-22 in a file name are not document numbers: "CV-23 belt manual.pdf" and
# "CV-23 gearbox manual.pdf" are two documents, not two revisions of one.
_DOC_NUMBER = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})+-\d{1,6}"
                         r"|[A-Za-z]{2,8}-\d{3,6})(?![0-9])")
# A revision marker at the end of a file name: _rev3, -Rev.C, _v2, R04, 改訂2, 第3版, (rev 3).
# A bare "(1)" is a browser's second copy, not a revision.
_REVISION = re.compile(
    r"(?:(?:^|[\s_.\-]+)(?:rev(?:ision)?[\s_.\-]*([0-9]{1,4}|[A-Za-z])"
    r"|(?:ver(?:sion)?|v|r)[\s_.\-]*([0-9]{1,4}))"
    r"|[\s_.\-]*(?:改訂|改版|修订|修訂|版本)\s*([0-9]{1,4})"
    r"|[\s_.\-]*第\s*([0-9]{1,4})\s*版"
    r"|[\s_.\-]*[（(]\s*rev\.?\s*([0-9]{1,4})\s*[)）])\s*$",
    re.IGNORECASE)


@dataclass(frozen=True)
class ImportOutcome:
    """What happened to one file: what the import report shows the engineer."""

    file: str
    status: str
    """imported (a new document), revised (a new revision), unchanged (same bytes already
    there), superseded (an older revision, kept for the record) or failed."""
    document: str | None = None
    title: str | None = None
    revision: str | None = None
    pages: int | None = None
    chunks: int = 0
    encoding: str | None = None
    format: str | None = None
    flagged_pages: tuple[int, ...] = ()
    warnings: tuple[str, ...] = ()
    error: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flagged_pages": list(self.flagged_pages),
                "warnings": list(self.warnings)}


def document_key(file_name: str, title: str) -> str:
    """Which document a file is a revision of: its number when the file name or title has one,
    else the file name without extension and revision suffix."""
    stem = PurePath(file_name).stem
    for source in (stem, title):
        found = _DOC_NUMBER.search(source)
        if found:
            return found.group(1).upper()
    return _REVISION.sub("", stem).strip(" _-.") or stem


def revision_label(file_name: str) -> str | None:
    """The revision the file name states (`3`, `C`), if it states one."""
    found = _REVISION.search(PurePath(file_name).stem)
    if not found:
        return None
    return next(group for group in found.groups() if group).upper()


def import_file(db: sqlite_utils.Database, name: str, data: bytes, *, locale: str = "en",
                max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> ImportOutcome:
    """Parse and store one file; a refused file is reported, never raised."""
    from appliance.knowledge.parsers import parse  # parsers pull in PDF and Office libraries

    file = PurePath(name).name
    try:
        parsed = parse(file, data, locale=locale, max_file_bytes=max_file_bytes)
        return store_parsed(db, file, data, parsed)
    except ImportRefused as refused:
        return ImportOutcome(file, "failed", error=refused.to_dict())


def store_parsed(db: sqlite_utils.Database, file: str, data: bytes,
                 parsed: ParsedDocument) -> ImportOutcome:
    sha256 = hashlib.sha256(data).hexdigest()
    chunks = chunk_blocks(_without_title(parsed.blocks, parsed.title))
    if not chunks:
        raise ImportRefused("no_text", f"{file} has no text to import",
                            "check that the file has text (not only pictures) and import it again")
    key = document_key(file, parsed.title)
    label = revision_label(file)
    with write_transaction(db):
        known = db.execute("select d.key, r.label, r.title from knowledge_revisions r join "
                           "knowledge_documents d on d.id = r.document_id where r.sha256 = ?",
                           [sha256]).fetchone()
        if known:
            return ImportOutcome(file, "unchanged", known[0], known[2], known[1],
                                 parsed.pages, 0, parsed.encoding, parsed.format)
        document_id, current = _document(db, key, parsed.title)
        number = 1 + (db.execute("select max(number) from knowledge_revisions where "
                                 "document_id = ?", [document_id]).fetchone()[0] or 0)
        older = current is not None and _is_older(label, current["label"])
        revision_id = db["knowledge_revisions"].insert({
            "document_id": document_id, "number": number, "label": label or str(number),
            "title": parsed.title, "file": file, "sha256": sha256, "bytes": len(data),
            "format": parsed.format, "encoding": parsed.encoding, "pages": parsed.pages,
            "flagged_pages_json": json.dumps(list(parsed.flagged_pages)),
            "warnings_json": json.dumps(list(parsed.warnings)), "chunk_count": len(chunks),
            "imported_at": now_iso(),
            "superseded_at": now_iso() if older else None,
            "superseded_by": current["id"] if older and current else None,
        }).last_pk
        if current is not None and not older:
            db["knowledge_revisions"].update(current["id"], {"superseded_at": now_iso(),
                                                             "superseded_by": revision_id})
        _insert_chunks(db, document_id, revision_id, parsed.title, chunks)
        db["knowledge_documents"].update(document_id, {"updated_at": now_iso(),
                                                       **({} if older else
                                                          {"title": parsed.title})})
    status = "superseded" if older else "revised" if current is not None else "imported"
    return ImportOutcome(file, status, key, parsed.title, label or str(number), parsed.pages,
                         len(chunks), parsed.encoding, parsed.format, parsed.flagged_pages,
                         parsed.warnings)


def _without_title(blocks: tuple[Block, ...], title: str) -> list[Block]:
    """Section paths without the document's own title at their head (every citation names the
    document already)."""
    return [replace(block, section=block.section[1:])
            if block.section and block.section[0].strip() == title.strip() else block
            for block in blocks]


def _document(db: sqlite_utils.Database, key: str,
              title: str) -> tuple[int, dict[str, Any] | None]:
    row = db.execute("select id from knowledge_documents where key = ?", [key]).fetchone()
    if row is None:
        stamp = now_iso()
        return db["knowledge_documents"].insert(
            {"key": key, "title": title, "created_at": stamp, "updated_at": stamp}).last_pk, None
    current = list(db.query("select id, label from knowledge_revisions where document_id = ? "
                            "and superseded_at is null", [row[0]]))
    return row[0], current[0] if current else None


def _is_older(label: str | None, current_label: str) -> bool:
    """A file whose name states an earlier revision than the current one (rev2 after rev3)."""
    if label is None:
        return False
    if label.isdigit() and current_label.isdigit():
        return int(label) < int(current_label)
    if label.isalpha() and current_label.isalpha():
        return label < current_label
    return False


def _insert_chunks(db: sqlite_utils.Database, document_id: int, revision_id: int, title: str,
                   chunks: list[Any]) -> None:
    conn = db.conn
    for chunk in chunks:
        # The title and headings are searched with the passage: "pump 3" is often said only there.
        search_text = search_form(f"{title}\n{chunk.section}\n{chunk.text}")
        cursor = conn.execute(
            "insert into knowledge_chunks (revision_id, document_id, ord, section, page, kind, "
            "text, search_text) values (?, ?, ?, ?, ?, ?, ?, ?)",
            [revision_id, document_id, chunk.ord, chunk.section, chunk.page, chunk.kind,
             chunk.text, search_text])
        chunk_id = cursor.lastrowid
        conn.execute("insert into knowledge_chunks_fts (rowid, search_text) values (?, ?)",
                     [chunk_id, search_text])
        conn.executemany("insert or ignore into knowledge_codes (chunk_id, code) values (?, ?)",
                         [(chunk_id, code) for code in codes_in(chunk.text)])


def has_documents(db: sqlite_utils.Database) -> bool:
    return db.execute("select exists (select 1 from knowledge_revisions "
                      "where superseded_at is null)").fetchone()[0] == 1


def list_documents(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every document with its current revision, newest change first."""
    return list(db.query("""
        select d.key as document, r.title, r.label as revision, r.file, r.format, r.encoding,
               r.pages, r.chunk_count as chunks, r.imported_at,
               (select count(*) from knowledge_revisions o where o.document_id = d.id)
                 as revisions
        from knowledge_documents d
        join knowledge_revisions r on r.document_id = d.id and r.superseded_at is null
        order by d.updated_at desc, d.id desc"""))


def revisions(db: sqlite_utils.Database, key: str) -> list[dict[str, Any]]:
    document_id = _document_id(db, key)
    rows = list(db.query("""
        select number, label as revision, title, file, sha256, bytes, format, encoding, pages,
               chunk_count as chunks, flagged_pages_json, warnings_json, imported_at,
               superseded_at, superseded_at is null as current
        from knowledge_revisions where document_id = ? order by number""", [document_id]))
    for row in rows:
        row["current"] = bool(row["current"])
        row["flagged_pages"] = json.loads(row.pop("flagged_pages_json") or "[]")
        row["warnings"] = json.loads(row.pop("warnings_json") or "[]")
    return rows


def show_document(db: sqlite_utils.Database, key: str) -> dict[str, Any]:
    """The current revision with its passages, in reading order."""
    document_id = _document_id(db, key)
    current = [r for r in revisions(db, key) if r["current"]]
    chunks = list(db.query("""
        select c.id, c.section, c.page, c.kind, c.text from knowledge_chunks c
        join knowledge_revisions r on r.id = c.revision_id and r.superseded_at is null
        where c.document_id = ? order by c.ord""", [document_id]))
    return {"document": _canonical_key(db, document_id), **(current[0] if current else {}),
            "passages": chunks}


def remove_document(db: sqlite_utils.Database, key: str) -> dict[str, Any]:
    """Remove a document and every revision of it, index included."""
    document_id = _document_id(db, key)
    canonical = _canonical_key(db, document_id)
    with write_transaction(db):
        rows = db.execute("select id, search_text from knowledge_chunks where document_id = ?",
                          [document_id]).fetchall()
        db.conn.executemany("insert into knowledge_chunks_fts (knowledge_chunks_fts, rowid, "
                            "search_text) values ('delete', ?, ?)", rows)
        db.execute("delete from knowledge_codes where chunk_id in (select id from "
                   "knowledge_chunks where document_id = ?)", [document_id])
        db.execute("delete from knowledge_chunks where document_id = ?", [document_id])
        count = db.execute("delete from knowledge_revisions where document_id = ?",
                           [document_id]).rowcount
        db.execute("delete from knowledge_documents where id = ?", [document_id])
    return {"document": canonical, "revisions_removed": count, "chunks_removed": len(rows)}


def passage(db: sqlite_utils.Database, chunk_id: int) -> dict[str, Any]:
    """One passage in full with where it stands (for "open the cited passage")."""
    rows = list(db.query("""
        select c.id, c.section, c.page, c.kind, c.text, d.key as document, r.title,
               r.label as revision, r.file, r.superseded_at is null as current
        from knowledge_chunks c join knowledge_revisions r on r.id = c.revision_id
        join knowledge_documents d on d.id = c.document_id where c.id = ?""", [chunk_id]))
    if not rows:
        raise NotFound(f"passage {chunk_id} does not exist",
                       "it may belong to a document that was removed; search again")
    rows[0]["current"] = bool(rows[0]["current"])
    return rows[0]


def _document_id(db: sqlite_utils.Database, key: str) -> int:
    row = db.execute("select id from knowledge_documents where key = ? collate nocase",
                     [key.strip()]).fetchone()
    if row is None:
        row = db.execute("select document_id from knowledge_revisions where file = ? "
                         "order by number desc limit 1", [key.strip()]).fetchone()
    if row is None:
        raise NotFound(f"no document '{key}' in the plant library",
                       "run `gemba docs list` to see the documents and their names")
    return row[0]


def _canonical_key(db: sqlite_utils.Database, document_id: int) -> str:
    return db.execute("select key from knowledge_documents where id = ?",
                      [document_id]).fetchone()[0]

