"""From CSV rows to source records: finding the extract's files, and repeated rows.

Report tools that produce nightly CSV extracts name files inconsistently
(``Persons.CSV``) and sometimes write one row twice. :func:`locate_files` finds each
expected file among the paths given (files or directories, case-insensitive);
:func:`rows_with_repeats` turns :class:`adapters.csvkit.reader.CsvRow` objects into
:class:`adapters.base.SourceRecord` objects keyed ``{kind}/{id}`` and marks a repeat of
an id with ``_repeat_of`` (the first row's line) and ``_repeat_same`` (identical
cells), so the adapter can report it (docs/adapters.md, "Reading the source").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from adapters.base import MappingContext, RecordError, SourceLocation, SourceRecord
from adapters.csvkit.reader import CsvRow, read_csv


def locate_files(paths: Sequence[Path], names: Sequence[str]) -> dict[str, Path | None]:
    """Find each expected file (case-insensitive name) among the given files/directories."""
    found: dict[str, Path | None] = {n: None for n in names}
    candidates: list[Path] = []
    for p in map(Path, paths):
        candidates.extend(sorted(p.iterdir()) if p.is_dir() else [p])
    for c in candidates:
        key = c.name.lower()
        if key in found and found[key] is None:
            found[key] = c
    return found


def rows_with_repeats(
    rows: Iterator[CsvRow | RecordError], kind: str, key: str
) -> Iterator[SourceRecord | RecordError]:
    """Turn rows into records; mark exact repeats and conflicting repeats of an id."""
    seen: dict[str, tuple[int, str]] = {}
    for row in rows:
        if isinstance(row, RecordError):
            yield row
            continue
        rid = row.cells.get(key, "")
        if not rid:
            yield RecordError(row.location, f"{key} is empty: the row cannot be identified", key)
            continue
        digest = hashlib.sha256(repr(sorted(row.cells.items())).encode()).hexdigest()
        data: dict[str, Any] = dict(row.cells)
        if rid in seen:
            first_line, first_digest = seen[rid]
            data["_repeat_of"] = first_line
            data["_repeat_same"] = first_digest == digest
        seen[rid] = (row.line, digest)
        yield SourceRecord(f"{kind}/{rid}", kind, data, row.location)


def extract_records(
    paths: Sequence[Path], files: dict[str, tuple[Any, ...]], *, encoding: str
) -> Iterator[tuple[str, SourceRecord | RecordError]]:
    """Every expected file of a multi-file extract, in the order of ``files``
    (``file name -> (kind, key column, expected columns, ...)``): a RecordError for a file
    missing from the extract, else its rows as records (repeats marked), with their kind."""
    found = locate_files(paths, list(files))
    for fname, (kind, key, expected, *_rest) in files.items():
        path = found[fname]
        if path is None:
            yield kind, RecordError(SourceLocation(fname), "file missing from the extract: none of its records were read")
            continue
        rows = read_csv(path, encoding=encoding, expected=expected, key_columns=(key,), id_prefix=kind)
        for item in rows_with_repeats(rows, kind, key):
            yield kind, item


def note_repeat(record: SourceRecord, ctx: MappingContext) -> None:
    """Report a repeated row (marked by :func:`rows_with_repeats`) in the ingest report."""
    data = record.data
    if "_repeat_of" not in data:
        return
    if data["_repeat_same"]:
        ctx.warnings.append(f"info: repeated row (same as line {data['_repeat_of']}); ignored")
    else:
        ctx.warnings.append(f"{record.source_id} also on line {data['_repeat_of']} with different "
                            "values; this later row wins")
