"""Find the passages of the current revisions that a question is about.

Three signals, in order of trust: a code the operator typed (E-104) that a passage contains
exactly; how much of the question a passage covers (each term weighted by how rare it is in the
library, IDF); and FTS5's BM25 rank to order passages that cover the same. Whatever the operator
types is searched as text: every term goes to FTS5 as a quoted phrase, never as syntax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sqlite_utils

from appliance.knowledge.text import Term, codes_in, fts_phrase, query_terms

_CANDIDATES = 60


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
    having = {term.phrase: _matching(db, term) for term in terms}
    weights = {term.phrase: _idf(total, len(having[term.phrase])) for term in terms}
    candidates = _ranked(db, terms)
    coded = _coded(db, codes)
    rows = _rows(db, set(candidates) | coded)
    hits = []
    for chunk_id, row in rows.items():
        matched = tuple(t.phrase for t in terms if chunk_id in having[t.phrase])
        coverage = sum(weights[p] for p in matched) / sum(weights.values())
        text_codes = codes_in(row["text"])
        missing = tuple(t.phrase for t in terms if t.specific and chunk_id not in having[t.phrase])
        missing += tuple(sorted(code for code in codes if code not in text_codes))
        rank = candidates.get(chunk_id)
        rank_share = 0.0 if rank is None else 0.2 * (1 - rank / _CANDIDATES)
        code_share = 1.0 if codes and codes <= text_codes else 0.0
        hits.append(Hit(chunk_id, row["document"], row["title"], row["file"], row["revision"],
                        row["section"], row["page"], row["text"],
                        round(coverage + rank_share + code_share, 4), round(coverage, 4),
                        matched, missing))
    hits.sort(key=lambda h: (-h.score, h.chunk_id))
    return hits[:limit]


def _idf(total: int, having: int) -> float:
    return math.log(1 + (total - having + 0.5) / (having + 0.5))


def _matching(db: sqlite_utils.Database, term: Term) -> set[int]:
    """Every passage (any revision) containing the term: for its rarity and for coverage."""
    return {row[0] for row in db.execute(
        "select rowid from knowledge_chunks_fts where knowledge_chunks_fts match ?",
        [fts_phrase(term)])}


def _ranked(db: sqlite_utils.Database, terms: list[Term]) -> dict[int, int]:
    """The best current passages by BM25 for any of the terms: chunk id -> rank (0 best)."""
    expression = " OR ".join(fts_phrase(term) for term in terms)
    rows = db.execute(
        """select f.rowid from knowledge_chunks_fts f
           join knowledge_chunks c on c.id = f.rowid
           join knowledge_revisions r on r.id = c.revision_id and r.superseded_at is null
           where knowledge_chunks_fts match ? order by bm25(knowledge_chunks_fts) limit ?""",
        [expression, _CANDIDATES]).fetchall()
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


def _rows(db: sqlite_utils.Database, chunk_ids: set[int]) -> dict[int, dict[str, object]]:
    if not chunk_ids:
        return {}
    marks = ", ".join("?" * len(chunk_ids))
    return {row["id"]: row for row in db.query(
        f"""select c.id, c.section, c.page, c.text, d.key as document, r.title, r.file,
                   r.label as revision
            from knowledge_chunks c
            join knowledge_revisions r on r.id = c.revision_id and r.superseded_at is null
            join knowledge_documents d on d.id = c.document_id
            where c.id in ({marks})""", sorted(chunk_ids))}
