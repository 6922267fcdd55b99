"""adapters.csvkit: the shared CSV reader and record helpers (issue 9, CSV adapters)."""

from __future__ import annotations

from pathlib import Path

from adapters.base import RecordError, SourceRecord
from adapters.csvkit import CsvRow, locate_files, read_csv, rows_with_repeats

COLS = ("ID", "NAME", "NOTE")


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_rows_keep_their_starting_line_and_quoted_cells_may_span_lines(tmp_path: Path) -> None:
    p = write(tmp_path, "a.csv", b'ID,NAME,NOTE\r\n1,Ren\xe9e,"two\r\nlines"\r\n\r\n2,Bob,x\r\n')
    rows = list(read_csv(p, encoding="cp1252", expected=COLS, key_columns=("ID",)))
    assert all(isinstance(r, CsvRow) for r in rows)
    assert [(r.line, r.cells["NAME"]) for r in rows] == [(2, "Renée"), (5, "Bob")]
    assert rows[0].cells["NOTE"] == "two\r\nlines"
    assert str(rows[1].location) == "a.csv, line 5"


def test_each_defective_row_is_reported_with_its_line_and_id(tmp_path: Path) -> None:
    data = ("ID,NAME,NOTE\n1,ok,x\n2,short\n3,caf\u00e9,utf8 in a cp1252 file\n4,bad\x81byte,x\n5,ok,y\n")
    p = write(tmp_path, "b.csv", data.encode("utf-8").replace(b"\xc2\x81", b"\x81"))
    out = list(read_csv(p, encoding="cp1252", expected=COLS, key_columns=("ID",), id_prefix="thing"))
    errors = [r for r in out if isinstance(r, RecordError)]
    good = [r.cells["ID"] for r in out if isinstance(r, CsvRow)]
    assert good == ["1", "5"]
    assert [(e.location.line, e.source_id) for e in errors] == [(3, "thing/2"), (4, "thing/3"), (5, "thing/4")]
    assert "2 cells, header has 3" in errors[0].reason
    assert "UTF-8" in errors[1].reason and "0x81" in errors[2].reason


def test_a_byte_order_mark_means_utf8_and_missing_key_column_skips_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, "c.csv", b"\xef\xbb\xbfID,NAME,NOTE\n1,Ren\xc3\xa9e,\n")
    (row,) = read_csv(p, encoding="cp1252", expected=COLS, key_columns=("ID",))
    assert isinstance(row, CsvRow) and row.cells["NAME"] == "Renée"
    q = write(tmp_path, "d.csv", b"NAME,NOTE\nx,y\n")
    (err,) = read_csv(q, encoding="utf-8", expected=COLS, key_columns=("ID",))
    assert isinstance(err, RecordError) and err.element == "ID" and "file skipped" in err.reason


def test_files_found_case_insensitively_and_repeats_marked(tmp_path: Path) -> None:
    p = write(tmp_path, "Persons.CSV", b"ID,NAME,NOTE\n1,a,x\n1,a,x\n1,b,x\n,c,x\n")
    found = locate_files([tmp_path], ["persons.csv", "alerts.csv"])
    assert found == {"persons.csv": p, "alerts.csv": None}
    out = list(rows_with_repeats(read_csv(p, encoding="utf-8", expected=COLS), "person", "ID"))
    recs = [r for r in out if isinstance(r, SourceRecord)]
    assert [r.source_id for r in recs] == ["person/1"] * 3
    assert "_repeat_of" not in recs[0].data
    assert (recs[1].data["_repeat_of"], recs[1].data["_repeat_same"]) == (2, True)
    assert (recs[2].data["_repeat_of"], recs[2].data["_repeat_same"]) == (3, False)
    (err,) = [r for r in out if isinstance(r, RecordError)]
    assert err.location.line == 5 and err.element == "ID"
