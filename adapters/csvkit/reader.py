"""Reading CSV extracts row by row, keeping each row's place in the source.

Shared by the CSV adapters (social care, community). They receive files as their source systems
produce them: a fixed encoding (Windows-1252 or UTF-8), CRLF or LF line ends,
RFC 4180 quoting (a quoted cell may span lines), a header row. This module streams a
file and yields, for each data row, either a :class:`CsvRow` (a dict of the header's
columns, with the physical line the row starts on) or a
:class:`adapters.base.RecordError` naming the file, the line and the defect:

* a line whose bytes are not valid in the declared encoding (the row is not trusted);
* a row with fewer or more cells than the header (a truncated or spliced line),
  including a quoted cell left open at end of file;
* a header lacking expected columns (reported once, on line 1; if a *key* column is
  missing no row of the file can be identified and the file is skipped).

A UTF-8 byte-order mark is honoured: the file is then read as UTF-8 whatever the
declared encoding (some report tools add one when re-saving an export).
Blank lines are ignored. Reference: RFC 4180 (CSV), FHIR R4 is not involved here.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.base import RecordError, SourceLocation

_BOM = codecs.BOM_UTF8


@dataclass
class CsvRow:
    """One data row: its cells by column name and where it starts in the file."""

    file: str
    line: int
    cells: dict[str, str]

    @property
    def location(self) -> SourceLocation:
        return SourceLocation(self.file, self.line)


@dataclass
class _Line:
    number: int
    text: str
    bad: str | None  # decoding problem, if any


def _decoded_lines(path: Path, encoding: str) -> Iterator[_Line]:
    """Physical lines of a file, decoded one by one so a bad byte costs one line only."""
    with path.open("rb") as fh:
        first = True
        for number, raw in enumerate(fh, start=1):
            enc = encoding
            if first:
                first = False
                if raw.startswith(_BOM):
                    raw = raw[len(_BOM) :]
                    encoding = enc = "utf-8"
            try:
                text = raw.decode(enc)
            except UnicodeDecodeError as exc:
                reason = (
                    f"byte 0x{raw[exc.start]:02X} at column {exc.start + 1} is not valid {enc}"
                )
                yield _Line(number, raw.decode(enc, errors="replace"), reason)
                continue
            if enc != "utf-8" and not raw.isascii() and _is_utf8(raw):
                # multi-byte UTF-8 sequences are all but impossible in real single-byte
                # text: this line was written in UTF-8 and would load as mojibake
                yield _Line(number, text, f"line is UTF-8 encoded, the extract is declared {enc}")
                continue
            yield _Line(number, text, None)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _LineFeeder:
    """Feeds decoded lines to :mod:`csv` and remembers which lines a row consumed."""

    def __init__(self, lines: Iterable[_Line]) -> None:
        self._lines = iter(lines)
        self.consumed: list[_Line] = []

    def __iter__(self) -> _LineFeeder:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.consumed.append(line)
        return line.text


def read_csv(
    path: Path,
    *,
    encoding: str,
    expected: Sequence[str],
    key_columns: Sequence[str] = (),
    id_prefix: str | None = None,
) -> Iterator[CsvRow | RecordError]:
    """Yield the rows of one CSV file (see the module docstring for what is reported).

    With ``id_prefix``, a defective row whose first key cell can still be read is
    reported with ``source_id`` ``"{id_prefix}/{key}"`` (so the pipeline knows which
    record was defective, and does not take it for a deletion).
    """
    name = path.name
    feeder = _LineFeeder(_decoded_lines(path, encoding))
    reader = csv.reader(feeder, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        yield RecordError(SourceLocation(name, 1), "file is empty: no header row")
        return
    except csv.Error as exc:
        yield RecordError(SourceLocation(name, 1), f"header row cannot be parsed: {exc}")
        return
    header = [h.strip() for h in header]
    feeder.consumed.clear()
    missing = [c for c in expected if c not in header]
    if missing:
        missing_keys = [c for c in missing if c in key_columns]
        consequence = (
            "no row can be identified; file skipped"
            if missing_keys
            else "those cells are read as not recorded"
        )
        yield RecordError(
            SourceLocation(name, 1, detail="header"),
            f"missing column(s) {', '.join(missing)}: {consequence}",
            element=",".join(missing),
        )
        if missing_keys:
            return
    width = len(header)
    key_at = header.index(key_columns[0]) if key_columns and key_columns[0] in header else None

    def source_id(cells: list[str]) -> str | None:
        if id_prefix is None or key_at is None or len(cells) <= key_at:
            return None
        key = cells[key_at].strip()
        return f"{id_prefix}/{key}" if key and "\ufffd" not in key else None

    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            start = feeder.consumed[0].number if feeder.consumed else reader.line_num
            feeder.consumed.clear()
            yield RecordError(SourceLocation(name, start), f"row cannot be parsed: {exc}")
            continue
        lines, feeder.consumed = feeder.consumed, []
        if not lines:
            return
        start = lines[0].number
        if not cells or all(not c.strip() for c in cells) and len(cells) <= 1:
            continue  # blank line
        bad = next((ln for ln in lines if ln.bad), None)
        if bad is not None:
            yield RecordError(
                SourceLocation(name, bad.number),
                f"wrong encoding: {bad.bad}",
                source_id=source_id(cells),
            )
            continue
        if len(cells) != width:
            ends_open = lines[-1].text and not lines[-1].text.endswith(("\n", "\r"))
            hint = " (truncated line)" if len(cells) < width or ends_open else ""
            yield RecordError(
                SourceLocation(name, start),
                f"row has {len(cells)} cells, header has {width}{hint}",
                source_id=source_id(cells),
            )
            continue
        yield CsvRow(name, start, {h: c.strip() for h, c in zip(header, cells, strict=True)})
