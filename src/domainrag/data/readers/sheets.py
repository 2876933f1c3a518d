"""Spreadsheets as tables: Excel workbooks (``.xlsx``/``.xlsm``, openpyxl) and delimited text (``.csv``/``.tsv``,
the standard ``csv`` module).

Each worksheet becomes one table block captioned and sectioned by the sheet's name; a CSV file becomes
one table block. Empty rows and columns are dropped, the first remaining row is the header, and
formulas count by the value Excel last computed (a workbook that was never opened in a spreadsheet
program has none: the reader warns instead of inventing numbers). Chunking splits a long table into
row groups that repeat the header, so a large sheet stays readable chunk by chunk.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from domainrag.data.blocks import Block, ReadResult, markdown_table
from domainrag.data.readers.office import PACKAGE_ERRORS, check_package, corrupt
from domainrag.data.readers.registry import register
from domainrag.errors import DatasetError

_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_FORMULA = re.compile(rb"<(?:\w+:)?f[\s>/]")
_SNIFF_BYTES = 64 * 1024


def cell_text(value: Any) -> str:
    """A cell value as a spreadsheet shows it by default: whole numbers without ".0", no float noise
    (0.1 + 0.2 is "0.3"), dates without a midnight time, booleans as TRUE/FALSE."""
    if isinstance(value, str):  # most cells, and every CSV cell: checked first
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format(value, ".15g")
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def table_rows(rows: Iterable[Iterable[Any]]) -> list[list[str]]:
    """Rows as text with the empty rows and the empty columns removed."""
    kept: list[list[str]] = []
    used: set[int] = set()
    for row in rows:
        cells = [cell_text(v) for v in row]
        filled = [i for i, c in enumerate(cells) if c]
        if filled:
            kept.append(cells)
            used.update(filled)
    columns = sorted(used)
    return [[r[i] if i < len(r) else "" for i in columns] for r in kept]


# -------------------------------------------------------------------------------------------- Excel


@register(".xlsx", ".xlsm")
def read_xlsx(path: Path) -> ReadResult:
    """One table block per worksheet, from the cached cell values (read-only streaming mode)."""
    import openpyxl

    check_package(path)
    result = ReadResult()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
            try:
                result.title = (wb.properties.title or "").strip()
                for ws in wb.worksheets:
                    ws.reset_dimensions()  # some writers store a wrong used range; read every row there is
                    text = markdown_table(table_rows(ws.iter_rows(values_only=True)))
                    if text:
                        result.blocks.append(Block("table", text, (ws.title,), caption=ws.title))
                    result.warnings.extend(_uncached(path, ws))
            finally:
                wb.close()
    except (openpyxl.utils.exceptions.InvalidFileException, *PACKAGE_ERRORS) as exc:
        raise corrupt(path, exc) from exc
    # openpyxl's own warnings are mostly about features it ignores (styles, validation); keep the ones
    # about values it could not read.
    result.warnings.extend(dict.fromkeys(str(w.message) for w in caught if "is marked as a date" in str(w.message)))
    return result


def _uncached(path: Path, ws: Any) -> list[str]:
    """A warning naming the formula cells of a sheet that have no cached value, if any."""
    member = getattr(ws, "_worksheet_path", None)  # openpyxl's read-only sheet keeps its ZIP member here
    if not member:
        return []
    with zipfile.ZipFile(path) as archive, archive.open(member) as fh:
        if not _has_formula(fh):
            return []
    missing: list[str] = []
    with zipfile.ZipFile(path) as archive, archive.open(member) as fh:
        for _, el in ElementTree.iterparse(fh, events=("end",)):
            if el.tag == f"{_NS}c":
                if el.find(f"{_NS}f") is not None and not (el.findtext(f"{_NS}v") or "").strip():
                    missing.append(el.get("r") or "?")
                el.clear()
            elif el.tag == f"{_NS}row":
                el.clear()
    if not missing:
        return []
    cells = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return [f"sheet '{ws.title}': {len(missing)} formula cell(s) without a computed value ({cells}) read as empty; "
            "open and save the workbook in Excel or LibreOffice so the values are stored"]


def _has_formula(fh: Any) -> bool:
    tail = b""
    while chunk := fh.read(1 << 20):
        if _FORMULA.search(tail + chunk):
            return True
        tail = chunk[-16:]
    return False


# ---------------------------------------------------------------------------------------------- CSV


@register(".csv", ".tsv")
def read_csv(path: Path) -> ReadResult:
    """The file as one table block; the delimiter and quoting are sniffed (``.tsv`` is always tab-separated)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(str(path), f"not UTF-8 text (byte {exc.start})",
                           hint="save it as 'CSV UTF-8' (Excel: Save As > CSV UTF-8), or convert it, "
                                f"e.g. iconv -f cp1252 -t utf-8 {path.name}") from exc
    if "\x00" in text:
        raise DatasetError(str(path), f"binary content (NUL byte at offset {text.index(chr(0))})",
                           hint="a CSV file is text; is this a spreadsheet saved under a .csv name?")
    if not text.strip():
        return ReadResult()
    reader = csv.reader(io.StringIO(text, newline=""), _dialect(path, text))
    try:
        rows = table_rows(reader)
    except csv.Error as exc:
        raise DatasetError(str(path), f"malformed CSV ({exc})", line=reader.line_num,
                           hint="check the quoting on that line") from exc
    table = markdown_table(rows)
    return ReadResult(blocks=[Block("table", table, caption=path.name)] if table else [])


def _dialect(path: Path, text: str) -> type[csv.Dialect] | csv.Dialect:
    if path.suffix.lower() == ".tsv":
        return csv.excel_tab
    sample = text[:_SNIFF_BYTES]
    if len(text) > _SNIFF_BYTES and "\n" in sample:
        sample = sample[: sample.rindex("\n")]  # whole lines only, or a cut quoted field misleads the sniffer
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:  # one column, or nothing the sniffer recognises: the standard comma dialect
        return csv.excel
