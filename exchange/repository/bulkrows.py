"""Appending many rows to one table at driver speed, inside the caller's transaction.

The ingest writes tens of thousands of search index and consent rows per batch of a few
hundred resources. Through SQLAlchemy Core's ``executemany`` every row is a dict whose
values go through the compiled statement's parameter processing, and on PostgreSQL
the rows are then rendered into large multi-row ``INSERT ... VALUES`` texts that
psycopg parses again -- most of the ingest's database cost on the client. Here:

* **PostgreSQL**: ``COPY table (columns) FROM STDIN`` (PostgreSQL 15 docs, SQL COPY;
  psycopg 3 "Using COPY TO and COPY FROM"), rows formatted by psycopg's C adapters,
  in the same transaction as everything else the write does. COPY fires the same
  constraints and indexes as INSERT.
* **SQLite**: the DB-API ``executemany`` of one prepared ``INSERT`` (sqlite3 steps the
  statement once per row in C), values passed through the columns' own SQLAlchemy bind
  processors, so what is stored is byte for byte what a Core insert stores (e.g.
  datetimes in SQLAlchemy's SQLite text format).

Rows are tuples in the order of ``columns``; NULL is ``None``. Errors surface as
SQLAlchemy ``DBAPIError`` like any other statement's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError

_Proc = Callable[[Any], Any] | None
_sqlite_procs: dict[tuple[str, tuple[str, ...]], tuple[_Proc, ...]] = {}


def insert_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (tuples ordered as ``columns``) into ``table``."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        _copy_pg(conn, table, columns, rows)
    else:
        _executemany(conn, table, columns, rows)


def sqlite_value(conn: Connection, table: Table, column: str, value: Any) -> Any:
    """``value`` as a Core statement would bind it to ``table.column`` on this dialect."""
    proc = table.c[column].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return proc(value) if proc is not None and value is not None else value


_SAMPLES = (datetime(1, 1, 1), datetime(2026, 10, 2, 8, 30, 0, 5),
            datetime(2026, 10, 2, 9, 30, tzinfo=timezone(timedelta(hours=1))), datetime(9999, 12, 31, 23, 59, 59))


def _fast(proc: _Proc) -> _Proc:
    """SQLAlchemy's SQLite datetime processor formats in Python; ``isoformat`` does the
    same in C. Used only when it gives the very same text (wall time, microseconds, the
    offset dropped as SQLAlchemy drops it) for sample values, else the original."""
    if proc is None:
        return None

    def iso(value: Any) -> Any:
        if type(value) is datetime:
            return (value if value.tzinfo is None else value.replace(tzinfo=None)).isoformat(" ", "microseconds")
        return proc(value)

    try:
        same = all(iso(v) == proc(v) for v in _SAMPLES)
    except Exception:  # noqa: BLE001 - not a datetime processor
        same = False
    return iso if same else proc


def _executemany(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    key = (table.name, tuple(columns))
    procs = _sqlite_procs.get(key)
    if procs is None:
        procs = tuple(_fast(table.c[c].type.dialect_impl(conn.dialect).bind_processor(conn.dialect))
                      for c in columns)
        _sqlite_procs[key] = procs
    live = [(i, p) for i, p in enumerate(procs) if p is not None]
    if live:
        def convert(row: tuple[Any, ...]) -> tuple[Any, ...]:
            out = list(row)
            for i, p in live:
                if out[i] is not None:
                    out[i] = p(out[i])
            return tuple(out)

        rows = [convert(r) for r in rows]
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    conn.exec_driver_sql(sql, list(rows))


def _copy_pg(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    import psycopg

    sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    raw = conn.connection.driver_connection
    try:
        with raw.cursor() as cur, cur.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc
