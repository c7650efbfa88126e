"""Find the passages of the current revisions that a question is about.

Three signals, in order of trust: a code the operator typed (E-104) that a passage contains
exactly; how much of the question a passage covers (each term weighted by how rare it is in the
library, IDF); and FTS5's BM25 rank to order passages that cover the same. Whatever the operator
types is searched as text: every term goes to FTS5 as a quoted phrase, never as syntax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from appliance.knowledge.text import (
    IDENTIFIER,
    Term,
    codes_in,
    fts_phrase,
    is_cjk,
    names,
    numbers_in,
    query_terms,
)

_CANDIDATES = 80
ABSENT_CJK_SHARE = 0.75
"""Weight of a CJK term found nowhere, as a share of the weight of a word found nowhere."""
_COMMON_SHARE = 0.2
_LARGE = 5000
"""A term in more than this share of all passages is left out of the BM25 ranking query."""


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document: str
    """The document's key: its number (SOP-PR-012), else its file name without revision."""
    title: str
    file: str
    revision: str
    section: str
    page: int | None
    text: str
    score: float
    """Higher is better: coverage (0–1) plus a small share of the BM25 rank and code matches."""
    coverage: float = 0.0
    """IDF-weighted share of the question's terms this passage contains."""
    matched: tuple[str, ...] = ()
    """The question's terms this passage contains."""
    missing_specific: tuple[str, ...] = ()
    """Numbers and codes of the question that this passage lacks."""
    has_codes: bool = False
    """The question names codes, and this passage holds every one of them exactly."""

    def citation(self, n: int) -> dict[str, object]:
        return {"n": n, "document": self.document, "title": self.title, "file": self.file,
                "revision": self.revision, "section": self.section, "page": self.page,
                "text": self.text, "passage_id": self.chunk_id}


def search(db: sqlite_utils.Database, query: str, limit: int = 10) -> list[Hit]:
    terms = query_terms(query)
    codes = codes_in(query)
    if not terms:
        return []
    total = max(1, db.execute("select count(*) from knowledge_chunks").fetchone()[0])
    having = {term.phrase: _count(db, term) for term in terms}
    weights = {term.phrase: _weight(term, total, having[term.phrase]) for term in terms}
    present = sorted((t for t in terms if having[t.phrase]), key=lambda t: having[t.phrase])
    # In a large library very common words cost most to rank and decide least; they still
    # count in coverage.
    selective = [t for t in present if total < _LARGE or having[t.phrase] <= total * _COMMON_SHARE]
    candidates = _ranked(db, selective or present[:2]) if present else {}
    rows = _rows(db, set(candidates) | _coded(db, codes))
    hits = [_hit(row, terms, weights, codes, candidates.get(row["id"])) for row in rows]
    hits.sort(key=lambda h: (-h.score, h.chunk_id))
    return hits[:limit]


def _hit(row: dict[str, Any], terms: list[Term], weights: dict[str, float], codes: set[str],
         rank: int | None) -> Hit:
    padded = f" {row['search_text']} "
    matched = tuple(t.phrase for t in terms if f" {t.phrase} " in padded)
    # Coverage counts the words of the question; its numbers and codes are required, not
    # evidence ("円周率を10桁" is not about a passage that holds a 10).
    content = [t.phrase for t in terms if not t.specific]
    total_weight = sum(weights[p] for p in content)
    coverage = sum(weights[p] for p in matched if p in content) / total_weight \
        if total_weight else 0.0
    # Numbers and codes are checked against the words as written: "412.5" holds no "5", and a
    # code in the title or a heading counts (the C-3 manual's pages are all about C-3).
    missing: tuple[str, ...] = ()
    text_codes: set[str] = set()
    if any(t.specific for t in terms):
        written = f"{row['title']}\n{row['section']}\n{row['text']}"
        numbers, text_codes = numbers_in(written), codes_in(written)
        missing = tuple(t.written for t in terms
                        if t.specific and _lacks(written, numbers, codes, t))
        missing += tuple(sorted(code for code in codes if code not in text_codes))
    rank_share = 0.0 if rank is None else 0.2 * (1 - rank / _CANDIDATES)
    code_share = 1.0 if codes and codes <= text_codes else 0.0
    if missing:
        code_share -= 1.0  # a passage without the question's numbers and codes goes last
    return Hit(row["id"], row["document"], row["title"], row["file"], row["revision"],
               row["section"], row["page"], row["text"],
               round(coverage + rank_share + code_share, 4), round(coverage, 4), matched,
               missing, bool(codes) and codes <= text_codes)


def _lacks(written: str, numbers: set[str], codes: set[str], term: Term) -> bool:
    if term.written in codes:
        return False  # codes are checked as a set, exactly
    if IDENTIFIER.fullmatch(term.written):
        return not names(written, term.written)
    return term.written not in numbers


def _weight(term: Term, total: int, having: int) -> float:
    """How much a term counts: its rarity (IDF). A pair of CJK characters found nowhere is
    most often a pair across two words (报警|是 in 报警是什么意思), not a missing concept: it
    counts as a common term. A word found nowhere counts fully: the library lacks it."""
    if having == 0 and is_cjk(term.phrase[0]):
        return ABSENT_CJK_SHARE * math.log(1 + (total + 0.5) / 0.5)
    return math.log(1 + (total - having + 0.5) / (having + 0.5))


def _count(db: sqlite_utils.Database, term: Term) -> int:
    """Passages (any revision) holding the term: its rarity."""
    return db.execute("select count(*) from knowledge_chunks_fts where knowledge_chunks_fts "
                      "match ?", [fts_phrase(term)]).fetchone()[0]


def _ranked(db: sqlite_utils.Database, terms: list[Term]) -> dict[int, int]:
    """The best passages by BM25 for any of the terms: chunk id -> rank (0 best). Superseded
    ones are dropped with the rows (joining here would cost more than the whole search)."""
    expression = " OR ".join(fts_phrase(term) for term in terms)
    rows = db.execute(
        """select rowid from knowledge_chunks_fts where knowledge_chunks_fts match ?
           order by bm25(knowledge_chunks_fts) limit ?""", [expression, _CANDIDATES]).fetchall()
    return {row[0]: rank for rank, row in enumerate(rows)}


def _coded(db: sqlite_utils.Database, codes: set[str]) -> set[int]:
    """Current passages that contain one of the codes exactly."""
    if not codes:
        return set()
    marks = ", ".join("?" * len(codes))
    return {row[0] for row in db.execute(
        f"""select k.chunk_id from knowledge_codes k
            join knowledge_chunks c on c.id = k.chunk_id
            join knowledge_revisions r on r.id = c.revision_id and r.superseded_at is null
            where k.code in ({marks}) limit 200""", sorted(codes))}


def _rows(db: sqlite_utils.Database, chunk_ids: set[int]) -> list[dict[str, Any]]:
    """The candidates that belong to current revisions, with what scoring needs."""
    if not chunk_ids:
        return []
    marks = ", ".join("?" * len(chunk_ids))
    return list(db.query(
        f"""select c.id, c.section, c.page, c.text, c.search_text, d.key as document, r.title,
                   r.file, r.label as revision
            from knowledge_chunks c
            join knowledge_revisions r on r.id = c.revision_id and r.superseded_at is null
            join knowledge_documents d on d.id = c.document_id
            where c.id in ({marks})""", sorted(chunk_ids)))
