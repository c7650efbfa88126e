"""Plant files in, blocks out: every format, encoding and refusal on real files written to disk.

The files come from tests/knowledge_files.py (reportlab PDFs with CJK fonts, pypdf encryption,
python-docx, openpyxl, Python codecs); nothing is mocked.
"""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pytest

from appliance.knowledge.document import Block, ImportRefused, ParsedDocument
from appliance.knowledge.parsers import parse
from tests.knowledge_files import (
    DE_ALARM_TEXT,
    EN_ALARM_HEADER,
    EN_ALARM_ROWS,
    JA_ALARM_HEADER,
    JA_ALARM_ROWS,
    JA_HALFWIDTH_ALARM_TEXT,
    ZH_ALARM_HEADER,
    ZH_ALARM_ROWS,
    DocxHeading,
    DocxTable,
    SpecialPage,
    alarm_table_text,
    write_csv,
    write_docx,
    write_encoded_text,
    write_encrypted_pdf,
    write_image_only_pdf,
    write_text_pdf,
    write_xlsx,
)

ZH_TABLE = alarm_table_text(ZH_ALARM_HEADER, ZH_ALARM_ROWS)
JA_TABLE = alarm_table_text(JA_ALARM_HEADER, JA_ALARM_ROWS)


def parse_file(path: Path, locale: str = "en", **options: int) -> ParsedDocument:
    return parse(path.name, path.read_bytes(), locale, **options)


def refusal(path: Path, locale: str = "en", **options: int) -> ImportRefused:
    with pytest.raises(ImportRefused) as caught:
        parse_file(path, locale, **options)
    return caught.value


def all_text(document: ParsedDocument) -> str:
    return "\n".join(block.text for block in document.blocks)


def block_with(document: ParsedDocument, needle: str) -> Block:
    matches = [block for block in document.blocks if needle in block.text]
    assert len(matches) == 1, f"{needle!r} in {len(matches)} blocks: {document.blocks}"
    return matches[0]


# --- Text encodings ------------------------------------------------------------------------

ENCODED_TEXTS = [
    # (what, text, codec that writes it, plant locale, encoding shown to the engineer)
    *[("zh table, UTF-8", ZH_TABLE, "utf-8", locale, "utf-8") for locale in ("zh", "ja", "en")],
    ("ja table, UTF-8 with BOM", JA_TABLE, "utf-8-sig", "en", "utf-8-sig"),
    ("ja table, UTF-16 LE with BOM", JA_TABLE, "utf-16", "zh", "utf-16"),
    ("zh table, UTF-16 BE with BOM", ZH_TABLE, "utf-16-be-bom", "ja", "utf-16"),
    *[("zh table, GBK", ZH_TABLE, "gbk", locale, "gb18030") for locale in ("zh", "ja", "en")],
    ("zh table, GB18030", ZH_TABLE, "gb18030", "zh", "gb18030"),
    *[("ja table, Shift_JIS", JA_TABLE, "shift_jis", locale, "cp932")
      for locale in ("ja", "zh", "en")],
    *[("ja table, EUC-JP", JA_TABLE, "euc_jp", locale, "euc_jp")
      for locale in ("ja", "zh", "en")],
    *[("ja half-width katakana, Shift_JIS", JA_HALFWIDTH_ALARM_TEXT, "shift_jis", locale, "cp932")
      for locale in ("ja", "zh")],
    ("ja half-width kana next to kanji, cp932", "E-104 ﾎﾟﾝﾌﾟ停止\n", "cp932", "zh", "cp932"),
    # Shift_JIS would read these GBK bytes as half-width katakana: "ﾒｺﾎｻｵﾍ｣ｬﾍ｣ｱﾃ".
    ("zh alarm with a full-width comma, GBK", "液位低，停泵\n", "gbk", "ja", "gb18030"),
    *[("de table, Windows-1252", DE_ALARM_TEXT, "cp1252", locale, "cp1252")
      for locale in ("en", "zh", "ja")],
]


@pytest.mark.parametrize(("text", "codec", "locale", "shown"),
                         [case[1:] for case in ENCODED_TEXTS],
                         ids=[f"{case[0]} under {case[3]}" for case in ENCODED_TEXTS])
