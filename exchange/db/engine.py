"""Engines and transactions for SQLite (embedded, WAL) and PostgreSQL (production).

Reads run in ordinary transactions; writes run in :func:`write_tx`, which on SQLite
starts with ``BEGIN IMMEDIATE`` so that concurrent writers queue on the database lock
instead of failing half-way with "database is locked", and on PostgreSQL relies on row
locks taken by the write path (``SELECT ... FOR UPDATE``).

Time limits (issue 11: a hung database must not hang the exchange; docs/architecture.md,
"Time limits"). Every wait on the database is bounded:

* PostgreSQL connections start with the **request** limits (libpq ``options``:
  ``statement_timeout``, ``lock_timeout``, ``idle_in_transaction_session_timeout``;
  PostgreSQL 15 docs §20.11.2), so :func:`read_tx` / :func:`write_tx` pay nothing extra.
  Any other use of a pooled connection (migrations, bulk ingest, the MLLP inbox worker,
  or ``read_tx(..., profile=JOB)``) is a **job**: at checkout the connection's session
  is switched to the longer job limits (``SET``, outside any transaction so a rollback
  cannot undo it), and back with ``RESET`` when a request next takes it (§19.1.3). A
  switch costs one round trip and happens only when the profile changes.
* TCP keepalives and ``tcp_user_timeout`` (libpq §34.1.2) make a peer that vanished
  (dropped packets, a partition) an error after tens of seconds instead of never;
  ``connect_timeout`` bounds connecting.
* SQLite: ``busy_timeout`` (SQLite ``sqlite3_busy_timeout``) bounds the wait for the
  write lock, per profile (set at checkout, likewise only when the profile changes).
* The connection pool's own wait (``pool_timeout``) is bounded too.
* Last resort, for a server that does not answer at all - not even to the cancel its
  own ``statement_timeout`` sends, as with a stuck disk or a frozen host, where TCP
  keepalives are still answered by the kernel: a :class:`Watchdog` cuts (``shutdown``)
  the socket of a request transaction that has waited on one statement for more than
  ``request_deadline_s``, and of a pool liveness check (which replaces
  ``pool_pre_ping``) after ``connect_timeout_s``. The waiting thread then gets a
  connection error (503) and the pool drops the connection.

When a limit is hit, :func:`read_tx` / :func:`write_tx` turn the error into
:class:`exchange.outcome.Unavailable` (503, ``Retry-After``) in one place; the
transaction has been rolled back, so a write that timed out changed nothing.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from exchange.outcome import Issue, Unavailable
from exchange.settings import Settings

log = logging.getLogger(__name__)

#: the time-limit profiles: request transactions, and everything else
REQUEST = "request"
JOB = "job"
_PROFILE_KEY = "exchange_limits"  # the profile a pooled PostgreSQL session is set to
_DEADLINE_KEY = "exchange_deadline_s"  # its request deadline (record.info, set at checkout)
POOL_TIMEOUT_S = 10

# PostgreSQL SQLSTATEs (PostgreSQL 15 docs, Appendix A)
_QUERY_CANCELED = "57014"  # statement_timeout (or a cancel request)
_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout
_IDLE_IN_TX_TIMEOUT = "25P03"  # idle_in_transaction_session_timeout (session ended)
_PQTRANS_ACTIVE = 1  # libpq PQtransactionStatus: a command is in progress
# SQLite primary result codes (sqlite.org/rescode.html)
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


@dataclass(frozen=True)
class DbLimits:
    """The database time limits of one engine (see :class:`exchange.settings.Settings`)."""

    statement_timeout_ms: int = 15_000
    lock_timeout_ms: int = 5_000
    idle_in_transaction_timeout_ms: int = 60_000
    job_statement_timeout_ms: int = 1_800_000
    job_lock_timeout_ms: int = 10_000
    job_idle_in_transaction_timeout_ms: int = 600_000
    connect_timeout_s: int = 5
    keepalives_idle_s: int = 10
    keepalives_interval_s: int = 5
    keepalives_count: int = 3
    tcp_user_timeout_ms: int = 25_000
    request_deadline_s: int = 45
    sqlite_busy_timeout_ms: int = 10_000
    sqlite_job_busy_timeout_ms: int = 60_000

    @classmethod
    def from_settings(cls, s: Settings) -> DbLimits:
        return cls(
            statement_timeout_ms=s.db_statement_timeout_ms,
            lock_timeout_ms=s.db_lock_timeout_ms,
            idle_in_transaction_timeout_ms=s.db_idle_in_transaction_timeout_ms,
            job_statement_timeout_ms=s.db_job_statement_timeout_ms,
            job_lock_timeout_ms=s.db_job_lock_timeout_ms,
            job_idle_in_transaction_timeout_ms=s.db_job_idle_in_transaction_timeout_ms,
            connect_timeout_s=s.db_connect_timeout_s,
            keepalives_idle_s=s.db_keepalives_idle_s,
            keepalives_interval_s=s.db_keepalives_interval_s,
            keepalives_count=s.db_keepalives_count,
            tcp_user_timeout_ms=s.db_tcp_user_timeout_ms,
            request_deadline_s=s.db_request_deadline_s,
            sqlite_busy_timeout_ms=s.sqlite_busy_timeout_ms,
            sqlite_job_busy_timeout_ms=s.sqlite_job_busy_timeout_ms,
        )

    def pg_settings(self, profile: str) -> dict[str, int]:
        """The PostgreSQL run-time parameters (milliseconds) of one profile."""
        if profile == REQUEST:
            return {"statement_timeout": self.statement_timeout_ms, "lock_timeout": self.lock_timeout_ms,
                    "idle_in_transaction_session_timeout": self.idle_in_transaction_timeout_ms}
        return {"statement_timeout": self.job_statement_timeout_ms, "lock_timeout": self.job_lock_timeout_ms,
                "idle_in_transaction_session_timeout": self.job_idle_in_transaction_timeout_ms}

    def sqlite_busy_ms(self, profile: str) -> int:
        return self.sqlite_busy_timeout_ms if profile == REQUEST else self.sqlite_job_busy_timeout_ms


class StoreTimeout(Unavailable):
    """503 with issue code ``timeout`` (a kind of ``transient`` in the R4 IssueType
    hierarchy): a database time limit was hit and the transaction was rolled back."""

    def __init__(self, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.code = "timeout"
        self.issues = [Issue("timeout", diagnostics)]


class Watchdog:
    """Cuts the socket of a PostgreSQL connection that has waited on the server too long.

    A connection is cut when it has been waiting for the server (libpq transaction status
    ACTIVE: a command sent, its result not yet in) at every look for longer than its
    deadline - a per-statement bound, so a long transaction of many short statements (an
    audit verify walking the log) is never cut, while a statement the server never
    answers is. ``arm`` / ``disarm`` are a dictionary insert and delete under a lock; one
    daemon thread looks every ``period`` seconds. Cutting happens under the same lock as
    ``disarm``, so a connection whose transaction has ended (and which may already serve
    someone else) is never cut."""

    def __init__(self, period: float = 0.25) -> None:
        self.period = period
        self.cuts = 0
        self._lock = threading.Lock()
        # token -> [seconds, dbapi connection, what, waiting since (None: not waiting)]
        self._armed: dict[int, list] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, dbapi_conn: object, seconds: float, what: str) -> int:
        token = next(self._ids)
        with self._lock:
            self._armed[token] = [seconds, dbapi_conn, what, None]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-watchdog", daemon=True)
                self._thread.start()
        return token

    def disarm(self, token: int) -> None:
        with self._lock:
            self._armed.pop(token, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.period)
            with self._lock:
                self.look(time.monotonic())

    def look(self, now: float) -> None:
        """One look at every armed connection (called with the lock held)."""
        for token, entry in list(self._armed.items()):
            seconds, conn, what, since = entry
            if not _waiting_on_server(conn):
                entry[3] = None
            elif since is None:
                entry[3] = now  # may have started up to one period ago: cut late, never early
            elif now - since >= seconds:
                del self._armed[token]
                if _cut(conn):
                    self.cuts += 1
                    log.error("database did not answer %s within %s s: connection cut", what, seconds)


def _waiting_on_server(dbapi_conn: object) -> bool:
    try:
        return dbapi_conn.pgconn.transaction_status == _PQTRANS_ACTIVE  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - closed or gone: nothing to wait for
        return False


def _cut(dbapi_conn: object) -> bool:
    """Shut the connection's socket down (both ways): a thread blocked reading from it
    wakes up with "server closed the connection"; libpq and the pool do the rest."""
    try:
        fd = dbapi_conn.pgconn.socket  # type: ignore[attr-defined]
        dup = os.dup(fd)
    except Exception:  # noqa: BLE001 - already closed: nothing to cut
        return False
    try:
        with socket.socket(fileno=dup) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        return False
    return True


#: one watchdog for every PostgreSQL engine of the process
WATCHDOG = Watchdog()


def normalise_url(url: str) -> str:
    """Map ``postgres://`` / ``postgresql://`` to the psycopg 3 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


