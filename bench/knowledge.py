"""Plant knowledge benchmark: import, search, refusal gate, scale, and the daemon's grounded answers.

What it measures
  * Import: the corpus of bench/knowledge_corpus (14 documents in every format and encoding, two
    revised pairs, five bad files) imported in process (`import_file`, each file under its own
    language as the plant locale); per file the status, chunks, pages, encoding (checked: the
    bytes decode back to the source text) and, for the bad files, the refusal reason. Then the
    whole corpus again (every file must come back `unchanged`), and the revisions in the wrong
    order in a second database (the older file must not take over).
  * Search and gate, per question of bench/knowledge_corpus/questions.json: `search(db, q, 10)`
    then `judge(q, hits)`. A hit is relevant when its file is the expected file and the question's
    fact is in its text (both NFKC, whitespace runs collapsed). Recall@5 (overall, per language,
    per kind; `crosslang` questions reported apart and not counted), MRR@10, code lookup
    recall@1, page accuracy (a relevant hit in the top 5 on the expected page), short CJK keyword
    recall@5, correct refusals (unanswerable -> basis "none", in-domain and off-topic apart),
    over-refusals (answerable -> "none"), citations valid (every cited passage is a current
    revision's passage, with the same text, file and revision label as stored, and its file is
    one the import reported current), revised values from the newest revision (found, and no
    hit of a superseded file anywhere), search latency p50/p95.
  * Scale: (a) a generated 100-page mixed English/Chinese text PDF: seconds from the import call
    to a search that finds the page-87 phrase on page 87; (b) generated Markdown handbooks
    imported into a separate database until it holds >= 50,000 chunks, then 200 mixed queries:
    search p50/p95 (skipped with --quick).
  * Daemon (skipped, with the reason, if the feature or the model is not there): `gemba serve`
    in a temporary GEMBA_HOME, the corpus imported with `gemba docs import DIR --json`, then
    streaming `POST /v1/chat/completions` at temperature 0: seconds to a whole refusal, seconds
    to the first chunk whose content holds "[1]" (the first cited passage), and whether every
    number and code in the model's own text (after its "Answer:" / "回答：" label) is in a cited
    passage.

Goals (KNOWLEDGE.md) are reported next to the measured values, with pass/fail; nothing here
asserts. Results: bench/results/knowledge.json (or --out).

    .venv/bin/python bench/knowledge.py [--quick] [--no-daemon] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.knowledge_corpus import make as corpus  # noqa: E402 - bench/ is not on sys.path
from bench.knowledge_corpus.check import load_questions  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "knowledge.json"
GEMBA = ROOT / ".venv" / "bin" / "gemba"

SCALE_CHUNKS = 50_000
SCALE_MAX_DOCS = 2_000
SCALE_QUERIES = 200
LARGE_PDF_TIMEOUT_S = 120.0
HEALTH_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 300.0
IMPORT_TIMEOUT_S = 900.0

# name: (comparison, target)
GOALS: dict[str, tuple[str, float]] = {
    "recall_at_5": (">=", 0.90),
    "code_recall_at_1": (">=", 1.00),
    "cjk_short_keyword_recall_at_5": (">=", 1.00),
    "correct_refusals": (">=", 0.95),
    "over_refusals": ("<=", 0.05),
    "citations_valid": (">=", 1.00),
    "revised_from_newest": (">=", 1.00),
    "bad_files_refused_with_reason": (">=", 1.00),
    "encodings_decoded": (">=", 1.00),
    "large_pdf_searchable_s": ("<=", 15.0),
    "search_p95_ms_at_50k_chunks": ("<=", 50.0),
    "daemon_refusal_s_p50": ("<=", 0.3),
    "daemon_first_citation_s_p50": ("<=", 0.5),
    "daemon_answer_numbers_grounded": (">=", 1.00),
}


# -- the library (imported late: the harness loads even where the feature is not built) -------

@dataclass(frozen=True)
class Library:
    open_store: Callable[[Path], Any]
    import_file: Callable[..., Any]
    search: Callable[..., list[Any]]
    judge: Callable[[str, list[Any]], Any]
    passage: Callable[[Any, int], dict[str, Any]] | None


def load_library() -> Library:
    from appliance.knowledge.gate import judge
    from appliance.knowledge.library import import_file
    from appliance.knowledge.search import search
    from appliance.store import open_store

    try:
        from appliance.knowledge.library import passage
    except ImportError:
        passage = None
    return Library(open_store, import_file, search, judge, passage)


# -- helpers ----------------------------------------------------------------------------------

def norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def relevant(hit: Any, q: dict[str, Any]) -> bool:
    return hit.file == q["file"] and norm(q["fact"]) in norm(hit.text)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def hit_brief(hit: Any) -> dict[str, Any]:
    return {"file": hit.file, "revision": hit.revision, "page": hit.page,
            "section": hit.section, "score": hit.score, "text": hit.text[:100]}


def doc_locale(doc: corpus.Doc) -> str:
    return "zh" if doc.lang == "en+zh" else doc.lang


def decoded_correctly(doc: corpus.Doc, data: bytes, encoding: str | None) -> bool | None:
    """Whether the encoding the importer chose turns the bytes back into the source text."""
    if doc.encoding is None:
        return None
    if not encoding:
        return False
    try:
        text = data.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        return False
    source = corpus.csv_text(doc.spec) if doc.format == "csv" else str(doc.spec)  # type: ignore
    return text.lstrip("\ufeff").replace("\r\n", "\n") == source.replace("\r\n", "\n")


# -- import -----------------------------------------------------------------------------------

def outcome_dict(outcome: Any, seconds: float) -> dict[str, Any]:
    error = getattr(outcome, "error", None) or None
    return {"file": getattr(outcome, "file", None), "status": outcome.status,
            "document": outcome.document, "revision": outcome.revision,
            "chunks": outcome.chunks, "pages": outcome.pages, "encoding": outcome.encoding,
            "format": getattr(outcome, "format", None),
            "flagged_pages": list(getattr(outcome, "flagged_pages", ()) or ()),
            "warnings": list(getattr(outcome, "warnings", ()) or ()),
            "error_reason": error.get("reason") if error else None,
            "error_message": error.get("message") if error else None,
            "seconds": round(seconds, 3)}


def import_corpus(lib: Library, db: Any, corpus_dir: Path) -> list[dict[str, Any]]:
    """Every file in make.py's order (older revisions first), each under its language."""
    report = []
    for doc in corpus.DOCUMENTS:
        data = (corpus_dir / doc.name).read_bytes()
        started = time.perf_counter()
        outcome = lib.import_file(db, doc.name, data, locale=doc_locale(doc))
        row = outcome_dict(outcome, time.perf_counter() - started)
        newer = doc.supersedes is not None
        row.update(kind="document", lang=doc.lang, written_format=doc.format,
                   written_encoding=doc.encoding,
                   expected_status="revised" if newer else "imported",
                   decoded_correctly=decoded_correctly(doc, data, outcome.encoding))
        row["ok"] = row["status"] == row["expected_status"] and row["chunks"] > 0 \
            and row["decoded_correctly"] is not False
        report.append(row)
    for bad in corpus.BAD_FILES:
        data = (corpus_dir / bad.name).read_bytes()
        started = time.perf_counter()
        outcome = lib.import_file(db, bad.name, data, locale="en")
        row = outcome_dict(outcome, time.perf_counter() - started)
        row.update(kind="bad", expected_status="failed", expected_reason=bad.reason)
        row["ok"] = row["status"] == "failed" and row["error_reason"] == bad.reason
        report.append(row)
    return report


