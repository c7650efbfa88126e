"""Check the knowledge benchmark's question set against the corpus it was written for, without
the appliance.

    python -m bench.knowledge_corpus.check [--no-files]

Against the source text kept in make.py:
  * the corpus covers every format and encoding, a revised document, an injected instruction
    and the four kinds of bad file;
  * every answerable question's fact lies within one text unit (PDF line, paragraph, cell, text
    line) of its expected file, on its page for a PDF; is stable under NFKC (so an importer that
    normalizes Unicode keeps it); `code` questions' code and fact share one record (row, line),
    and the code is in no other current file; `keyword` facts are in no other current file;
    `page` facts are on no other page and in no other file; `revised` facts are in the newer
    revision only;
  * no term an in-domain unanswerable question is built on (its `absent` list, its codes)
    occurs anywhere in the corpus;
  * the counts the benchmark needs (>= 150 answerable, >= 40 a language, 60 unanswerable, a
    third of them in-domain).
Against the written files (skipped with --no-files): every file is written twice byte for byte
the same (except the encrypted PDF: pypdf's random file ID), the text formats decode back to the
source under their encoding (Shift_JIS the same under cp932, GBK the same under gb18030), and
every fact is found in the text the parsing libraries extract (pypdfium2 per page, python-docx,
openpyxl), whitespace runs collapsed.
Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from bench.knowledge_corpus.make import (
    BAD_FILES,
    BY_NAME,
    CURRENT,
    DOCUMENTS,
    INJECTION_TEXT,
    SUPERSEDED,
    Doc,
    DocxSpec,
    PdfSpec,
    bad_file_bytes,
    document_bytes,
)

QUESTIONS = Path(__file__).resolve().parent / "questions.json"

LANGS = ("en", "zh", "ja")
ANSWERABLE_KINDS = ("paraphrase", "keyword", "code", "page", "revised", "wording", "crosslang")
UNANSWERABLE_KINDS = ("unanswerable_indomain", "unanswerable_offtopic")
CODE = re.compile(r"(?<![A-Za-z0-9-])[A-Z]{1,3}-\d{1,4}(?![0-9])")
"""An alarm or equipment code as an operator types it: E-104, CP-2, P-22, A-310, KY-01."""

GOAL_ANSWERABLE = 150
GOAL_PER_LANGUAGE = 40
GOAL_UNANSWERABLE = 60


def load_questions(path: Path = QUESTIONS) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def code_in(code: str, text: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9-]){re.escape(code)}(?![0-9])", text) is not None


def records(doc: Doc) -> list[str]:
    """Rows and lines: what one record chunk or one line would hold."""
    spec = doc.spec
    if doc.format == "xlsx":
        return [" | ".join(row) for _name, rows in spec for row in rows]  # type: ignore[attr-defined]
    if doc.format == "csv":
        return [" | ".join(row) for row in spec]  # type: ignore[attr-defined]
    if isinstance(spec, DocxSpec):
        out: list[str] = []
        for kind, payload in spec.blocks:
            if kind == "table":
                out.extend(" | ".join(row) for row in payload)  # type: ignore[attr-defined]
            else:
                out.append(str(payload))
        return out
    return list(doc.units)


def collapse(text: str) -> str:
    return " ".join(text.split())


class Checker:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def check(self, ok: bool, message: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(message)
        return ok


# -- the corpus -------------------------------------------------------------------------------

def check_corpus(c: Checker) -> None:
    formats = Counter(doc.format for doc in DOCUMENTS)
    encodings = {doc.encoding for doc in DOCUMENTS}
    c.check(len(DOCUMENTS) >= 10, f"only {len(DOCUMENTS)} documents (need >= 10)")
    for fmt in ("pdf", "docx", "xlsx", "csv", "text", "markdown"):
        c.check(formats[fmt] > 0, f"no {fmt} document")
    for enc in ("gbk", "shift_jis", "utf-8"):
        c.check(enc in encodings, f"no document in {enc}")
    c.check(bool({"euc_jp", "utf-16"} & encodings), "no document in EUC-JP or UTF-16")
    c.check(any(doc.format == "csv" and doc.encoding == "gbk" and doc.lang == "zh"
                for doc in DOCUMENTS), "no Chinese GBK CSV")
    c.check(any(doc.format == "text" and doc.encoding == "shift_jis" and doc.lang == "ja"
                for doc in DOCUMENTS), "no Japanese Shift_JIS text")
    pdf_fonts = {doc.spec.font for doc in DOCUMENTS if isinstance(doc.spec, PdfSpec)}
    c.check(bool({"STSong-Light", "HeiseiMin-W3"} & pdf_fonts), "no CJK (CID font) PDF")
    c.check(any(doc.pages and len(doc.pages) >= 6 and doc.lang == "en" for doc in DOCUMENTS),
            "no English PDF of 6 pages or more")
    styles = {doc.spec.heading_styles for doc in DOCUMENTS if isinstance(doc.spec, DocxSpec)}
    c.check(("Heading 1", "Heading 2") in styles, "no DOCX with Heading 1/2 styles")
    c.check(any(s[0] != "Heading 1" for s in styles), "no DOCX with localized heading styles")
    c.check(any(kind == "table" for doc in DOCUMENTS if isinstance(doc.spec, DocxSpec)
                for kind, _ in doc.spec.blocks), "no DOCX with a table")
    for doc in DOCUMENTS:
        if doc.supersedes:
            old = BY_NAME.get(doc.supersedes)
            if c.check(old is not None, f"{doc.name} supersedes a missing {doc.supersedes}"):
                number = re.match(r"[A-Z]+-[A-Z]+-\d+", doc.name)
                c.check(bool(number) and old.name.startswith(number.group())  # type: ignore
                        and number.group() in doc.title and number.group() in old.title,
                        f"{doc.name}: revisions must share the document number in name and title")
    c.check(any(d.supersedes and d.supersedes.startswith("SOP-PR-012") for d in DOCUMENTS),
            "SOP-PR-012 has no newer revision")
    holders = [doc.name for doc in DOCUMENTS if INJECTION_TEXT in doc.text]
    c.check(len(holders) == 1, f"the injected instruction is in {holders} (want one document)")
    reasons = {bad.reason for bad in BAD_FILES}
    for reason in ("encrypted", "empty", "no_text", "unknown_type"):
        c.check(reason in reasons, f"no bad file for reason {reason}")
    names = [d.name for d in DOCUMENTS] + [b.name for b in BAD_FILES]
    c.check(len(names) == len(set(names)), "duplicate file names")
    for doc in DOCUMENTS:
        if doc.encoding:
            try:
                document_bytes(doc)
                c.check(True, "")
            except UnicodeError as exc:
                c.check(False, f"{doc.name}: cannot be written in {doc.encoding}: {exc}")
        c.check("\ufffd" not in doc.text, f"{doc.name}: replacement character in the source")


# -- the questions ----------------------------------------------------------------------------

def check_question(c: Checker, q: dict) -> None:
    qid = q.get("id", "?")
    c.check(q.get("lang") in LANGS and str(qid).startswith(f"{q.get('lang')}-"),
            f"{qid}: lang {q.get('lang')!r} does not match the id")
    c.check(isinstance(q.get("question"), str) and q["question"].strip() == q["question"]
            and q["question"] != "", f"{qid}: empty or padded question")
    kind, answerable = q.get("kind"), q.get("answerable")
    if answerable:
        c.check(kind in ANSWERABLE_KINDS, f"{qid}: kind {kind!r} is not an answerable kind")
        check_answerable(c, q)
    else:
        c.check(answerable is False and kind in UNANSWERABLE_KINDS,
                f"{qid}: unanswerable with kind {kind!r}")
        c.check(q.get("file") is None and q.get("fact") is None and q.get("page") is None,
                f"{qid}: an unanswerable question has no file, fact or page")
        if kind == "unanswerable_indomain":
            check_absent(c, q)


def check_answerable(c: Checker, q: dict) -> None:
    qid, fact, name, page = q["id"], q.get("fact"), q.get("file"), q.get("page")
    doc = BY_NAME.get(name)  # type: ignore[arg-type]
    if not c.check(doc is not None, f"{qid}: unknown file {name!r}"):
        return
    assert doc is not None
    c.check(name not in SUPERSEDED, f"{qid}: expects the superseded {name}")
    if not c.check(isinstance(fact, str) and fact != "" and fact == fact.strip()
                   and "  " not in fact, f"{qid}: bad fact {fact!r}"):
        return
    c.check(unicodedata.normalize("NFKC", fact) == fact, f"{qid}: fact {fact!r} changes under NFKC")
    c.check(any(fact in unit for unit in doc.units),
            f"{qid}: fact {fact!r} is not within one text unit of {name}")
    if doc.pages is None:
        c.check(page is None, f"{qid}: page {page} for {name}, which has no pages")
    elif page is not None:
        c.check(isinstance(page, int) and 1 <= page <= len(doc.pages)
                and any(fact in line for line in doc.pages[page - 1]),
                f"{qid}: fact {fact!r} is not on page {page} of {name}")
    else:
        on = [n for n, lines in enumerate(doc.pages, 1) if any(fact in ln for ln in lines)]
        c.check(len(on) > 1, f"{qid}: fact only on page {on} of {name}, but page is null")
    kind = q["kind"]
    if kind == "page":
        c.check(doc.pages is not None and page is not None, f"{qid}: page question without page")
        if doc.pages is not None and page is not None:
            others = [n for n in range(1, len(doc.pages) + 1)
                      if n != page and fact in doc.page_text(n)]
            c.check(not others, f"{qid}: page fact {fact!r} also on pages {others}")
        elsewhere = [d.name for d in DOCUMENTS if d.name != name and fact in d.text]
        c.check(not elsewhere, f"{qid}: page fact {fact!r} also in {elsewhere}")
    elif kind == "revised":
        old = BY_NAME.get(doc.supersedes or "")
        c.check(old is not None, f"{qid}: {name} is not a newer revision")
        if old is not None:
            c.check(fact not in old.text, f"{qid}: revised fact {fact!r} also in {old.name}")
    elif kind == "code":
        codes = CODE.findall(q["question"])
        if c.check(len(codes) == 1, f"{qid}: code question with codes {codes}"):
            code = codes[0]
            c.check(any(code_in(code, r) and fact in r for r in records(doc)),
                    f"{qid}: {code} and fact {fact!r} share no record in {name}")
            others = [d.name for d in CURRENT if d.name != name and code_in(code, d.text)]
            c.check(not others, f"{qid}: {code} is also in {others}")
    elif kind == "keyword":
        others = [d.name for d in CURRENT if d.name != name and fact in d.text]
        c.check(not others, f"{qid}: keyword {fact!r} is also in {others}")
        c.check(fact in q["question"], f"{qid}: keyword question does not contain its fact")
    if kind not in ("crosslang",) and doc.lang != "en+zh":
        c.check(doc.lang == q["lang"], f"{qid}: {q['lang']} question on a {doc.lang} document "
                "(mark it crosslang)")


def check_absent(c: Checker, q: dict) -> None:
    qid = q["id"]
    absent = list(q.get("absent") or [])
    c.check(bool(absent), f"{qid}: in-domain unanswerable question without an `absent` list")
    terms = set(absent) | set(CODE.findall(q["question"]))
    for term in sorted(terms):
        for doc in DOCUMENTS:
            found = code_in(term, doc.text) if CODE.fullmatch(term) else term in doc.text
            c.check(not found, f"{qid}: {term!r} occurs in {doc.name}")


def check_counts(c: Checker, questions: list[dict]) -> dict[str, Counter]:
    ids = [q.get("id") for q in questions]
    c.check(len(ids) == len(set(ids)), "duplicate question ids")
    texts = [q.get("question") for q in questions]
    dupes = [t for t, n in Counter(texts).items() if n > 1]
    c.check(not dupes, f"duplicate questions: {dupes}")
    counted = [q for q in questions if q.get("answerable") and q.get("kind") != "crosslang"]
    unanswerable = [q for q in questions if not q.get("answerable")]
    per_lang = Counter(q["lang"] for q in counted)
    c.check(len(counted) >= GOAL_ANSWERABLE,
            f"{len(counted)} answerable questions (need >= {GOAL_ANSWERABLE})")
    for lang in LANGS:
        c.check(per_lang[lang] >= GOAL_PER_LANGUAGE,
                f"{per_lang[lang]} answerable {lang} questions (need >= {GOAL_PER_LANGUAGE})")
    c.check(len(unanswerable) >= GOAL_UNANSWERABLE,
            f"{len(unanswerable)} unanswerable questions (need >= {GOAL_UNANSWERABLE})")
    indomain = sum(q.get("kind") == "unanswerable_indomain" for q in unanswerable)
    c.check(indomain * 3 >= len(unanswerable) - 3,
            f"{indomain} of {len(unanswerable)} unanswerable questions in-domain (want a third)")
    for kind in ("paraphrase", "keyword", "code", "page", "revised"):
        for lang in LANGS:
            c.check(any(q["kind"] == kind and q["lang"] == lang for q in counted),
                    f"no {kind} question in {lang}")
    short = [q for q in counted if q["kind"] == "keyword" and q["lang"] in ("zh", "ja")
             and len(q["question"]) <= 2]
    c.check(sum(len(q["question"]) == 1 for q in short) >= 2, "fewer than 2 one-character keywords")
    kinds: dict[str, Counter] = {}
    for q in questions:
        kinds.setdefault(q["lang"], Counter())[q["kind"]] += 1
    return kinds


# -- the written files ------------------------------------------------------------------------

def extracted_text(doc: Doc, data: bytes) -> list[str]:
    """Text per page (PDF) or one whole text, as the parsing libraries give it."""
    if doc.format == "pdf":
        import pypdfium2 as pdfium

        pdf = pdfium.PdfDocument(data)
        try:
            return [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
        finally:
            pdf.close()
    if doc.format == "docx":
        import docx

        document = docx.Document(io.BytesIO(data))
        parts = [p.text for p in document.paragraphs]
        parts += [cell.text for table in document.tables for row in table.rows
                  for cell in row.cells]
        return ["\n".join(parts)]
    if doc.format == "xlsx":
        import openpyxl

        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
        return ["\n".join(str(v) for sheet in book for row in sheet.iter_rows(values_only=True)
                          for v in row if v is not None)]
    return [data.decode("utf-16" if doc.encoding == "utf-16" else str(doc.encoding))]


def check_files(c: Checker, questions: list[dict]) -> None:
    with tempfile.TemporaryDirectory(prefix="gemba-corpus-") as tmp:
        from bench.knowledge_corpus.make import write_corpus

        first = {p.name: p.read_bytes() for p in write_corpus(Path(tmp) / "a")}
        second = {p.name: p.read_bytes() for p in write_corpus(Path(tmp) / "b")}
    for name, data in first.items():
        if name != "Supplier_Audit_2024_encrypted.pdf":
            c.check(second[name] == data, f"{name}: not byte-identical between two runs")
    for bad in BAD_FILES:
        data = first[bad.name]
        if bad.reason == "empty":
            c.check(data == b"", f"{bad.name}: not empty")
        elif bad.reason == "encrypted":
            from pypdf import PdfReader

            c.check(PdfReader(io.BytesIO(data)).is_encrypted, f"{bad.name}: not encrypted")
        elif bad.reason == "no_text":
            doc = Doc(bad.name, "pdf", "en", None, "", "", ())
            c.check(all(not t.strip() for t in extracted_text(doc, data)),
                    f"{bad.name}: has a text layer")
        c.check(bad_file_bytes(bad) is not None, f"{bad.name}: not written")
    extracted: dict[str, list[str]] = {}
    for doc in DOCUMENTS:
        data = first[doc.name]
        if doc.encoding == "utf-16":
            c.check(data[:2] in (b"\xff\xfe", b"\xfe\xff"), f"{doc.name}: no UTF-16 BOM")
        if doc.encoding == "shift_jis":
            c.check(data.decode("cp932") == data.decode("shift_jis"),
                    f"{doc.name}: decodes differently under cp932 and shift_jis")
        if doc.encoding == "gbk":
            c.check(data.decode("gb18030") == data.decode("gbk"),
                    f"{doc.name}: decodes differently under gb18030 and gbk")
        if doc.encoding == "euc_jp":
            c.check(data.decode("euc_jis_2004") == data.decode("euc_jp"),
                    f"{doc.name}: decodes differently under euc_jis_2004 and euc_jp")
        if doc.encoding and doc.format != "csv":
            c.check(extracted_text(doc, data)[0] == doc.spec,
                    f"{doc.name}: does not decode back to its source text")
        extracted[doc.name] = [collapse(t) for t in extracted_text(doc, data)]
        if doc.pages is not None:
            c.check(len(extracted[doc.name]) == len(doc.pages),
                    f"{doc.name}: {len(extracted[doc.name])} pages extracted, "
                    f"{len(doc.pages)} written")
            for n, lines in enumerate(doc.pages, 1):
                got = extracted[doc.name][n - 1] if n <= len(extracted[doc.name]) else ""
                missing = [ln for ln in lines if collapse(ln) not in got]
                c.check(not missing, f"{doc.name} page {n}: lines not extracted: {missing[:2]}")
    for q in questions:
        if not q.get("answerable") or q.get("file") not in extracted:
            continue
        pages = extracted[q["file"]]
        where = [pages[q["page"] - 1]] if q.get("page") else pages
        c.check(any(q["fact"] in text for text in where),
                f"{q['id']}: fact {q['fact']!r} not in the extracted text of {q['file']}")


# -- report -----------------------------------------------------------------------------------

def summary_lines(questions: list[dict], kinds: dict[str, Counter]) -> Iterable[str]:
    all_kinds = [*ANSWERABLE_KINDS, *UNANSWERABLE_KINDS]
    yield f"{'lang':5}" + "".join(f"{k.replace('unanswerable_', 'un_'):>12}" for k in all_kinds) \
        + f"{'answerable':>12}"
    for lang in LANGS:
        row = kinds.get(lang, Counter())
        counted = sum(row[k] for k in ANSWERABLE_KINDS if k != "crosslang")
        yield f"{lang:5}" + "".join(f"{row[k]:>12}" for k in all_kinds) + f"{counted:>12}"
    counted = sum(1 for q in questions if q["answerable"] and q["kind"] != "crosslang")
    unanswerable = sum(1 for q in questions if not q["answerable"])
    yield (f"{len(questions)} questions: {counted} answerable (crosslang not counted), "
           f"{unanswerable} unanswerable; {len(DOCUMENTS)} documents, {len(BAD_FILES)} bad files")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-files", action="store_true",
                        help="only the source text; do not write and parse the files")
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    args = parser.parse_args(argv)
    c = Checker()
    questions = load_questions(args.questions)
    check_corpus(c)
    for q in questions:
        check_question(c, q)
    kinds = check_counts(c, questions)
    if not args.no_files:
        check_files(c, questions)
    for line in summary_lines(questions, kinds):
        print(line)
    for failure in c.failures:
        print(f"FAIL {failure}")
    print(f"{c.passed} checks passed, {len(c.failures)} failed"
          + (" (files not checked)" if args.no_files else ""))
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