#: the profile of the pool checkout this thread is making (set only by read_tx / write_tx)
_checkout = threading.local()


def _checkout_profile() -> str:
    return getattr(_checkout, "profile", None) or JOB


def _connect(engine: Engine, profile: str) -> Connection:
    _checkout.profile = profile
    try:
        return engine.connect()
    finally:
        _checkout.profile = None


def make_engine(url: str, *, pool_size: int = 10, limits: DbLimits | None = None) -> Engine:
    """An engine with the time limits of ``limits`` (default: from ``EXCHANGE_*``)."""
    limits = limits or DbLimits.from_settings(Settings.from_env())
    url = normalise_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return _sqlite_engine(url, u.database, pool_size, limits)
    return _postgres_engine(url, u.query, pool_size, limits)


def _sqlite_engine(url: str, database: str | None, pool_size: int, limits: DbLimits) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    job_busy = limits.sqlite_busy_ms(JOB)
    # a file database pools as many connections as PostgreSQL gets (3d67b6a); an
    # in-memory one keeps SQLAlchemy's one-connection-per-thread pool
    pooling = {"pool_size": pool_size, "max_overflow": pool_size} if database and database != ":memory:" else {}
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": job_busy / 1000},
                           **pooling)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, record):  # noqa: ANN001
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: in WAL mode NORMAL skips the fsync at commit, so the last commits
        # could be lost to a power cut; we acknowledge writes and promise durable
        # audit records (measured: about 0.13 ms more per commit on this machine).
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(job_busy)}")
        cur.close()
        record.info["busy_ms"] = job_busy

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn, record, _proxy):  # noqa: ANN001
        # in force before BEGIN IMMEDIATE, which is what waits for the lock
        busy = limits.sqlite_busy_ms(_checkout_profile())
        if record.info.get("busy_ms") != busy:
            dbapi_conn.execute(f"PRAGMA busy_timeout={int(busy)}")
            record.info["busy_ms"] = busy

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _pg_assignments(values: dict[str, int]) -> str:
    return " ".join(f"-c {name}={int(ms)}" for name, ms in values.items())


def _postgres_engine(url: str, query: dict, pool_size: int, limits: DbLimits) -> Engine:
    connect_args: dict[str, object] = {
        "connect_timeout": limits.connect_timeout_s,
        "keepalives": 1,
        "keepalives_idle": limits.keepalives_idle_s,
        "keepalives_interval": limits.keepalives_interval_s,
        "keepalives_count": limits.keepalives_count,
        "tcp_user_timeout": limits.tcp_user_timeout_ms,
    }
    # parameters spelled out in the URL win over these defaults
    connect_args = {k: v for k, v in connect_args.items() if k not in query}
    # connection defaults = request limits; an ``options`` in the URL comes later, so wins
    options = _pg_assignments(limits.pg_settings(REQUEST))
    if query.get("options"):
        options += " " + str(query["options"])
    connect_args["options"] = options
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,  # the checkout listener pings, under the watchdog
        pool_timeout=POOL_TIMEOUT_S,
        connect_args=connect_args,
    )
    job_session = "; ".join(f"SET {name} = {int(ms)}" for name, ms in limits.pg_settings(JOB).items())
    back_to_request = "; ".join(f"RESET {name}" for name in limits.pg_settings(JOB))  # -> options

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn, record, _proxy):  # noqa: ANN001
        # A liveness check (what pool_pre_ping did, but bounded by the watchdog) and the
        # time-limit profile. A pool event, not a "begin" listener: any Connection-level
        # listener costs every transaction about 20 us of CPU; switching the profile costs
        # a round trip only when it changes, which in practice happens in job processes.
        want = _checkout_profile()
        record.info[_DEADLINE_KEY] = limits.request_deadline_s
        switch = record.info.get(_PROFILE_KEY, REQUEST) != want
        token = WATCHDOG.arm(dbapi_conn, limits.connect_timeout_s, "the pool's liveness check")
        try:
            before = dbapi_conn.autocommit
            dbapi_conn.autocommit = True  # no implicit BEGIN; a SET no rollback can undo
            try:
                # an empty query (what pool_pre_ping sends), or the profile switch
                dbapi_conn.execute((job_session if want == JOB else back_to_request) if switch else ";")
            finally:
                dbapi_conn.autocommit = before
            if switch:
                record.info[_PROFILE_KEY] = want
        except Exception as exc:
            # dead (the server restarted, or the watchdog cut it): like pool_pre_ping,
            # drop every older pooled connection and let the pool connect afresh
            raise InvalidatePoolError(f"pooled connection unusable: {exc}") from exc
        finally:
            WATCHDOG.disarm(token)

    return engine


