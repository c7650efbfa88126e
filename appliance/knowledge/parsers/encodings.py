"""Which encoding a plant's text file is in: a strict-decode cascade ordered by the locale.

The cascade, first match wins:

1. A byte-order mark: UTF-8 BOM -> ``utf-8-sig``, UTF-16 LE/BE BOM -> ``utf-16``.
2. Strict ``utf-8`` (pure ASCII lands here too).
3. The locale's legacy encodings: zh -> gb18030, cp932, euc_jp, cp1252;
   ja -> cp932, euc_jp, gb18030, cp1252; en (and any other) -> cp1252, gb18030, cp932, euc_jp.

A candidate must decode without a single error, and then pass two checks:

- *Hard* (the bytes are not text in this encoding; the candidate is dropped): control
  characters other than tab, CR, LF and form feed; for the legacy encodings also private-use or
  unassigned code points. UTF-8 and BOM decodings, valid by construction, tolerate up to 10 %
  control characters (stray ones are removed later; UTF-16 without BOM is about 50 % NUL).
- *Soft* (the decoding is implausible; the candidate is kept only as a last resort): gb18030 text
  whose characters are mostly outside GB2312 (Shift_JIS bytes read as GBK) or that is rich in
  kana (EUC-JP read as GBK); cp932/euc_jp text with half-width katakana in sequences no
  Japanese word has, such as a voicing mark after a vowel or a lone half-width kana glued to a
  kanji (GBK read as Shift_JIS); cp1252 text that is mostly non-ASCII (CJK bytes read as Latin-1
  mojibake).

If no candidate passes both, the first one that only failed a soft check is returned; if none
decoded at all the file is refused as undecodable.

What this guarantees (each case is a test in tests/test_knowledge_parsers.py, on alarm tables of
a header and three rows): UTF-8 with or without BOM and UTF-16 with a BOM (LE or BE) decode right
under every locale; so do GBK/GB18030, Shift_JIS (cp932) and EUC-JP tables, and Windows-1252
text with accented letters. Half-width katakana Shift_JIS decodes right under ja and zh. Binary
data and UTF-16 without a BOM are refused as undecodable instead of becoming garbage.

What it cannot guarantee: a legacy text of a word or one short line can be valid and plausible in
several encodings (GBK and EUC-JP share their byte ranges) and then takes the locale's first
plausible reading, e.g. a one-line GBK alarm under ja may come out as EUC-JP kanji; EUC-JP text
written in half-width katakana decodes as cp932 kanji under every locale.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from appliance.knowledge.parsers.refusals import undecodable

_LEGACY_BY_LOCALE = {
    "zh": ("gb18030", "cp932", "euc_jp", "cp1252"),
    "ja": ("cp932", "euc_jp", "gb18030", "cp1252"),
    "en": ("cp1252", "gb18030", "cp932", "euc_jp"),
}
_UNICODE = {"utf-8", "utf-8-sig", "utf-16"}
_ALLOWED_CONTROLS = frozenset("\t\r\n\f")
_HALFWIDTH_KANA = re.compile(r"[\uff66-\uff9f]+")
_KANA = re.compile(r"[\u3041-\u3096\u30a1-\u30fa]")
# Kana spelling: which half-width katakana a voicing mark (ﾞ ﾟ) or a small kana may follow.
_VOICEABLE = frozenset("ｳｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾊﾋﾌﾍﾎ")
_SEMI_VOICEABLE = frozenset("ﾊﾋﾌﾍﾎ")
_SMALL_VOWEL_HOSTS = frozenset("ｲｳｸｼｽﾁﾂﾃﾄﾆﾋﾌﾐﾘｷｼﾞﾟ")
_SMALL_Y_HOSTS = frozenset("ｷｼﾁﾆﾋﾐﾘﾃﾌｲﾞﾟ")


def locale_language(locale: str) -> str:
    """"zh", "ja" or "en" from a locale such as "zh-CN", "ja_JP" or "en"."""
    language = locale.lower().replace("_", "-").split("-")[0]
    return language if language in _LEGACY_BY_LOCALE else "en"


def candidate_encodings(data: bytes, locale: str) -> tuple[str, ...]:
    """The encodings `decode_text` tries for these bytes under this locale, in order."""
    if data.startswith(b"\xef\xbb\xbf"):
        first: tuple[str, ...] = ("utf-8-sig",)
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        first = ("utf-16",)
    else:
        first = ()
    return (*first, "utf-8", *_LEGACY_BY_LOCALE[locale_language(locale)])


def decode_text(data: bytes, locale: str, *, name: str = "this file") -> tuple[str, str]:
    """(text, encoding name) for a text file's bytes; raises ImportRefused("undecodable").

    The encoding name is the one to show engineers: utf-8, utf-8-sig, utf-16, gb18030, cp932,
    euc_jp or cp1252. `name` is the file name used in the refusal message.
    """
    tried = candidate_encodings(data, locale)
    last_resort: tuple[str, str] | None = None
    for encoding in tried:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        counts = Counter(text)
        if _is_binary(counts, len(text), encoding):
            continue
        if _is_implausible(text, counts, encoding):
            last_resort = last_resort or (text, encoding)
            continue
        return text, encoding
    if last_resort is not None:
        return last_resort
    raise undecodable(name, tried)


def _is_binary(counts: Counter[str], length: int, encoding: str) -> bool:
    controls = sum(n for ch, n in counts.items()
                   if unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS)
    if encoding in _UNICODE:
        return controls > length / 10
    return controls > 0 or any(unicodedata.category(ch) in ("Co", "Cn") for ch in counts)


def _is_implausible(text: str, counts: Counter[str], encoding: str) -> bool:
    non_ascii = {ch: n for ch, n in counts.items() if ord(ch) > 0x7F}
    total = sum(non_ascii.values())
    if encoding == "gb18030":
        return _looks_like_misread_japanese(non_ascii, total)
    if encoding in ("cp932", "euc_jp"):
        return _has_misread_halfwidth_kana(text, non_ascii, total)
    if encoding == "cp1252":
        visible = sum(n for ch, n in counts.items() if not ch.isspace())
        return total > visible / 4
    return False


def _looks_like_misread_japanese(non_ascii: dict[str, int], total: int) -> bool:
    # Simplified Chinese lives in GB2312; Shift_JIS read as GBK lands in the GBK extensions,
    # and EUC-JP read as GBK keeps its kana (GB2312 has them in the same rows as JIS).
    if not total:
        return False
    outside_gb2312 = sum(n for ch, n in non_ascii.items() if not _in_gb2312(ch))
    kana = sum(n for ch, n in non_ascii.items() if _KANA.match(ch))
    return outside_gb2312 > total * 0.3 or kana > total * 0.1


def _in_gb2312(ch: str) -> bool:
    try:
        ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True


def _has_misread_halfwidth_kana(text: str, non_ascii: dict[str, int], total: int) -> bool:
    # GBK bytes read as Shift_JIS give half-width katakana in sequences no Japanese word has;
    # real half-width text (PLC comments, old alarm lists) follows kana spelling.
    halfwidth = sum(n for ch, n in non_ascii.items() if "\uff61" <= ch <= "\uff9f")
    if not halfwidth:
        return False
    impossible = sum(_impossible_kana_pairs(text, run) for run in _HALFWIDTH_KANA.finditer(text))
    return impossible > 0 and impossible >= halfwidth / 20


def _impossible_kana_pairs(text: str, run: re.Match[str]) -> int:
    kana = run.group()
    if len(kana) == 1:
        # A lone half-width kana glued to a full-width character: one GBK byte pair split.
        around = text[max(run.start() - 1, 0):run.start()] + text[run.end():run.end() + 1]
        return int(any(ord(ch) > 0x7F for ch in around))
    impossible = 0
    for index, ch in enumerate(kana):
        before = kana[index - 1] if index else ""
        if ch == "ﾞ" and before not in _VOICEABLE:
            impossible += 1
        elif ch == "ﾟ" and before not in _SEMI_VOICEABLE:
            impossible += 1
        elif ch in "ｧｨｩｪｫ" and before not in _SMALL_VOWEL_HOSTS:
            impossible += 1
        elif ch in "ｬｭｮ" and before not in _SMALL_Y_HOSTS:
            impossible += 1
        elif ch in "ｯｰ" and not before:
            impossible += 1
    return impossible