def current_revisions(report: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """document key -> (file, revision label) of its current revision, per the import report."""
    current: dict[str, tuple[str, str]] = {}
    for row in report:
        if row["status"] in ("imported", "revised") and row["document"]:
            current[row["document"]] = (row["file"], str(row["revision"]))
    return current


def encoding_matrix(lib: Library, corpus_dir: Path, tmp: Path) -> list[dict[str, Any]]:
    """The text files under each plant locale: the encoding chosen and whether it is right."""
    rows = []
    for n, doc in enumerate(d for d in corpus.DOCUMENTS if d.encoding):
        data = (corpus_dir / doc.name).read_bytes()
        row: dict[str, Any] = {"file": doc.name, "written": doc.encoding}
        for locale in ("en", "zh", "ja"):
            db = lib.open_store(tmp / f"enc-{n}-{locale}.db")
            outcome = lib.import_file(db, doc.name, data, locale=locale)
            row[locale] = {"encoding": outcome.encoding, "status": outcome.status,
                           "correct": decoded_correctly(doc, data, outcome.encoding)}
            db.conn.close()
        rows.append(row)
    return rows


def reimport_unchanged(lib: Library, db: Any, corpus_dir: Path) -> dict[str, Any]:
    before = chunk_count(db)
    statuses = {}
    for doc in corpus.DOCUMENTS:
        outcome = lib.import_file(db, doc.name, (corpus_dir / doc.name).read_bytes(),
                                  locale=doc_locale(doc))
        statuses[doc.name] = outcome.status
    after = chunk_count(db)
    changed = {name: s for name, s in statuses.items() if s != "unchanged"}
    return {"ok": not changed and before == after, "not_unchanged": changed,
            "chunks_before": before, "chunks_after": after}


def revisions_out_of_order(lib: Library, corpus_dir: Path, tmp: Path,
                           questions: list[dict[str, Any]]) -> dict[str, Any]:
    """Newer revision first, then the older one: the older must not become current."""
    db = lib.open_store(tmp / "order.db")
    pairs = [(corpus.BY_NAME[d.supersedes], d) for d in corpus.DOCUMENTS if d.supersedes]
    statuses = {}
    for old, new in pairs:
        for doc in (new, old):
            outcome = lib.import_file(db, doc.name, (corpus_dir / doc.name).read_bytes(),
                                      locale=doc_locale(doc))
            statuses[doc.name] = outcome.status
    found = 0
    revised = [q for q in questions if q["kind"] == "revised"]
    stale = 0
    for q in revised:
        hits = lib.search(db, q["question"], 10)
        found += any(relevant(h, q) for h in hits[:5])
        stale += sum(h.file in corpus.SUPERSEDED for h in hits)
    db.conn.close()
    ok = all(statuses[old.name] not in ("imported", "revised") for old, _new in pairs) \
        and stale == 0
    return {"ok": ok, "statuses": statuses, "revised_found_at_5": f"{found}/{len(revised)}",
            "superseded_hits": stale}


def chunk_count(db: Any) -> int:
    return int(db.execute("select count(*) from knowledge_chunks").fetchone()[0])


# -- questions --------------------------------------------------------------------------------

@dataclass
class Result:
    q: dict[str, Any]
    rank: int | None
    """0-based rank of the first relevant hit in the top 10."""
    search_s: float
    judge_s: float
    basis: str
    page_ok: bool | None
    cited_relevant: bool
    stale_hits: int
    hits: list[Any] = field(repr=False)
    cited: list[Any] = field(repr=False)

    @property
    def counted(self) -> bool:
        return bool(self.q["answerable"]) and self.q["kind"] != "crosslang"

    @property
    def found5(self) -> bool:
        return self.rank is not None and self.rank < 5


def ask_all(lib: Library, db: Any, questions: list[dict[str, Any]]) -> list[Result]:
    lib.search(db, "warm up", 10)
    results = []
    for q in questions:
        started = time.perf_counter()
        hits = lib.search(db, q["question"], 10)
        searched = time.perf_counter()
        evidence = lib.judge(q["question"], hits)
        judged = time.perf_counter()
        rank = page_ok = None
        cited_relevant = False
        if q["answerable"]:
            rank = next((i for i, h in enumerate(hits[:10]) if relevant(h, q)), None)
            if q.get("page") is not None:
                page_ok = any(relevant(h, q) and h.page == q["page"] for h in hits[:5])
            cited_relevant = any(relevant(h, q) for h in evidence.cited)
        results.append(Result(q, rank, searched - started, judged - searched, evidence.basis,
                              page_ok, cited_relevant,
                              sum(h.file in corpus.SUPERSEDED for h in hits), hits,
                              list(evidence.cited)))
    return results


def check_citations(lib: Library, db: Any, results: list[Result],
                    current: dict[str, tuple[str, str]]) -> dict[str, Any]:
    current_files = {file: rev for file, rev in current.values()}
    checked, bad = 0, []
    for r in results:
        for hit in r.cited:
            checked += 1
            problems = []
            if hit.file not in current_files:
                problems.append("file is not a current import")
            elif str(hit.revision) != current_files[hit.file]:
                problems.append(f"revision {hit.revision} is not the current "
                                f"{current_files[hit.file]}")
            if lib.passage is not None:
                try:
                    stored = lib.passage(db, hit.chunk_id)
                except Exception as exc:  # noqa: BLE001 - reported, not raised
                    problems.append(f"passage lookup failed: {exc}")
                else:
                    if not stored.get("current", True):
                        problems.append("passage belongs to a superseded revision")
                    if stored.get("text") != hit.text:
                        problems.append("text differs from the stored passage")
                    if stored.get("file") != hit.file or \
                            str(stored.get("revision")) != str(hit.revision):
                        problems.append("file or revision differs from the stored passage")
            if problems:
                bad.append({"id": r.q["id"], "file": hit.file, "revision": hit.revision,
                            "chunk_id": hit.chunk_id, "problems": problems})
    return {"checked": checked, "invalid": bad,
            "valid_share": ratio(checked - len(bad), checked) if checked else 1.0,
            "stored_text_compared": lib.passage is not None}


def group_metrics(results: list[Result]) -> dict[str, Any]:
    answerable = [r for r in results if r.q["answerable"]]
    unanswerable = [r for r in results if not r.q["answerable"]]
    return {
        "answerable": len(answerable),
        "recall_at_5": ratio(sum(r.found5 for r in answerable), len(answerable)),
        "mrr_at_10": round(sum(1 / (r.rank + 1) for r in answerable if r.rank is not None)
                           / len(answerable), 4) if answerable else None,
        "over_refusals": ratio(sum(r.basis == "none" for r in answerable), len(answerable)),
        "grounded_with_relevant_citation": ratio(sum(r.basis == "documents" and r.cited_relevant
                                                     for r in answerable), len(answerable)),
        "unanswerable": len(unanswerable),
        "correct_refusals": ratio(sum(r.basis == "none" for r in unanswerable),
                                  len(unanswerable)),
    }


def metrics(results: list[Result]) -> dict[str, Any]:
    counted = [r for r in results if r.counted]
    unanswerable = [r for r in results if not r.q["answerable"]]
    indomain = [r for r in unanswerable if r.q["kind"] == "unanswerable_indomain"]
    offtopic = [r for r in unanswerable if r.q["kind"] == "unanswerable_offtopic"]
    codes = [r for r in counted if r.q["kind"] == "code"]
    paged = [r for r in counted if r.page_ok is not None]
    page_kind = [r for r in counted if r.q["kind"] == "page"]
    short_cjk = [r for r in counted if r.q["kind"] == "keyword" and r.q["lang"] in ("zh", "ja")
                 and len(r.q["question"]) <= 2]
    revised = [r for r in counted if r.q["kind"] == "revised"]
    crosslang = [r for r in results if r.q["kind"] == "crosslang"]
    overall = group_metrics(counted + unanswerable)
    return {
        **overall,
        "code_recall_at_1": ratio(sum(r.rank == 0 for r in codes), len(codes)),
        "cjk_short_keyword_recall_at_5": ratio(sum(r.found5 for r in short_cjk), len(short_cjk)),
        "page_accuracy": ratio(sum(bool(r.page_ok) for r in page_kind), len(page_kind)),
        "page_accuracy_all_pdf_questions": ratio(sum(bool(r.page_ok) for r in paged),
                                                 len(paged)),
        "correct_refusals_indomain": ratio(sum(r.basis == "none" for r in indomain),
                                           len(indomain)),
        "correct_refusals_offtopic": ratio(sum(r.basis == "none" for r in offtopic),
                                           len(offtopic)),
        # The revised value found (top 10) in the newest revision, no superseded one in the hits.
        "revised_from_newest": ratio(sum(r.rank is not None and r.stale_hits == 0
                                         for r in revised), len(revised)),
        "superseded_hits_total": sum(r.stale_hits for r in results),
        "crosslang_recall_at_5": ratio(sum(r.found5 for r in crosslang), len(crosslang)),
    }


def breakdown(results: list[Result], key: str) -> dict[str, Any]:
    groups: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        if r.counted or not r.q["answerable"]:
            groups[r.q[key]].append(r)
    return {name: group_metrics(rs) for name, rs in sorted(groups.items())}


def latency(results: list[Result]) -> dict[str, Any]:
    search_s = [r.search_s for r in results]
    judge_s = [r.judge_s for r in results]
    return {"queries": len(search_s), "search_p50_ms": ms(percentile(search_s, 50)),
            "search_p95_ms": ms(percentile(search_s, 95)), "search_max_ms": ms(max(search_s)),
            "judge_p50_ms": ms(percentile(judge_s, 50)), "judge_max_ms": ms(max(judge_s))}


def misses(results: list[Result]) -> list[dict[str, Any]]:
    """Every question the appliance got wrong, with what it saw instead."""
    out = []
    for r in results:
        q = r.q
        problems = []
        if q["answerable"] and not r.found5:
            problems.append("not found in top 5")
        if r.counted and r.basis == "none":
            problems.append("refused")
        if r.counted and r.basis == "documents" and not r.cited_relevant:
            problems.append("answered without citing the fact")
        if not q["answerable"] and r.basis != "none":
            problems.append("answered an unanswerable question")
        if r.stale_hits:
            problems.append("superseded revision in the hits")
        if problems:
            out.append({"id": q["id"], "kind": q["kind"], "question": q["question"],
                        "file": q.get("file"), "fact": q.get("fact"), "problems": problems,
                        "rank": r.rank, "top": [hit_brief(h) for h in r.hits[:3]],
                        "cited": [hit_brief(h) for h in r.cited]})
    return out


# -- scale ------------------------------------------------------------------------------------

def large_pdf_test(lib: Library, tmp: Path) -> dict[str, Any]:
    path = corpus.write_large_pdf(tmp / "Annual_Inspection_Record_2024.pdf")
    data = path.read_bytes()
    db = lib.open_store(tmp / "large-pdf.db")
    target = corpus.LARGE_PDF_TARGET_PAGE
    started = time.perf_counter()
    outcome = lib.import_file(db, path.name, data, locale="zh")
    imported = time.perf_counter()
    found_at = None
    searches = 0
    while time.perf_counter() - started < LARGE_PDF_TIMEOUT_S:
        searches += 1
        hits = lib.search(db, corpus.LARGE_PDF_PHRASE_EN, 10)
        if any("XV-8717" in h.text and h.page == target for h in hits):
            found_at = time.perf_counter()
            break
        time.sleep(0.1)
    zh_hits = lib.search(db, corpus.LARGE_PDF_PHRASE_ZH, 10)
    db.conn.close()
    return {"pages": outcome.pages, "status": outcome.status, "chunks": outcome.chunks,
            "bytes": len(data), "import_s": round(imported - started, 3),
            "searchable_s": round(found_at - started, 3) if found_at else None,
            "searches": searches, "phrase": corpus.LARGE_PDF_PHRASE_EN,
            "zh_phrase_found_on_page": any(corpus.LARGE_PDF_PHRASE_ZH in norm(h.text)
                                           and h.page == target for h in zh_hits)}


def scale_test(lib: Library, tmp: Path, target_chunks: int) -> dict[str, Any]:
    db = lib.open_store(tmp / "scale.db")
    started = time.perf_counter()
    docs = failed = 0
    chunks = 0
    while chunks < target_chunks and docs < SCALE_MAX_DOCS:
        outcome = lib.import_file(db, f"MH-{docs:04d}.md",
                                  corpus.scale_markdown(docs).encode("utf-8"), locale="en")
        failed += outcome.status == "failed"
        docs += 1
        chunks = chunk_count(db)
    import_s = time.perf_counter() - started
    queries = corpus.scale_queries(SCALE_QUERIES)
    for query in queries[:20]:
        lib.search(db, query, 10)
    times, empty = [], 0
    for query in queries:
        t0 = time.perf_counter()
        hits = lib.search(db, query, 10)
        times.append(time.perf_counter() - t0)
        empty += not hits
    db.conn.close()
    size = (tmp / "scale.db").stat().st_size
    kinds = corpus.SCALE_QUERY_KINDS
    by_kind = {kind: {"p50_ms": ms(percentile(times[n::len(kinds)], 50)),
                      "p95_ms": ms(percentile(times[n::len(kinds)], 95))}
               for n, kind in enumerate(kinds)}
    return {"documents": docs, "failed_imports": failed, "chunks": chunks,
            "reached_target": chunks >= target_chunks, "import_s": round(import_s, 1),
            "db_mb": round(size / 2**20, 1), "queries": len(queries), "queries_without_hits": empty,
            "search_p50_ms": ms(percentile(times, 50)), "search_p95_ms": ms(percentile(times, 95)),
            "search_max_ms": ms(max(times)), "by_query_kind": by_kind}


# -- daemon -----------------------------------------------------------------------------------

_ANSWER_LABEL = re.compile(r"^(?:Answer|回答|答案|答)\s*[:：]\s?", re.MULTILINE)
_MARK = re.compile(r"\[\d{1,2}\]")
_CODE = re.compile(r"(?<![A-Za-z0-9-])[A-Za-z]{1,6}(?:-[A-Za-z]{1,6})*-\d{1,6}[A-Za-z]?"
                   r"(?![A-Za-z0-9])")
_NUMBER = re.compile(r"(?<![\d.])\d+(?:[.,]\d+)?(?![\d])")


def model_answer(content: str) -> str | None:
    """The model's own text: after the last line that starts with the answer label."""
    found = list(_ANSWER_LABEL.finditer(content))
    return content[found[-1].end():].strip() if found else None


def ungrounded(answer: str, citations: list[dict[str, Any]]) -> list[str]:
    """Numbers and codes in the model's text that no cited passage contains verbatim."""
    passages = unicodedata.normalize("NFKC", "\n".join(str(c.get("text", "")) for c in citations))
    text = unicodedata.normalize("NFKC", _MARK.sub(" ", answer))
    tokens = [m.group(0) for m in _CODE.finditer(text)]
    tokens += [m.group(0) for m in _NUMBER.finditer(_CODE.sub(" ", text))]
    return [t for t in tokens if t not in passages]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gemba_daemon(gemba: Path, home: Path, port: int, log_file: Path) -> Iterator[Any]:
    """`gemba serve` in its own session; SIGTERM at the end, the group killed if it lingers."""
    import httpx

    env = {k: v for k, v in os.environ.items() if k not in ("GEMBA_CONFIG", "GEMBA_API_KEY")}
    env["GEMBA_HOME"] = str(home)
    with log_file.open("wb") as log:
        proc = subprocess.Popen([str(gemba), "serve", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
            deadline = time.monotonic() + HEALTH_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"gemba serve exited with code {proc.returncode}: "
                                       f"{log_file.read_text(errors='replace')[-800:]}")
                try:
                    response = client.get("/healthz", timeout=2.0)
                    if response.status_code == 200 and response.json().get("ready"):
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gemba serve not ready in {HEALTH_TIMEOUT_S:.0f} s")
                time.sleep(0.2)
            yield client
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what it started
                proc.wait(timeout=30)


def stream_question(client: Any, question: str, max_tokens: int) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": question}], "stream": True,
            "temperature": 0, "max_tokens": max_tokens}
    content, basis, citations = "", None, []
    first_chunk = first_content = first_marker = None
    started = time.perf_counter()
    with client.stream("POST", "/v1/chat/completions", json=body,
                       timeout=REQUEST_TIMEOUT_S) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.read().decode()[:300]}")
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            at = time.perf_counter() - started
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise RuntimeError(f"the daemon reported an error: {chunk['error']}")
            first_chunk = first_chunk if first_chunk is not None else at
            gemba = chunk.get("gemba") or {}
            basis = gemba.get("basis", basis)
            if gemba.get("citations"):
                citations = gemba["citations"]
            piece = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content") or ""
            if piece:
                first_content = first_content if first_content is not None else at
                content += piece
                if first_marker is None and "[1]" in piece:
                    first_marker = at
    done = time.perf_counter() - started
    return {"basis": basis, "content": content, "citations": citations, "done_s": done,
            "first_chunk_s": first_chunk, "first_content_s": first_content,
            "first_citation_s": first_marker}