def _arm(conn: Connection, profile: str) -> int | None:
    """Arm the watchdog for a PostgreSQL request transaction (None otherwise)."""
    if profile != REQUEST:
        return None
    seconds = conn.connection.info.get(_DEADLINE_KEY)  # PostgreSQL engines only
    if not seconds:
        return None
    return WATCHDOG.arm(conn.connection.dbapi_connection, seconds, "a request transaction")


@contextmanager
def read_tx(engine: Engine, *, profile: str = REQUEST) -> Iterator[Connection]:
    """A read transaction (one consistent snapshot on PostgreSQL's REPEATABLE READ).

    ``profile=JOB`` gives it the longer job time limits (exports, reports)."""
    options = {} if is_sqlite(engine) else {"isolation_level": "REPEATABLE READ"}
    with _transaction(engine, profile, options) as conn:
        yield conn


@contextmanager
def write_tx(engine: Engine, *, profile: str = REQUEST) -> Iterator[Connection]:
    """A write transaction; committed on success, rolled back on any exception."""
    options = {"sqlite_begin": "IMMEDIATE"} if is_sqlite(engine) else {}
    with _transaction(engine, profile, options) as conn:
        yield conn


@contextmanager
def _transaction(engine: Engine, profile: str, options: dict[str, str]) -> Iterator[Connection]:
    """One transaction under the profile's time limits (watchdog armed while it runs);
    a failure that means the database is unavailable becomes a 503 (:func:`unavailable_for`)."""
    try:
        with _connect(engine, profile) as conn:
            if options:
                conn = conn.execution_options(**options)
            token = _arm(conn, profile)
            try:
                with conn.begin():
                    yield conn
            finally:
                if token is not None:
                    WATCHDOG.disarm(token)
    except (DBAPIError, PoolTimeout) as exc:
        mapped = unavailable_for(exc)
        if mapped is None:
            raise
        raise mapped from exc


def unavailable_for(exc: BaseException) -> Unavailable | None:
    """The 503 a database failure means, or None when it is not an availability problem.

    Time limits (statement, lock, SQLite busy) become :class:`StoreTimeout`; a lost or
    refused connection, a session the server ended and an exhausted pool become
    :class:`Unavailable`. Anything else (constraint violations, serialization failures,
    bugs) is left to the caller."""
    if isinstance(exc, PoolTimeout) and not isinstance(exc, DBAPIError):
        return Unavailable("No connection to the record store became free in time; try again")
    if not isinstance(exc, DBAPIError):
        return None
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate == _QUERY_CANCELED:
        return StoreTimeout("A record store query exceeded its time limit and was cancelled; "
                            "the transaction was rolled back")
    if sqlstate == _LOCK_NOT_AVAILABLE:
        return StoreTimeout("The records needed are locked by another database session beyond the time limit; "
                            "the transaction was rolled back")
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return StoreTimeout("The record store is busy (its write lock was held beyond the time limit); "
                            "the transaction was rolled back")
    if sqlstate == _IDLE_IN_TX_TIMEOUT or _is_connectivity(exc):
        return Unavailable("The record store is temporarily unavailable")
    return None


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
