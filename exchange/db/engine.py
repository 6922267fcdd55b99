"""Engines and transactions for SQLite (embedded, WAL) and PostgreSQL (production).

Reads run in ordinary transactions; writes run in :func:`write_tx`, which on SQLite
starts with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the database lock
instead of failing half-way with "database is locked", and on PostgreSQL relies on row
locks taken by the write path (``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from exchange.outcome import Unavailable


def normalise_url(url: str) -> str:
    """Map ``postgres://`` / ``postgresql://`` to the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=pool_size, max_overflow=pool_size)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # noqa: ANN001
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: in WAL mode NORMAL skips the fsync at commit, so the last commits
            # could be lost to a power cut; we acknowledge writes and promise durable
            # audit records (measured: about 0.13 ms more per commit on this machine).
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # noqa: ANN001
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={"connect_timeout": 5},
    )


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """A read transaction (one consistent snapshot on PostgreSQL's REPEATABLE READ)."""
    try:
        with engine.connect() as conn:
            if not is_sqlite(engine):
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn
    except (OperationalError, DBAPIError) as exc:
        if _is_connectivity(exc):
            raise Unavailable("The record store is temporarily unavailable") from exc
        raise


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction; committed on success, rolled back on any exception."""
    try:
        with engine.connect() as conn:
            if is_sqlite(engine):
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn
    except (OperationalError, DBAPIError) as exc:
        if _is_connectivity(exc):
            raise Unavailable("The record store is temporarily unavailable") from exc
        raise


def _is_connectivity(exc: DBAPIError) -> bool:
    if getattr(exc, "connection_invalidated", False):
        return True
    text = str(exc.orig if exc.orig is not None else exc).lower()
    return any(
        s in text
        for s in (
            "connection refused",
            "could not connect",
            "server closed the connection",
            "terminating connection",
            "connection is closed",
            "the database system is",
            "database is locked",
            "timeout",
            "connection failed",
            "consuming input failed",
            "no connection to the server",
        )
    )