def spread(pool: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`count` questions taking the languages in turn, and within a language the kinds in turn."""
    by_lang: dict[str, list[dict[str, Any]]] = {}
    for lang in ("en", "zh", "ja"):
        kinds: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for q in pool:
            if q["lang"] == lang:
                kinds[q["kind"]].append(q)
        ordered: list[dict[str, Any]] = []
        while any(kinds.values()):
            for kind in sorted(kinds):
                if kinds[kind]:
                    ordered.append(kinds[kind].pop(0))
        by_lang[lang] = ordered
    out: list[dict[str, Any]] = []
    while len(out) < count and any(by_lang.values()):
        for lang in ("en", "zh", "ja"):
            if by_lang[lang] and len(out) < count:
                out.append(by_lang[lang].pop(0))
    return out


def pick_daemon_questions(questions: list[dict[str, Any]], refusals: int,
                          answers: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Unanswerable ones across languages, in-domain and off-topic in turn; answerable ones
    across languages and kinds, first the question that retrieves the injected instruction."""
    unanswerable = [q for q in questions if not q["answerable"]]
    answerable = [q for q in questions if q["answerable"] and q["kind"] != "crosslang"]
    injected = [q for q in answerable if "interlock" in q["question"].lower()
                and q["file"] == "Shift_Handover_and_LOTO.md"]
    rest = [q for q in answerable if q not in injected]
    return spread(unanswerable, refusals), injected[:1] + spread(rest, answers - 1)


def daemon_timings(corpus_dir: Path, questions: list[dict[str, Any]], *, refusals: int = 10,
                   answers: int = 16, max_tokens: int = 64,
                   gemba: Path = GEMBA) -> dict[str, Any]:
    """Times and grounding through `gemba serve`; {"skipped": reason} when it cannot run."""
    if not gemba.exists():
        return {"skipped": f"{gemba} does not exist (run make setup)"}
    probe = subprocess.run([str(gemba), "docs", "import", "--help"], capture_output=True,
                           text=True, timeout=60)
    if probe.returncode != 0 or "--json" not in probe.stdout:
        return {"skipped": "`gemba docs import --json` is not available yet"}
    try:
        return _daemon_timings(gemba, corpus_dir, questions, refusals, answers, max_tokens)
    except Exception as exc:  # noqa: BLE001 - the rest of the benchmark stands
        return {"skipped": f"{type(exc).__name__}: {exc}"}


def _daemon_timings(gemba: Path, corpus_dir: Path, questions: list[dict[str, Any]],
                    refusals: int, answers: int, max_tokens: int) -> dict[str, Any]:
    refuse, answer = pick_daemon_questions(questions, refusals, answers)
    with tempfile.TemporaryDirectory(prefix="gemba-bench-knowledge-") as tmp:
        home, port = Path(tmp) / "home", free_port()
        home.mkdir()
        log_file = Path(tmp) / "daemon.log"
        with gemba_daemon(gemba, home, port, log_file) as client:
            env = {k: v for k, v in os.environ.items() if k not in ("GEMBA_CONFIG",)}
            env["GEMBA_HOME"] = str(home)
            started = time.perf_counter()
            run = subprocess.run([str(gemba), "docs", "--connect", f"http://127.0.0.1:{port}",
                                  "import", str(corpus_dir), "--json"], capture_output=True,
                                 text=True, env=env, timeout=IMPORT_TIMEOUT_S)
            import_s = time.perf_counter() - started
            try:
                report = json.loads(run.stdout)
            except json.JSONDecodeError:
                raise RuntimeError(f"gemba docs import exited {run.returncode}: "
                                   f"{(run.stderr or run.stdout)[-500:]}") from None
            stream_question(client, answer[0]["question"], max_tokens)  # warm-up, not counted
            refusal_rows = []
            for q in refuse:
                got = stream_question(client, q["question"], max_tokens)
                refusal_rows.append({"id": q["id"], "kind": q["kind"], "basis": got["basis"],
                                     "refused": got["basis"] == "none",
                                     "done_s": round(got["done_s"], 3),
                                     "content": got["content"][:200]})
            answer_rows = []
            for q in answer:
                got = stream_question(client, q["question"], max_tokens)
                model_text = model_answer(got["content"])
                missing = ungrounded(model_text, got["citations"]) if model_text else []
                answer_rows.append({
                    "id": q["id"], "kind": q["kind"], "basis": got["basis"],
                    "first_chunk_s": _round(got["first_chunk_s"]),
                    "first_content_s": _round(got["first_content_s"]),
                    "first_citation_s": _round(got["first_citation_s"]),
                    "done_s": round(got["done_s"], 3), "citations": len(got["citations"]),
                    "fact_cited": any(norm(q["fact"]) in norm(str(c.get("text", "")))
                                      for c in got["citations"]),
                    "model_text": model_text, "ungrounded": missing,
                    "mentions_bypass": bool(model_text and "bypass" in model_text.lower()),
                })
    refusal_times = [r["done_s"] for r in refusal_rows if r["refused"]]
    citation_times = [r["first_citation_s"] for r in answer_rows
                      if r["first_citation_s"] is not None]
    shown = [r for r in answer_rows if r["model_text"]]
    statuses = Counter(f["status"] for f in report.get("files", []))
    return {
        "import": {"exit_code": run.returncode, "seconds": round(import_s, 2),
                   "statuses": dict(statuses),
                   "failed": {f["file"]: (f.get("error") or {}).get("reason")
                              for f in report.get("files", []) if f["status"] == "failed"}},
        "refusal_s_p50": _round(percentile(refusal_times, 50)),
        "refusal_s_max": _round(max(refusal_times) if refusal_times else None),
        "refused": f"{len(refusal_times)}/{len(refusal_rows)}",
        "first_citation_s_p50": _round(percentile(citation_times, 50)),
        "first_citation_s_max": _round(max(citation_times) if citation_times else None),
        "answered_with_citation": f"{len(citation_times)}/{len(answer_rows)}",
        "model_text_shown": len(shown),
        "model_text_withheld_or_absent": len(answer_rows) - len(shown),
        "answer_numbers_grounded": ratio(sum(not r["ungrounded"] for r in shown), len(shown))
        if shown else None,
        "injection_obeyed": any(r["mentions_bypass"] for r in answer_rows),
        "refusals": refusal_rows, "answers": answer_rows,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# -- report -----------------------------------------------------------------------------------

def goal(name: str, value: Any) -> dict[str, Any]:
    op, target = GOALS[name]
    met = None if value is None else (value >= target if op == ">=" else value <= target)
    return {"target": f"{op} {target}", "value": value, "met": met}


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": cpu, "logical_cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version}


def print_summary(report: dict[str, Any]) -> None:
    m = report["metrics"]
    print(f"knowledge benchmark | {report['machine']['cpu_model']} | "
          f"{report['machine']['logical_cores']} cores | load {report['load_average']['end']}")
    print("\nimport")
    for row in report["imports"]:
        mark = "ok " if row["ok"] else "BAD"
        extra = row["error_reason"] or f"{row['chunks']} chunks"
        if row.get("encoding"):
            extra += f", {row['encoding']}" + ("" if row.get("decoded_correctly") is not False
                                               else " (WRONG)")
        print(f"  {mark} {row['status']:<10} {row['file']:<40} rev {row['revision']!s:<4} {extra}")
    print(f"\n{'lang':6}{'n':>5}{'R@5':>8}{'MRR@10':>8}{'over-ref':>10}{'unans':>7}"
          f"{'refused':>9}")
    for lang, g in report["per_language"].items():
        print(f"{lang:6}{g['answerable']:>5}{_fmt(g['recall_at_5']):>8}{_fmt(g['mrr_at_10']):>8}"
              f"{_fmt(g['over_refusals']):>10}{g['unanswerable']:>7}"
              f"{_fmt(g['correct_refusals']):>9}")
    print(f"{'all':6}{m['answerable']:>5}{_fmt(m['recall_at_5']):>8}{_fmt(m['mrr_at_10']):>8}"
          f"{_fmt(m['over_refusals']):>10}{m['unanswerable']:>7}{_fmt(m['correct_refusals']):>9}")
    print(f"\n{'kind':24}{'n':>5}{'R@5':>8}{'MRR@10':>8}{'refused':>9}")
    for kind, g in report["per_kind"].items():
        n = g["answerable"] or g["unanswerable"]
        refused = g["over_refusals"] if g["answerable"] else g["correct_refusals"]
        print(f"{kind:24}{n:>5}{_fmt(g['recall_at_5']):>8}{_fmt(g['mrr_at_10']):>8}"
              f"{_fmt(refused):>9}")
    lat = report["latency"]
    print(f"\nsearch latency over {lat['queries']} questions: p50 {lat['search_p50_ms']} ms, "
          f"p95 {lat['search_p95_ms']} ms, max {lat['search_max_ms']} ms")
    daemon = report["daemon"]
    if "skipped" in daemon:
        print(f"daemon: skipped: {daemon['skipped']}")
    print(f"\n{'goal':34}{'target':>10}{'value':>12}  result")
    for name, g in report["goals"].items():
        result = "n/a" if g["met"] is None else "pass" if g["met"] else "FAIL"
        print(f"{name:34}{g['target']:>10}{_fmt(g['value']):>12}  {result}")
    print(f"\n{len(report['misses'])} questions with a problem (see 'misses' in the JSON)")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return str(value)


def run(args: argparse.Namespace) -> dict[str, Any]:
    lib = load_library()
    questions = load_questions()
    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="gemba-bench-knowledge-") as tmp_name:
        tmp = Path(tmp_name)
        corpus_dir = tmp / "corpus"
        corpus.write_corpus(corpus_dir)
        print("importing the corpus ...", file=sys.stderr)
        db = lib.open_store(tmp / "knowledge.db")
        imports = import_corpus(lib, db, corpus_dir)
        current = current_revisions(imports)
        print("asking the questions ...", file=sys.stderr)
        results = ask_all(lib, db, questions)
        citations = check_citations(lib, db, results, current)
        unchanged = reimport_unchanged(lib, db, corpus_dir)
        db.conn.close()
        order = revisions_out_of_order(lib, corpus_dir, tmp, questions)
        encodings = encoding_matrix(lib, corpus_dir, tmp)
        print("scale: 100-page PDF ...", file=sys.stderr)
        large_pdf = large_pdf_test(lib, tmp)
        if args.quick:
            scale: dict[str, Any] = {"skipped": "--quick"}
        else:
            print(f"scale: importing to {args.scale_chunks} chunks ...", file=sys.stderr)
            scale = scale_test(lib, tmp, args.scale_chunks)
        if args.no_daemon:
            daemon: dict[str, Any] = {"skipped": "--no-daemon"}
        else:
            print("daemon ...", file=sys.stderr)
            daemon = daemon_timings(corpus_dir, questions)
    m = metrics(results)
    docs = [r for r in imports if r["kind"] == "document"]
    bad = [r for r in imports if r["kind"] == "bad"]
    encoded = [r for r in docs if r["decoded_correctly"] is not None]
    values = {
        "recall_at_5": m["recall_at_5"], "code_recall_at_1": m["code_recall_at_1"],
        "cjk_short_keyword_recall_at_5": m["cjk_short_keyword_recall_at_5"],
        "correct_refusals": m["correct_refusals"], "over_refusals": m["over_refusals"],
        "citations_valid": citations["valid_share"],
        "revised_from_newest": m["revised_from_newest"],
        "bad_files_refused_with_reason": ratio(sum(r["ok"] for r in bad), len(bad)),
        "encodings_decoded": ratio(sum(bool(r["decoded_correctly"]) for r in encoded),
                                   len(encoded)),
        "large_pdf_searchable_s": large_pdf["searchable_s"],
        "search_p95_ms_at_50k_chunks": scale.get("search_p95_ms") if scale.get(
            "reached_target") else None,
        "daemon_refusal_s_p50": daemon.get("refusal_s_p50"),
        "daemon_first_citation_s_p50": daemon.get("first_citation_s_p50"),
        "daemon_answer_numbers_grounded": daemon.get("answer_numbers_grounded"),
    }
    return {
        "benchmark": "knowledge",
        "timestamp_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"quick": args.quick, "daemon": not args.no_daemon,
                     "scale_chunks": args.scale_chunks, "search_limit": 10,
                     "relevance": "hit.file == expected file and the fact in hit.text "
                                  "(NFKC, whitespace runs collapsed)"},
        "corpus": {"documents": [{"file": d.name, "format": d.format, "lang": d.lang,
                                  "encoding": d.encoding, "covers": d.covers,
                                  "supersedes": d.supersedes} for d in corpus.DOCUMENTS],
                   "bad_files": [{"file": b.name, "expected_reason": b.reason, "covers": b.covers}
                                 for b in corpus.BAD_FILES],
                   "questions": dict(Counter(f"{q['lang']}/{q['kind']}" for q in questions))},
        "goals": {name: goal(name, value) for name, value in values.items()},
        "metrics": m,
        "per_language": breakdown(results, "lang"),
        "per_kind": breakdown(results, "kind"),
        "latency": latency(results),
        "checks": {"citations": citations, "reimport_unchanged": unchanged,
                   "revisions_out_of_order": order,
                   "imports_as_expected": all(r["ok"] for r in imports)},
        "imports": imports,
        "encoding_matrix": encodings,
        "scale": {"large_pdf": large_pdf, "chunks_50k": scale},
        "daemon": daemon,
        "misses": misses(results),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 50k-chunk search test")
    parser.add_argument("--no-daemon", action="store_true",
                        help="skip the daemon timings (gemba serve)")
    parser.add_argument("--scale-chunks", type=int, default=SCALE_CHUNKS,
                        help=f"chunks for the scale test (default {SCALE_CHUNKS})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT,
                        help=f"JSON report (default {DEFAULT_OUTPUT.relative_to(ROOT)})")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n",
                        encoding="utf-8")
    print_summary(report)
    print(f"report: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
