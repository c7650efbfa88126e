"""Real plant-like files on disk for the knowledge tests and benchmark: PDF, DOCX, XLSX, CSV, text.

Every writer takes the path to write and returns it, so a test reads `path.read_bytes()` and
hands it to `parse(path.name, ...)` exactly as an import would. Nothing here is mocked: PDFs are
drawn by reportlab (CJK through its built-in CID fonts, so no font files are needed), encrypted
with pypdf, DOCX built by python-docx, XLSX by openpyxl, text encoded by Python's codecs.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

# Short alarm tables as plants write them; header first. Values carry no commas so that the
# same rows make a valid CSV with any of the sniffed delimiters.
EN_ALARM_HEADER = ("Code", "Alarm", "Action")
EN_ALARM_ROWS = (
    ("E-104", "Low suction pressure", "Check that the inlet valve is open and clean the strainer"),
    ("E-221", "Motor overtemperature", "Stop the pump and inspect the cooling fan"),
    ("P-22", "Discharge pressure fluctuates", "Vent the pump casing and restart"),
)
ZH_ALARM_HEADER = ("代码", "报警", "处理措施")
ZH_ALARM_ROWS = (
    ("E-104", "吸入压力低", "检查进口阀门是否打开，清洗过滤器"),
    ("E-221", "电机温度高", "停泵并检查冷却风扇"),
    ("P-22", "泵出口压力波动", "排气后重新启动"),
)
JA_ALARM_HEADER = ("コード", "警報", "処置")
JA_ALARM_ROWS = (
    ("E-104", "吸入圧力低下", "入口バルブが開いているか確認し、ストレーナを清掃する"),
    ("E-221", "モータ温度上昇", "ポンプを停止し冷却ファンを点検する"),
    ("P-22", "吐出圧力変動", "ポンプ内の空気を抜いて再起動する"),
)
# Half-width katakana as old PLC alarm lists export them (Shift_JIS only).
JA_HALFWIDTH_ALARM_TEXT = "ｺｰﾄﾞ,ｱﾗｰﾑ,ｼｮﾁ\nE-104,ｷｭｳﾆｭｳｱﾂﾘｮｸﾃｲｶ,ﾊﾞﾙﾌﾞｦｶｸﾆﾝ\n"
DE_ALARM_TEXT = ("Code;Alarm;Maßnahme\n"
                 "E-104;Saugdruck zu niedrig;Ventil prüfen und Filter reinigen\n"
                 "E-221;Motortemperatur über 80 °C;Pumpe stoppen\n")


def alarm_table_text(header: Sequence[str], rows: Sequence[Sequence[str]],
                     delimiter: str = ",") -> str:
    """An alarm table as delimited text, one line per row, header first, ending with \\n."""
    return "".join(delimiter.join(row) + "\n" for row in (header, *rows))


def write_encoded_text(path: Path, text: str, encoding: str) -> Path:
    """`text` encoded with a Python codec: "utf-8-sig" and "utf-16" write their BOM.

    "utf-16-be-bom" writes big-endian UTF-16 with its BOM (Python's "utf-16" writes the
    machine's byte order).
    """
    if encoding == "utf-16-be-bom":
        path.write_bytes(b"\xfe\xff" + text.encode("utf-16-be"))
    else:
        path.write_bytes(text.encode(encoding))
    return path


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]], *,
              encoding: str = "utf-8", delimiter: str = ",") -> Path:
    """A CSV file in the given encoding (e.g. "gbk" as Excel saves it on Chinese Windows)."""
    return write_encoded_text(path, alarm_table_text(header, rows, delimiter), encoding)


# --- PDF -----------------------------------------------------------------------------------


class SpecialPage(Enum):
    """Pages without a usable text layer, for `write_text_pdf`'s `pages`."""

    SCANNED = "scanned"
    """Only a drawn rectangle: what an image-only (scanned) page looks like to a text reader."""
    GARBLED = "garbled"
    """Text drawn in a font whose text mapping points into the private-use area: the page
    looks right on screen and extracts as garbage, like a PDF with a broken font."""


_PAGE_TOP, _LINE_STEP, _LEFT = 800, 16, 50
_KANA = re.compile(r"[\u3040-\u30ff\uff66-\uff9f]")


def _encodes(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def pdf_font_for(line: str) -> str:
    """Helvetica for Western text, HeiseiMin-W3 for Japanese, STSong-Light for Chinese."""
    if _encodes(line, "cp1252"):
        return "Helvetica"
    if _KANA.search(line) or not _encodes(line, "gbk"):
        return "HeiseiMin-W3"
    return "STSong-Light"


def _register_cid_fonts() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    for font in ("STSong-Light", "HeiseiMin-W3"):
        if font not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(UnicodeCIDFont(font))


def write_text_pdf(path: Path, pages: Sequence[Sequence[str] | SpecialPage], *,
                   title: str | None = None, font_size: int = 11) -> Path:
    """A PDF with a text layer: each page is a list of lines (no wrapping; about 48 fit).

    A page may instead be `SpecialPage.SCANNED` or `SpecialPage.GARBLED`. `title` goes into
    the document information (reportlab writes "untitled" when it is None).
    """
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    _register_cid_fonts()
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=True)
    if title is not None:
        canvas.setTitle(title)
    for page in pages:
        if page is SpecialPage.SCANNED:
            canvas.rect(100, 300, 380, 400, stroke=1, fill=1)
        elif page is SpecialPage.GARBLED:
            # Courier only here: its font object is the one whose text mapping gets broken.
            canvas.setFont("Courier", font_size)
            for index in range(20):
                canvas.drawString(_LEFT, _PAGE_TOP - index * _LINE_STEP,
                                  f"Pump P-22 discharge pressure table, row {index}")
        else:
            for index, line in enumerate(page):
                canvas.setFont(pdf_font_for(line), font_size)
                canvas.drawString(_LEFT, _PAGE_TOP - index * _LINE_STEP, line)
        canvas.showPage()
    canvas.save()
    garbled = [number for number, page in enumerate(pages) if page is SpecialPage.GARBLED]
    data = _garble_pages(buffer.getvalue(), garbled) if garbled else buffer.getvalue()
    path.write_bytes(data)
    return path


def _garble_pages(data: bytes, page_indexes: Sequence[int]) -> bytes:
    """Give the fonts of these pages a ToUnicode map into the private-use area (U+E000...)."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import DecodedStreamObject, NameObject

    cmap = (b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
            b"/CMapName /Garbled def /CMapType 2 def\n"
            b"1 begincodespacerange <00> <FF> endcodespacerange\n"
            b"1 beginbfrange <21> <7E> <E021> endbfrange\n"
            b"endcmap CMapName currentdict /CMap defineresource pop end end\n")
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    to_unicode = DecodedStreamObject()
    to_unicode.set_data(cmap)
    reference = writer._add_object(to_unicode)
    for index in page_indexes:
        fonts = writer.pages[index]["/Resources"]["/Font"]
        for font in fonts.values():
            if font.get_object()["/BaseFont"] == "/Courier":
                font.get_object()[NameObject("/ToUnicode")] = reference
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def write_image_only_pdf(path: Path, pages: int = 1) -> Path:
    """A PDF whose pages hold only a drawn rectangle: a scan, as far as text goes."""
    return write_text_pdf(path, [SpecialPage.SCANNED] * pages)


def write_encrypted_pdf(path: Path, pages: Sequence[Sequence[str]], *,
                        user_password: str = "secret",
                        owner_password: str | None = None) -> Path:
    """A text PDF encrypted by pypdf (RC4-128, which needs no crypto library to write).

    With `user_password=""` and an owner password it opens without a password (permissions
    only), as many vendor manuals do.
    """
    from pypdf import PdfReader, PdfWriter

    write_text_pdf(path, pages)
    writer = PdfWriter(clone_from=PdfReader(path))
    writer.encrypt(user_password=user_password, owner_password=owner_password,
                   algorithm="RC4-128")
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def manual_pages(page_count: int = 100) -> list[list[str]]:
    """Pages of a mixed English/Chinese pump manual: a numbered section and 30 lines per page.

    Page n opens section "c.s Alarm E-nnn on pump P-k" (ten sections per chapter) and mentions
    alarm code E-{n:03d} in both languages, so a benchmark can ask for it.
    """
    pages = []
    for number in range(1, page_count + 1):
        code = f"E-{number:03d}"
        chapter, section = divmod(number - 1, 10)
        lines = [f"{chapter + 1}.{section + 1} Alarm {code} on pump P-{number % 7 + 1}"]
        for row in range(15):
            lines.append(f"Step {row + 1}: if {code} persists, check the suction strainer "
                         f"and the seal water flow ({row * 0.5:.1f} bar).")
            lines.append(f"第{row + 1}步：报警{code}持续时，检查吸入过滤器和密封水流量。")
        pages.append(lines)
    return pages


def write_manual_pdf(path: Path, page_count: int = 100) -> Path:
    """A `page_count`-page text PDF from `manual_pages` (the 100-page timing corpus)."""
    return write_text_pdf(path, manual_pages(page_count), title="P-series pump manual",
                          font_size=9)


# --- DOCX ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DocxHeading:
    """A heading paragraph for `write_docx`.

    `how` says how Word would know it is a heading:
    - "builtin": the built-in "Heading N" style (or "Title" when level is 0);
    - "outline_style": a custom style named `style_name` (e.g. "标题 1", "WPS Heading") whose
      paragraph properties carry w:outlineLvl, as WPS and localized templates write;
    - "outline_base_style": a custom style named `style_name` based on another custom style
      that carries the w:outlineLvl;
    - "named_style": a custom style named `style_name` (e.g. "見出し 2") with no w:outlineLvl,
      so that only its name says it is a heading;
    - "direct": a plain paragraph with w:outlineLvl set on the paragraph itself.
    """

    text: str
    level: int
    how: str = "builtin"
    style_name: str | None = None


@dataclass(frozen=True)
class DocxTable:
    """A table for `write_docx`: rows of cell texts, the first row the header."""

    rows: Sequence[Sequence[str]]


def write_docx(path: Path, body: Sequence[str | DocxHeading | DocxTable], *,
               core_title: str | None = None, core_revision: int | None = None) -> Path:
    """A .docx with `body` in order: strings are Normal paragraphs."""
    from docx import Document

    document = Document()
    if core_title is not None:
        document.core_properties.title = core_title
    if core_revision is not None:
        document.core_properties.revision = core_revision
    for item in body:
        if isinstance(item, DocxTable):
            _add_table(document, item)
        elif isinstance(item, DocxHeading):
            _add_heading(document, item)
        else:
            document.add_paragraph(item)
    document.save(str(path))
    return path


def _add_table(document: Any, table: DocxTable) -> None:
    columns = max(len(row) for row in table.rows)
    docx_table = document.add_table(rows=len(table.rows), cols=columns)
    for row_index, row in enumerate(table.rows):
        for column, value in enumerate(row):
            docx_table.cell(row_index, column).text = value


def _add_heading(document: Any, heading: DocxHeading) -> None:
    if heading.how == "builtin":
        document.add_heading(heading.text, level=heading.level)
        return
    if heading.how == "direct":
        paragraph = document.add_paragraph(heading.text)
        set_outline_level(paragraph._p.get_or_add_pPr(), heading.level)
        return
    name = heading.style_name or f"Custom Heading {heading.level}"
    style = _outline_style(document, name, heading.level, heading.how != "named_style",
                           heading.how == "outline_base_style")
    document.add_paragraph(heading.text, style=style)


def _outline_style(document: Any, name: str, level: int, with_outline: bool,
                   via_base: bool) -> Any:
    from docx.enum.style import WD_STYLE_TYPE

    styles = document.styles
    if name in [style.name for style in styles]:
        return styles[name]
    style = styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
    style.base_style = styles["Normal"]
    carrier = style
    if via_base:
        carrier = styles.add_style(f"{name} base", WD_STYLE_TYPE.PARAGRAPH)
        carrier.base_style = styles["Normal"]
        style.base_style = carrier
    if with_outline:
        set_outline_level(carrier.element.get_or_add_pPr(), level)
    return style


def set_outline_level(paragraph_properties: Any, level: int) -> None:
    """Put <w:outlineLvl w:val="level-1"/> into a w:pPr (level 1-based; 10 means body text)."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    outline = OxmlElement("w:outlineLvl")
    outline.set(qn("w:val"), str(level - 1))
    # Schema order: outlineLvl comes before these siblings.
    paragraph_properties.insert_element_before(
        outline, "w:divId", "w:cnfStyle", "w:rPr", "w:sectPr", "w:pPrChange")


# --- XLSX ----------------------------------------------------------------------------------


def write_xlsx(path: Path, sheets: Mapping[str, Sequence[Sequence[object]]], *,
               hidden: Sequence[str] = (),
               cached_formulas: Mapping[str, tuple[str, float]] | None = None) -> Path:
    """An .xlsx with one sheet per entry (rows of values; None leaves a cell empty).

    `hidden` names sheets to hide. `cached_formulas` maps "Sheet!C2" to (formula, value): the
    cell gets the formula and, as Excel would have saved it, the value it last computed
    (openpyxl writes formulas without one).
    """
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(list(row))
        if name in hidden:
            sheet.sheet_state = "hidden"
    for address, (formula, _) in (cached_formulas or {}).items():
        sheet_name, cell = address.split("!")
        workbook[sheet_name][cell] = formula
    workbook.save(path)
    if cached_formulas:
        _add_cached_values(path, list(sheets), cached_formulas)
    return path


def _add_cached_values(path: Path, sheet_order: list[str],
                       cached_formulas: Mapping[str, tuple[str, float]]) -> None:
    with zipfile.ZipFile(path) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    for address, (_, value) in cached_formulas.items():
        sheet_name, cell = address.split("!")
        member = f"xl/worksheets/sheet{sheet_order.index(sheet_name) + 1}.xml"
        xml = members[member].decode("utf-8")
        pattern = re.compile(rf'(<c r="{cell}"[^>]*>)<f>(.*?)</f>(?:<v\s*/>|<v>.*?</v>)?</c>')
        xml, count = pattern.subn(rf"\1<f>\2</f><v>{value}</v></c>", xml)
        assert count == 1, f"formula cell {address} not found in {member}"
        members[member] = xml.encode("utf-8")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for filename, content in members.items():
            target.writestr(filename, content)