def test_text_file_reads_back_exactly_in_its_encoding(tmp_path: Path, text: str, codec: str,
                                                      locale: str, shown: str) -> None:
    path = write_encoded_text(tmp_path / "alarms.txt", text, codec)
    document = parse_file(path, locale)
    assert document.encoding == shown
    assert all_text(document) == text.strip()


def test_gbk_csv_under_zh_becomes_records_with_chinese_headers(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "报警表.csv", ZH_ALARM_HEADER, ZH_ALARM_ROWS, encoding="gbk")
    document = parse_file(path, "zh")
    assert document.format == "csv"
    assert document.encoding == "gb18030"
    assert document.title == "报警表"
    assert document.blocks[0] == Block(
        "代码: E-104 | 报警: 吸入压力低 | 处理措施: 检查进口阀门是否打开，清洗过滤器",
        (), None, "record")
    assert len(document.blocks) == len(ZH_ALARM_ROWS)
    assert all(block.kind == "record" for block in document.blocks)


def test_shift_jis_csv_under_zh_keeps_japanese_headers(tmp_path: Path) -> None:
    # A Japanese vendor's alarm list imported at a Chinese plant: not read as GBK mojibake.
    path = write_csv(tmp_path / "alarms.csv", JA_ALARM_HEADER, JA_ALARM_ROWS,
                     encoding="shift_jis")
    document = parse_file(path, "zh")
    assert document.encoding == "cp932"
    assert document.blocks[1].text == ("コード: E-221 | 警報: モータ温度上昇 | "
                                       "処置: ポンプを停止し冷却ファンを点検する")


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_csv_delimiter_is_sniffed(tmp_path: Path, delimiter: str) -> None:
    path = write_csv(tmp_path / "alarms.csv", EN_ALARM_HEADER, EN_ALARM_ROWS,
                     delimiter=delimiter)
    assert parse_file(path).blocks[2].text == (
        "Code: P-22 | Alarm: Discharge pressure fluctuates | Action: Vent the pump casing and "
        "restart")


def test_windows_1252_csv_with_semicolons(tmp_path: Path) -> None:
    path = write_encoded_text(tmp_path / "alarme.csv", DE_ALARM_TEXT, "cp1252")
    document = parse_file(path)
    assert document.encoding == "cp1252"
    assert document.blocks[0].text == (
        "Code: E-104 | Alarm: Saugdruck zu niedrig | Maßnahme: Ventil prüfen und Filter reinigen")


def test_csv_header_is_first_non_empty_row_and_empty_rows_and_cells_are_skipped(
        tmp_path: Path) -> None:
    text = "\n,,\nCode,Alarm,Action\nE-104,Low suction pressure,\n,,\nE-221,,Stop the pump\n"
    path = write_encoded_text(tmp_path / "alarms.csv", text, "utf-8")
    assert [block.text for block in parse_file(path).blocks] == [
        "Code: E-104 | Alarm: Low suction pressure", "Code: E-221 | Action: Stop the pump"]


def test_binary_garbage_named_txt_is_undecodable(tmp_path: Path) -> None:
    path = tmp_path / "dump.txt"
    path.write_bytes(random.Random(7).randbytes(4096))
    refused = refusal(path, "zh")
    assert refused.reason == "undecodable"
    assert refused.message.startswith("dump.txt ")
    assert "gb18030, cp932, euc_jp" in refused.message
    assert "UTF-8" in refused.hint


