"""Another database session that holds locks, for the hung-database fault tests
(issue 11, "Faults"; docs/architecture.md, "Time limits").

``pg_table_lock`` takes ``LOCK TABLE ... IN ACCESS EXCLUSIVE MODE`` (PostgreSQL 15 docs
§13.3.1: conflicts with every other lock, so even plain SELECTs wait) in its own
session and keeps it until the ``with`` block ends, like an ``ALTER TABLE`` or a stuck
maintenance job would. ``sqlite_write_lock`` holds SQLite's write lock with
``BEGIN IMMEDIATE`` on its own connection (WAL readers are not blocked).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg


def _libpq_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


@contextmanager
def pg_table_lock(url: str, tables: Sequence[str]) -> Iterator[psycopg.Connection]:
    """Hold ACCESS EXCLUSIVE locks on ``tables`` in a separate session until exit."""
    conn = psycopg.connect(_libpq_url(url), autocommit=False, connect_timeout=10)
    try:
        names = ", ".join(psycopg.sql.Identifier(t).as_string(conn) for t in tables)
        conn.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
        yield conn
    finally:
        conn.rollback()  # releases the locks
        conn.close()


def lock_waiters(url: str, table: str) -> int:
    """How many sessions are waiting for a lock on ``table`` right now."""
    with psycopg.connect(_libpq_url(url), autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                           "WHERE c.relname = %s AND NOT l.granted", (table,)).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def sqlite_write_lock(path: str) -> Iterator[sqlite3.Connection]:
    """Hold the SQLite database's write lock (``BEGIN IMMEDIATE``) until exit."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()
