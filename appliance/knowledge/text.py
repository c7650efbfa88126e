"""Text as search sees it: CJK characters split apart, codes kept whole, the question's language.

SQLite's unicode61 tokenizer treats a run of Chinese or Japanese characters as one token, so
"泵" is never found inside "离心泵". Each Han, kana or Hangul character becomes a token of its
own here (a search column beside the verbatim text), and a query of two or more such
characters is searched as a phrase of adjacent characters.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_CJK = (
    "\u2e80-\u2fdf"  # radicals
    "\u3005\u3007"  # 々 〇
    "\u3040-\u30ff"  # hiragana, katakana
    "\u31f0-\u31ff"  # katakana extensions
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # Han
    "\uac00-\ud7af"  # Hangul
)
_CJK_CHAR = re.compile(f"[{_CJK}]")
_KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff]")
_HIRAGANA = re.compile("[\u3040-\u309f]")
_KATAKANA = re.compile("[\u30a0-\u30ff\u31f0-\u31ff]")
_SCRIPT_RUN = re.compile("[\u30a0-\u30ff\u31f0-\u31ff]+|[\u3040-\u309f]+|"
                         "[^\u3040-\u30ff\u31f0-\u31ff]+")
_WORD = re.compile(f"[{_CJK}]+|[^\\W_{_CJK}]+", re.UNICODE)
_TOKEN = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+", re.UNICODE)
_SUFFIXES = (("ies", "y"), ("sses", "ss"), ("ches", "ch"), ("shes", "sh"), ("xes", "x"),
             ("ing", ""), ("ed", ""), ("s", ""))

CODE = re.compile(r"(?<![A-Za-z0-9-])[A-Za-z]{1,6}(?:-[A-Za-z]{1,6})*-\d{1,6}[A-Za-z]?(?![A-Za-z0-9])")
"""Alarm, fault, part and document codes: E-104, CP-2, P-22, SOP-PR-012."""
IDENTIFIER = re.compile(
    r"(?<![A-Za-z0-9])(?:line|press|pump|unit|machine|station|boiler|tank|compressor|conveyor|"
    r"no\.?|number|#)\s*\d+(?![\d.])"
    r"|(?<![\d.])\d+\s*(?:号機|号机|号线|号線|号|番|#)", re.IGNORECASE)
"""A number that names one of several things: line 7, pump #3, 5号, 3号機. The passage must
name the same thing, not merely hold the number somewhere."""
NUMBER = re.compile(r"(?<![A-Za-z0-9.])\d+(?:[.,]\d+)?(?![\d])")

# Words that carry no meaning of their own in a question (never decisive for support).
_STOP_EN = frozenset("""
a about above after again all am an and any are as at be been before being below between both
but by can could did do does doing done during each few for from further get gets had has have
having he her here how i if in into is it its itself just me more most my no nor not now of off
on once only or other our out over own please same she should so some such tell than that the
their them then there these they this those through to too under until up us very was we were
what when where which while who whom why will with would you your yours explain describe mean
means happen happens need needs shall may might must list show give know one
""".split())
_STOP_CJK = frozenset("""
什么 怎么 怎样 如何 哪些 哪个 多少 是否 为什么 请问 一下 应该 需要 可以 进行 时候 的时 这个 那个 有没
是什 么意 意思 怎么 办 吗 呢 的 了 是 在 和 与 及 或 把 被 要 会 该 请 么 个 哪 啥
何 方法 教え ください 場合 とき 時 どう どの どれ なに なぜ 必要 する です ます
""".split())


# Characters that glue a Chinese sentence together; a pair with one of them is rarely a word.
_FUNCTION_CHARS = frozenset("的了是吗呢么在和与及或把被要会该请个哪啥怎什如何"
                            "到多久能可几应将着给让对从向于以其这那此之就都也还又很")


def nfkc(text: str) -> str:
    """Full-width letters and digits as plain ones (Ｅ－１０４ → E-104), for matching only."""
    return unicodedata.normalize("NFKC", text)


def search_form(text: str) -> str:
    """The search column: tokens separated by one space. NFKC and lower case; each CJK
    character a token of its own; other words stemmed (pumps, pumping → pump)."""
    return " ".join(stem(token) for token in _TOKEN.findall(nfkc(text).lower()))


def stem(word: str) -> str:
    """A light English stemmer, applied alike to passages and questions: plural and verb
    endings and a final e go, so "isolate", "isolated" and "isolating" meet."""
    if len(word) <= 3 or not word.isascii() or not word.isalpha():
        return word
    for suffix, keep in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 \
                and not (suffix == "s" and word.endswith(("ss", "us", "is"))):
            word = word[:len(word) - len(suffix)] + keep
            break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def names(text: str, identifier: str) -> bool:
    """Whether `text` names `identifier` (line 7, 5号) as written, spaces aside."""
    parts = re.findall(r"\d+|[^\W\d_]+|[^\w\s]", identifier.lower())
    pattern = r"(?<![a-z0-9])" + r"\s*".join(map(re.escape, parts)) + r"(?![0-9])"
    return re.search(pattern, nfkc(text).lower()) is not None


def is_cjk(char: str) -> bool:
    return bool(_CJK_CHAR.match(char))


def codes_in(text: str) -> set[str]:
    return {m.group(0).upper() for m in CODE.finditer(nfkc(text))}


def numbers_in(text: str) -> set[str]:
    return {m.group(0).replace(",", ".") for m in NUMBER.finditer(nfkc(text))}


def language_of(text: str) -> str:
    """en, zh or ja: kana means Japanese, Han without kana Chinese, anything else English."""
    if _KANA.search(text):
        return "ja"
    if _CJK_CHAR.search(text):
        return "zh"
    return "en"


@dataclass(frozen=True)
class Term:
    """One thing a question asks for, as an FTS5 phrase over the search column."""

    phrase: str
    """Tokens separated by spaces, e.g. "pump", "泵 压" (two adjacent characters)."""
    specific: bool = False
    """A number or code: a passage that lacks it cannot support the answer."""
    written: str = ""
    """For a number or code, as written in the question (2.5, E-104): checked against the
    passage's words as written, not its tokens."""


def query_terms(question: str) -> list[Term]:
    """The question's content terms, stop words left out, each at most once, in order."""
    text = nfkc(question).lower()
    terms: list[Term] = []
    for code in CODE.finditer(text):
        terms.append(Term(search_form(code.group(0)), True, code.group(0).upper()))
    text = CODE.sub(" ", text)
    for named in IDENTIFIER.finditer(text):
        terms.append(Term(search_form(named.group(0)), True, " ".join(named.group(0).split())))
    text = IDENTIFIER.sub(" ", text)
    for number in NUMBER.finditer(text):
        terms.append(Term(search_form(number.group(0)), True, number.group(0).replace(",", ".")))
    text = NUMBER.sub(" ", text)
    for word in _WORD.findall(text):
        if _CJK_CHAR.match(word):
            terms.extend(_cjk_terms(word))
        elif word not in _STOP_EN and (len(word) > 1 or word.isdigit()):
            terms.append(Term(stem(word)))
    seen: set[str] = set()
    unique = []
    for term in terms:
        if term.phrase and term.phrase not in seen:
            seen.add(term.phrase)
            unique.append(term)
    return unique


def _cjk_terms(run: str) -> list[Term]:
    """A run of Chinese or Japanese as terms, script by script. Hiragana is left out: it
    writes particles and endings (を, には, ですか), while Japanese content words are written in
    kanji and katakana. A katakana word is one term (ボイラー, フィルタ): its pairs (ラー, ー)
    are in every loanword. Han characters go as overlapping pairs (a lone one alone), since
    nothing tells where a Chinese word ends."""
    terms: list[Term] = []
    for part in _SCRIPT_RUN.findall(run):
        if _HIRAGANA.match(part):
            continue
        if _KATAKANA.match(part):
            if len(part) > 1:
                terms.append(Term(" ".join(part)))
            continue
        terms.extend(_han_terms(part))
    return terms


def _han_terms(run: str) -> list[Term]:
    if len(run) == 1:
        return [] if run in _STOP_CJK else [Term(run)]  # a Han run: no hiragana in it
    pairs = []
    for i in range(len(run) - 1):
        pair = run[i:i + 2]
        if _HIRAGANA.search(pair) or pair in _STOP_CJK:
            continue
        if pair[0] in _FUNCTION_CHARS or pair[1] in _FUNCTION_CHARS:
            continue
        pairs.append(Term(f"{pair[0]} {pair[1]}"))
    return pairs


def fts_phrase(term: Term) -> str:
    """An FTS5 string literal: whatever the operator typed is searched as text, never syntax."""
    return '"' + term.phrase.replace('"', '""') + '"'