def test_utf16_without_bom_is_undecodable_not_garbage(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_bytes("Pump P-22 tripped on low suction pressure\n".encode("utf-16-le"))
    assert refusal(path).reason == "undecodable"


# --- Markdown and plain text ---------------------------------------------------------------


def test_markdown_headings_build_section_paths_and_the_title(tmp_path: Path) -> None:
    text = ("Intro before any heading.\n\n# Pump P-22 SOP\n\n## 5 Alarms ##\n\n"
            "### 5.2 Low suction pressure\nCheck the strainer.\nThen restart.\n\n"
            "```\n# not a heading: a shell comment\n```\n\n## 6 Maintenance\nGrease monthly.\n")
    document = parse_file(write_encoded_text(tmp_path / "sop.md", text, "utf-8"))
    assert document.format == "markdown"
    assert document.title == "Pump P-22 SOP"
    assert block_with(document, "Intro").section == ()
    assert block_with(document, "Check the strainer.") == Block(
        "Check the strainer.\nThen restart.",
        ("Pump P-22 SOP", "5 Alarms", "5.2 Low suction pressure"))
    assert block_with(document, "shell comment").section[-1] == "5.2 Low suction pressure"
    assert block_with(document, "Grease").section == ("Pump P-22 SOP", "6 Maintenance")


def test_markdown_without_level_one_heading_is_titled_by_file_stem(tmp_path: Path) -> None:
    path = write_encoded_text(tmp_path / "SOP-7.markdown", "## Start\nOpen valve V-12.\n",
                              "utf-8")
    assert parse_file(path).title == "SOP-7"


def test_plain_text_numbered_headings_become_sections(tmp_path: Path) -> None:
    text = ("Pump P-22 operating notes\n\n1 Scope\nThis note covers pump P-22.\n\n"
            "2 Alarms\n\n2.1 Low suction pressure\nCheck the strainer.\n\n"
            "第3章 保守\n轴承每月加油。\n\n３．点検\n毎日確認する。\n")
    document = parse_file(write_encoded_text(tmp_path / "notes.txt", text, "utf-8"))
    assert document.title == "Pump P-22 operating notes"
    assert block_with(document, "covers").section == ("1 Scope",)
    assert block_with(document, "strainer").section == ("2 Alarms", "2.1 Low suction pressure")
    assert block_with(document, "轴承").section == ("第3章 保守",)
    assert block_with(document, "毎日").section == ("３．点検",)


def test_plain_text_numbered_list_and_measurements_are_not_headings(tmp_path: Path) -> None:
    text = ("Restart procedure\n\n1. Close valve V-12\n2. Open the vent\n3. Restart the pump\n"
            "Watch the gauge.\n\nLimits\n1.5 MPa\nis the trip point.\n")
    document = parse_file(write_encoded_text(tmp_path / "restart.txt", text, "utf-8"))
    assert all(block.section == () for block in document.blocks)
    assert block_with(document, "V-12").text == (
        "1. Close valve V-12\n2. Open the vent\n3. Restart the pump\nWatch the gauge.")


def test_plain_text_long_first_line_is_not_the_title(tmp_path: Path) -> None:
    text = "When the suction pressure drops below 0.2 MPa the pump trips " * 3 + "\n"
    assert parse_file(write_encoded_text(tmp_path / "note-12.log", text, "utf-8")).title == (
        "note-12")


def test_text_is_kept_verbatim_except_controls_line_endings_and_space_runs(
        tmp_path: Path) -> None:
    text = "Pump  P-22\x00 trips\r\nat   0.2\x1b MPa\r\n\r\n泵   停止\tnow\n"
    document = parse_file(write_encoded_text(tmp_path / "log.txt", text, "utf-8"))
    assert [block.text for block in document.blocks] == [
        "Pump P-22 trips\nat 0.2 MPa", "泵 停止\tnow"]


# --- DOCX ----------------------------------------------------------------------------------


def test_docx_sections_from_builtin_outline_level_and_localized_styles(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "SOP-7.docx", [
        "Read before starting.",
        DocxHeading("5 Alarms", 1, how="outline_style", style_name="Plant Heading"),
        "Alarms of pump P-22.",
        DocxHeading("5.2 Low suction pressure", 2, how="outline_base_style",
                    style_name="WPS Heading"),
        "Check the strainer.",
        DocxHeading("5.3 Seal water", 2, how="direct"),
        "Open valve V-7.",
        DocxHeading("第6章 保守", 1, how="outline_style", style_name="标题 1"),
        DocxHeading("6.1 軸受", 2, how="named_style", style_name="見出し 2"),
        "毎月グリースを補給する。",
        DocxHeading("7 Shutdown", 1),
        "Close the discharge valve.",
    ])
    document = parse_file(path)
    assert document.format == "docx"
    assert block_with(document, "Read before").section == ()
    assert block_with(document, "pump P-22").section == ("5 Alarms",)
    assert block_with(document, "strainer").section == ("5 Alarms", "5.2 Low suction pressure")
    assert block_with(document, "V-7").section == ("5 Alarms", "5.3 Seal water")
    assert block_with(document, "グリース").section == ("第6章 保守", "6.1 軸受")
    assert block_with(document, "discharge").section == ("7 Shutdown",)
    assert not any("5 Alarms" == block.text for block in document.blocks)


def test_docx_table_rows_are_records_in_body_order(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "alarms.docx", [
        DocxHeading("5.2 吸入压力低", 2),
        "报警前的说明。",
        DocxTable([ZH_ALARM_HEADER, *ZH_ALARM_ROWS]),
        "报警后的说明。",
    ])
    document = parse_file(path)
    assert [block.kind for block in document.blocks] == ["text", "record", "record", "record",
                                                          "text"]
    assert document.blocks[1] == Block(
        "代码: E-104 | 报警: 吸入压力低 | 处理措施: 检查进口阀门是否打开，清洗过滤器",
        ("5.2 吸入压力低",), None, "record")


def test_docx_title_from_core_properties_then_title_style_then_stem(tmp_path: Path) -> None:
    with_core = write_docx(tmp_path / "a.docx", [DocxHeading("Cover", 0), "x"],
                           core_title="SOP-7 Pump start", core_revision=42)
    with_title_style = write_docx(tmp_path / "b.docx", ["x", DocxHeading("SOP-8 Pump stop", 0)])
    with_heading = write_docx(tmp_path / "c.docx", [DocxHeading("SOP-9 Flushing", 1), "x"])
    plain = write_docx(tmp_path / "SOP-10.docx", ["Only body text."], core_revision=3)
    assert parse_file(with_core).title == "SOP-7 Pump start"
    assert parse_file(with_title_style).title == "SOP-8 Pump stop"
    assert parse_file(with_heading).title == "SOP-9 Flushing"
    assert parse_file(plain).title == "SOP-10"


# --- XLSX ----------------------------------------------------------------------------------


def test_xlsx_rows_are_records_per_sheet_with_cached_formula_values(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "limits.xlsx", {
        "Alarms": [EN_ALARM_HEADER, *EN_ALARM_ROWS, [None, None, None],
                   ["E-300", None, "Call maintenance"]],
        "Empty": [],
        "Limits": [["Tag", "Max bar", "Factor", "Trip bar"], ["PT-101", 0.35, 3, None]],
    }, hidden=["Limits"], cached_formulas={"Limits!D2": ("=B2*2", 0.7)})
    document = parse_file(path)
    assert document.format == "xlsx"
    assert {block.section for block in document.blocks} == {("Alarms",), ("Limits",)}
    assert block_with(document, "E-300").text == "Code: E-300 | Action: Call maintenance"
    assert block_with(document, "PT-101") == Block(
        "Tag: PT-101 | Max bar: 0.35 | Factor: 3 | Trip bar: 0.7", ("Limits",), None, "record")
    assert len(document.blocks) == len(EN_ALARM_ROWS) + 2


def test_xlsx_with_cjk_sheet_and_headers(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "警報一覧.xlsx", {"警報": [JA_ALARM_HEADER, *JA_ALARM_ROWS]})
    document = parse_file(path, "ja")
    assert document.title == "警報一覧"
    assert document.blocks[0] == Block(
        "コード: E-104 | 警報: 吸入圧力低下 | 処置: 入口バルブが開いているか確認し、ストレーナを清掃する",
        ("警報",), None, "record")


# --- PDF -----------------------------------------------------------------------------------


def test_pdf_blocks_carry_their_page_number(tmp_path: Path) -> None:
    path = write_text_pdf(tmp_path / "manual.pdf", [
        ["Pump P-22 manual", "Read all pages before starting."],
        ["The seal water pressure must stay above 1.5 bar."],
        ["Grease the bearings every 500 hours."],
    ])
    document = parse_file(path)
    assert document.format == "pdf"
    assert document.pages == 3
    assert document.flagged_pages == ()
    assert block_with(document, "seal water").page == 2
    assert block_with(document, "500 hours").page == 3


def test_pdf_chinese_and_japanese_text_survive_extraction(tmp_path: Path) -> None:
    path = write_text_pdf(tmp_path / "泵手册.pdf", [
        ["泵的吸入压力低时，检查过滤器。"],
        ["3.2 吸入圧力低下", "吸入圧力が低い場合は入口バルブを確認し、ストレーナを清掃",
         "してください。"],
    ])
    document = parse_file(path, "zh")
    assert "泵" in block_with(document, "过滤器").text
    japanese = block_with(document, "吸入圧力が")
    # The layout line break inside the Japanese sentence is gone, so the phrase is findable.
    assert "ストレーナを清掃してください。" in japanese.text
    assert japanese.section == ("3.2 吸入圧力低下",)
    assert japanese.page == 2


def test_pdf_numbered_headings_carry_across_pages(tmp_path: Path) -> None:
    path = write_text_pdf(tmp_path / "manual.pdf", [
        ["Pump manual", "5 Alarms", "Alarms are listed by code.", "5.2 Low suction pressure",
         "Check the strainer."],
        ["Then restart the pump.", "第6章 保守", "轴承每月加油。"],
    ])
    document = parse_file(path)
    assert block_with(document, "restart").section == ("5 Alarms", "5.2 Low suction pressure")
    assert block_with(document, "restart").page == 2
    assert block_with(document, "轴承").section == ("第6章 保守",)


def test_pdf_scanned_and_garbled_pages_are_flagged_while_the_rest_imports(
        tmp_path: Path) -> None:
    path = write_text_pdf(tmp_path / "mixed.pdf", [
        ["Pump P-22 manual", "Start the pump with the discharge valve closed."],
        SpecialPage.SCANNED,
        SpecialPage.GARBLED,
        ["Stop the pump before opening the casing."],
    ])
    document = parse_file(path)
    assert document.pages == 4
    assert document.flagged_pages == (2, 3)
    assert {block.page for block in document.blocks} == {1, 4}
    assert "discharge pressure table" not in all_text(document)
    assert any("2, 3" in warning for warning in document.warnings)


def test_image_only_pdf_is_refused_as_having_no_text(tmp_path: Path) -> None:
    refused = refusal(write_image_only_pdf(tmp_path / "scan-0012.pdf", pages=2))
    assert refused.reason == "no_text"
    assert refused.message.startswith("scan-0012.pdf has no text layer")
    assert "OCR" in refused.hint


def test_encrypted_pdf_is_refused(tmp_path: Path) -> None:
    refused = refusal(write_encrypted_pdf(tmp_path / "SOP-7.pdf", [["Secret procedure"]]))
    assert refused.reason == "encrypted"
    assert refused.message == "SOP-7.pdf is encrypted: Gemba can only read PDFs without a password"
    assert "Print to PDF" in refused.hint


def test_pdf_with_only_an_owner_password_imports(tmp_path: Path) -> None:
    # Vendor manuals often restrict copying but open without a password: those are readable.
    path = write_encrypted_pdf(tmp_path / "vendor.pdf", [["Torque the flange bolts to 45 Nm."]],
                               user_password="", owner_password="vendor")
    assert "45 Nm" in all_text(parse_file(path))


def test_pdf_title_from_metadata_else_first_line(tmp_path: Path) -> None:
    titled = write_text_pdf(tmp_path / "a.pdf", [["Cover page", "text"]],
                            title="P-22 Operating Manual")
    untitled = write_text_pdf(tmp_path / "b.pdf", [["Pump P-22 manual", "text"]])
    assert parse_file(titled).title == "P-22 Operating Manual"
    assert parse_file(untitled).title == "Pump P-22 manual"


# --- Refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SOP-7.pdf", "SOP-7.docx", "list.xlsx", "list.csv", "a.md",
                                  "a.txt"])
