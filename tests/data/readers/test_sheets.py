"""Excel and CSV readers on files written by openpyxl and the csv module: one table per sheet, empty rows
and columns dropped, cached formula values (and a warning where there are none), CSV dialects and encodings."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import openpyxl
import pytest

from domainrag.data.chunking import chunk_document
from domainrag.data.loaders import load_file
from domainrag.data.readers import READERS
from domainrag.data.readers.sheets import cell_text
from domainrag.errors import DatasetError


def _workbook(path: Path) -> Path:
    wb = openpyxl.Workbook()
    costs = wb.active
    costs.title = "Costs 2024"
    costs.append([])  # an empty first row and an empty first column around the table
    costs.append([None, "Item", None, "Cost", "Bought"])
    costs.append([None, "Seal", None, 1.5, dt.datetime(2024, 3, 1)])
    costs.append([None, "Valve", None, 12.0, dt.datetime(2024, 3, 2, 14, 30)])
    costs.append([])
    costs.append([None, "Total", None, "=SUM(D3:D4)", None])
    wb.create_sheet("Blank")
    notes = wb.create_sheet("Notes")
    notes.append(["Topic", "Text"])
    notes.append(["Warranty", "Two years | parts only"])
    wb.properties.title = "Spare parts"
    wb.save(path)
    return path


def _with_cached_total(src: Path, dst: Path, value: str) -> Path:
    """The workbook as Excel would save it: the formula keeps its computed value in <v>."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"<f>SUM(D3:D4)</f><v></v>", f"<f>SUM(D3:D4)</f><v>{value}</v>".encode())
                assert f"<v>{value}</v>".encode() in data
            zout.writestr(item, data)
    return dst


def test_one_table_per_sheet_without_empty_rows_or_columns(tmp_path: Path) -> None:
    result = READERS[".xlsx"](_workbook(tmp_path / "w.xlsx"))
    assert result.title == "Spare parts"
    costs, notes = result.blocks  # the empty sheet gives no block
    assert (costs.kind, costs.caption, costs.section) == ("table", "Costs 2024", ("Costs 2024",))
    assert costs.text.splitlines() == [
        "| Item | Cost | Bought |",
        "|---|---|---|",
        "| Seal | 1.5 | 2024-03-01 |",
        "| Valve | 12 | 2024-03-02 14:30:00 |",
        "| Total |  |  |",
    ]
    assert notes.text.splitlines()[2] == "| Warranty | Two years \\| parts only |"


def test_formula_without_cached_value_is_warned(tmp_path: Path) -> None:
    result = READERS[".xlsx"](_workbook(tmp_path / "w.xlsx"))
    assert len(result.warnings) == 1
    assert "sheet 'Costs 2024'" in result.warnings[0] and "(D6)" in result.warnings[0]


def test_formula_reads_its_cached_value(tmp_path: Path) -> None:
    path = _with_cached_total(_workbook(tmp_path / "w.xlsx"), tmp_path / "saved.xlsx", "13.5")
    result = READERS[".xlsx"](path)
    assert result.warnings == []
    assert result.blocks[0].text.splitlines()[-1] == "| Total | 13.5 |  |"


def test_cell_text_reads_like_a_spreadsheet() -> None:
    assert [cell_text(v) for v in (None, True, 3.0, 0.1 + 0.2, 1e20, dt.date(2024, 1, 2), " x ")] == [
        "", "TRUE", "3", "0.3", "1e+20", "2024-01-02", "x"]


def test_large_sheet_is_chunked_into_header_repeating_row_groups(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Readings"
    ws.append(["Sensor", "Hour", "Value", "Status"])
    for i in range(400):
        ws.append([f"s{i % 7}", i, i * 0.5, "ok"])
    wb.save(tmp_path / "big.xlsx")
    (doc,) = load_file(tmp_path / "big.xlsx")
    chunks = chunk_document(doc)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text.startswith("Readings\n\n| Sensor | Hour | Value | Status |\n|---|---|---|---|\n")
        assert chunk.metadata["kind"] == "table" and chunk.metadata["section"] == "Readings"
    rows = [line for c in chunks for line in c.text.splitlines()[4:]]
    assert len(rows) == 400 and rows[0] == "| s0 | 0 | 0 | ok |" and rows[-1] == "| s0 | 399 | 199.5 | ok |"


def test_csv_sniffs_dialect_and_reads_utf8_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "parts.csv"
    path.write_bytes("\ufeffPart;Price;Note\nSeal;1,50;\"a; b\"\n\n;;\nVentil;2,00;ä\n".encode())
    (block,) = READERS[".csv"](path).blocks
    assert (block.kind, block.caption) == ("table", "parts.csv")
    assert block.text.splitlines() == [
        "| Part | Price | Note |", "|---|---|---|", "| Seal | 1,50 | a; b |", "| Ventil | 2,00 | ä |"]
    (tmp_path / "t.tsv").write_text("a\tb\n1\t2\n")
    assert READERS[".tsv"](tmp_path / "t.tsv").blocks[0].text.splitlines()[2] == "| 1 | 2 |"
    (tmp_path / "one.csv").write_text("name\nann\nbob\n")  # one column: nothing to sniff, still read
    assert READERS[".csv"](tmp_path / "one.csv").blocks[0].text.splitlines()[3] == "| bob |"


def test_csv_not_utf8_binary_or_empty(tmp_path: Path) -> None:
    (tmp_path / "latin.csv").write_bytes("name,city\nJosé,Zürich\n".encode("cp1252"))
    with pytest.raises(DatasetError) as err:
        load_file(tmp_path / "latin.csv")
    assert err.value.path == str(tmp_path / "latin.csv") and "not UTF-8" in str(err.value) and err.value.hint
    (tmp_path / "bin.csv").write_bytes(b"a,b\n\x00\x01,2\n")
    with pytest.raises(DatasetError, match=r"bin\.csv: binary content"):
        load_file(tmp_path / "bin.csv")
    (tmp_path / "empty.csv").write_text("\n \n")
    with pytest.raises(DatasetError, match=r"empty\.csv: nothing to ingest"):
        load_file(tmp_path / "empty.csv")


def test_workbook_with_only_empty_sheets_is_refused(tmp_path: Path) -> None:
    openpyxl.Workbook().save(tmp_path / "blank.xlsx")
    with pytest.raises(DatasetError, match=r"blank\.xlsx: nothing to ingest"):
        load_file(tmp_path / "blank.xlsx")


def test_end_to_end_workbook_warnings_reach_the_ingest_errors(tmp_path: Path) -> None:
    errors: list[str] = []
    (doc,) = load_file(_workbook(tmp_path / "w.xlsx"), errors=errors)
    assert doc.title == "Spare parts" and doc.metadata["format"] == "xlsx"
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path / 'w.xlsx'}: warning: sheet 'Costs 2024'")
    assert [(c.metadata["kind"], c.metadata["section"]) for c in chunk_document(doc)] == [
        ("table", "Costs 2024"), ("table", "Notes")]