def test_zero_byte_file_is_empty(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    refused = refusal(path)
    assert refused.reason == "empty"
    assert refused.message.startswith(f"{name} is empty")


@pytest.mark.parametrize("data", [b"  \r\n\t\n ", "\ufeff \n".encode("utf-8"),
                                  "  \n".encode("utf-16")])
def test_whitespace_only_text_is_empty(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "blank.txt"
    path.write_bytes(data)
    assert refusal(path).reason == "empty"


def test_docx_without_any_text_is_empty(tmp_path: Path) -> None:
    assert refusal(write_docx(tmp_path / "blank.docx", [""])).reason == "empty"


@pytest.mark.parametrize("name", ["drawing.dwg", "photo.JPG", "README"])
def test_unknown_type_lists_what_is_accepted(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"some bytes")
    refused = refusal(path)
    assert refused.reason == "unknown_type"
    assert refused.message.startswith(f"{name} is ")
    for accepted in (".pdf", ".docx", ".xlsx", ".csv", ".md", ".txt"):
        assert accepted in refused.message


def test_old_word_file_hint_says_save_as_docx(tmp_path: Path) -> None:
    path = tmp_path / "SOP-3.doc"
    path.write_bytes(b"\xd0\xcf\x11\xe0old word")
    assert ".docx" in refusal(path).hint


def test_extension_is_case_insensitive(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "ALARMS.CSV", EN_ALARM_HEADER, EN_ALARM_ROWS)
    assert parse_file(path).format == "csv"


def test_file_over_the_limit_is_too_large(tmp_path: Path) -> None:
    path = write_encoded_text(tmp_path / "big.txt", "Pump P-22 log line\n" * 300, "utf-8")
    refused = refusal(path, max_file_bytes=1024)
    assert refused.reason == "too_large"
    assert "5.6 KB (5700 bytes)" in refused.message
    assert "1.0 KB (1024 bytes)" in refused.message
    assert "[knowledge] max_file_bytes" in refused.hint
    assert parse_file(path, max_file_bytes=5700).blocks


def _docx_without_body(tmp_path: Path) -> bytes:
    source = write_docx(tmp_path / "source.docx", ["text"])
    target = tmp_path / "broken.docx"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as broken:
        for item in original.infolist():
            if item.filename != "word/document.xml":
                broken.writestr(item, original.read(item))
    return target.read_bytes()


DAMAGED = [
    ("manual.pdf", lambda tmp: b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ntruncated"),
    ("manual.pdf", lambda tmp: random.Random(1).randbytes(2000)),
    ("SOP-7.docx", lambda tmp: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1 an old .doc renamed"),
    ("SOP-7.docx", _docx_without_body),
    ("list.xlsx", lambda tmp: b"PK\x03\x04 not really a zip"),
    ("list.xlsx", lambda tmp: write_docx(tmp / "x.docx", ["a Word file renamed"]).read_bytes()),
]


@pytest.mark.parametrize(("name", "make"), DAMAGED,
                         ids=["truncated-pdf", "random-pdf", "doc-as-docx", "docx-no-body",
                              "bad-zip-xlsx", "docx-as-xlsx"])
def test_damaged_file_is_refused_naming_the_file(tmp_path: Path, name: str, make) -> None:
    path = tmp_path / name
    path.write_bytes(make(tmp_path))
    refused = refusal(path)
    assert refused.reason == "damaged"
    assert refused.message.startswith(f"{name} could not be read as")
    assert refused.hint


def test_pdf_that_pdfium_cannot_read_falls_back_to_pypdf(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.knowledge.parsers import pdf

    def pdfium_fails(data: bytes) -> None:
        raise RuntimeError("PDFium: unsupported feature")

    monkeypatch.setattr(pdf, "_pdfium_pages", pdfium_fails)
    path = write_text_pdf(tmp_path / "manual.pdf", [["Pump P-22 manual"],
                                                    ["Seal water above 1.5 bar."]])
    document = parse_file(path)
    assert block_with(document, "Seal water").page == 2
    assert any("fallback" in warning for warning in document.warnings)


def test_chinese_regulation_numbering_makes_sections() -> None:
    """一、适用范围 / （二）… are how Chinese plant regulations number their parts; a sentence
    that starts the same way is no heading."""
    text = ("危险化学品安全操作规程\n\n一、适用范围\n本规程适用于液碱和盐酸。\n\n"
            "二、储存要求\n（一）液碱罐\n液碱罐装量不得超过85%。\n\n"
            "三、二号罐停用后应关闭阀门，然后通知班长。\n")
    parsed = parse("规程.txt", text.encode("utf-8"), locale="zh")
    by_text = {block.text: block.section for block in parsed.blocks}
    assert by_text["液碱罐装量不得超过85%。"] == ("二、储存要求", "（一）液碱罐")
    assert by_text["本规程适用于液碱和盐酸。"] == ("一、适用范围",)
    assert "三、二号罐停用后应关闭阀门，然后通知班长。" in by_text
