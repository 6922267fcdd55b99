"""Database time limits (issue 11: a hung database must not hang the exchange).

Request transactions (read_tx / write_tx) run under the short request limits, everything
else under the longer job limits; a limit that is hit becomes a 503 OperationOutcome with
Retry-After, and a write that timed out changed nothing.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from exchange.db.engine import (
    JOB,
    WATCHDOG,
    DbLimits,
    StoreTimeout,
    make_engine,
    normalise_url,
    read_tx,
    unavailable_for,
    write_tx,
)
from exchange.db.tables import resource_current
from exchange.outcome import Unavailable
from exchange.settings import Settings

LIMITS = DbLimits(statement_timeout_ms=300, lock_timeout_ms=200, idle_in_transaction_timeout_ms=400,
                  job_statement_timeout_ms=120_000, job_lock_timeout_ms=60_000,
                  job_idle_in_transaction_timeout_ms=300_000, sqlite_busy_timeout_ms=200,
                  sqlite_job_busy_timeout_ms=45_000)


@pytest.fixture(scope="module")
def limited(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url, limits=LIMITS, pool_size=2)
    yield eng
    eng.dispose()


def _pg_only(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL setting")


def _sqlite_only(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("a SQLite setting")


def _pg_limits(conn) -> tuple[str, str, str]:  # noqa: ANN001
    return tuple(conn.exec_driver_sql(f"SHOW {name}").scalar()  # type: ignore[return-value]
                 for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"))


def _assert_503(exc: Unavailable, code: str) -> None:
    assert exc.status == 503
    assert exc.headers.get("Retry-After")
    outcome = exc.outcome()
    assert outcome["resourceType"] == "OperationOutcome"
    assert [i["code"] for i in outcome["issue"]] == [code]


def _current_count(engine: Engine) -> int:
    with read_tx(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(resource_current)).scalar_one())


def _insert_current(conn, res_id: str) -> None:  # noqa: ANN001
    conn.execute(resource_current.insert().values(res_type="Patient", res_id=res_id, version_id=1,
                                                  last_updated=func.now(), deleted=False, seq=0))


# -- settings ---------------------------------------------------------------------------


def test_limits_come_from_exchange_environment_variables() -> None:
    env = {"EXCHANGE_DB_STATEMENT_TIMEOUT_MS": "1500", "EXCHANGE_DB_LOCK_TIMEOUT_MS": "700",
           "EXCHANGE_DB_JOB_STATEMENT_TIMEOUT_MS": "0", "EXCHANGE_SQLITE_BUSY_TIMEOUT_MS": "900",
           "EXCHANGE_DB_KEEPALIVES_IDLE_S": "7"}
    limits = DbLimits.from_settings(Settings.from_env(env=env))
    assert (limits.statement_timeout_ms, limits.lock_timeout_ms, limits.job_statement_timeout_ms,
            limits.sqlite_busy_timeout_ms, limits.keepalives_idle_s) == (1500, 700, 0, 900, 7)


def test_defaults_bound_requests_and_give_jobs_longer() -> None:
    d = DbLimits.from_settings(Settings())
    assert 0 < d.lock_timeout_ms < d.statement_timeout_ms <= 15_000
    assert d.statement_timeout_ms < d.job_statement_timeout_ms
    assert d.statement_timeout_ms < d.idle_in_transaction_timeout_ms
    assert 0 < d.sqlite_busy_timeout_ms < d.sqlite_job_busy_timeout_ms
    assert d == DbLimits()  # the dataclass defaults and the settings defaults agree


# -- profiles ---------------------------------------------------------------------------


def test_request_transactions_get_request_limits_and_jobs_job_limits(limited: Engine) -> None:
    if limited.dialect.name == "sqlite":
        def busy(conn) -> int:  # noqa: ANN001
            return int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar())

        with read_tx(limited) as c:
            assert busy(c) == 200
        with limited.begin() as c:  # bulk ingest, migrations: their own transactions
            assert busy(c) == 45_000
        with write_tx(limited) as c:
            assert busy(c) == 200
        with write_tx(limited, profile=JOB) as c:
            assert busy(c) == 45_000
        return
    with read_tx(limited) as c:
        assert _pg_limits(c) == ("300ms", "200ms", "400ms")
    with limited.begin() as c:
        assert _pg_limits(c) == ("2min", "1min", "5min")
    with write_tx(limited) as c:  # the job's SET LOCAL ended with its transaction
        assert _pg_limits(c) == ("300ms", "200ms", "400ms")
    with read_tx(limited, profile=JOB) as c:
        assert _pg_limits(c) == ("2min", "1min", "5min")


def test_one_pooled_connection_switches_profiles_both_ways(db_url: str) -> None:
    """The profile is set on the pooled session at checkout; a rolled-back job must not
    undo it, and a request after a job must be back on the request limits."""
    eng = make_engine(db_url, limits=LIMITS, pool_size=1)
    sqlite = eng.dialect.name == "sqlite"

    def state(conn) -> tuple:  # noqa: ANN001
        if sqlite:
            return (conn.exec_driver_sql("PRAGMA busy_timeout").scalar(),)
        return (*_pg_limits(conn), conn.exec_driver_sql("SELECT pg_backend_pid()").scalar())

    request = (200,) if sqlite else ("300ms", "200ms", "400ms")
    job = (45_000,) if sqlite else ("2min", "1min", "5min")
    try:
        seen = []
        for _ in range(3):
            with read_tx(eng) as c:
                seen.append(state(c))
                assert seen[-1][:len(request)] == request
            with pytest.raises(RuntimeError), eng.begin() as c:
                seen.append(state(c))
                assert seen[-1][:len(job)] == job
                raise RuntimeError("the job fails and rolls back")
            with eng.begin() as c:
                assert state(c)[:len(job)] == job
            with write_tx(eng) as c:
                assert state(c)[:len(request)] == request
        if not sqlite:
            assert len({s[-1] for s in seen}) == 1  # one and the same session throughout
    finally:
        eng.dispose()


def test_autocommit_job_limits_do_not_leak_into_requests(limited: Engine) -> None:
    _pg_only(limited)
    for _ in range(3):  # pool of 2 + overflow: make sure the autocommit connection is reused
        with limited.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            assert _pg_limits(c) == ("2min", "1min", "5min")
        with read_tx(limited) as c:
            assert _pg_limits(c) == ("300ms", "200ms", "400ms")


def test_postgres_connections_use_tcp_keepalives(limited: Engine) -> None:
    _pg_only(limited)
    with limited.connect() as c:
        params = c.connection.dbapi_connection.info.get_parameters()
    assert params["keepalives"] == "1"
    assert (params["keepalives_idle"], params["keepalives_interval"], params["keepalives_count"]) == ("10", "5", "3")
    assert params["tcp_user_timeout"] == "25000"
    assert params["connect_timeout"] == "5"


def test_url_parameters_win_over_the_defaults(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("libpq parameters")
    eng = make_engine(db_url + "?options=-c%20statement_timeout%3D777&keepalives_idle=42", limits=LIMITS)
    try:
        with read_tx(eng) as c:
            assert _pg_limits(c)[0] == "777ms"
            assert c.connection.dbapi_connection.info.get_parameters()["keepalives_idle"] == "42"
    finally:
        eng.dispose()


# -- PostgreSQL: statement, lock and idle limits ------------------------------------------


def test_slow_statement_is_cancelled_as_503_timeout(limited: Engine) -> None:
    _pg_only(limited)
    with pytest.raises(StoreTimeout) as caught, read_tx(limited) as c:
        c.execute(text("SELECT pg_sleep(30)"))
    _assert_503(caught.value, "timeout")
    with read_tx(limited, profile=JOB) as c:  # a job may run longer than a request
        c.execute(text("SELECT pg_sleep(0.6)"))


def test_write_that_timed_out_changed_nothing(limited: Engine) -> None:
    _pg_only(limited)
    before = _current_count(limited)
    with pytest.raises(StoreTimeout), write_tx(limited) as c:
        _insert_current(c, "timed-out-write")
        c.execute(text("SELECT pg_sleep(30)"))
    assert _current_count(limited) == before
    with read_tx(limited) as c:
        assert c.execute(select(resource_current.c.rid)
                         .where(resource_current.c.res_id == "timed-out-write")).first() is None


def test_lock_held_by_another_session_gives_503_then_recovers(limited: Engine, db_url: str) -> None:
    _pg_only(limited)
    other = create_engine(normalise_url(db_url))
    before = _current_count(limited)
    try:
        with other.connect() as holder:
            holder.execute(text("LOCK TABLE resource_current IN ACCESS EXCLUSIVE MODE"))
            with pytest.raises(StoreTimeout) as read_err, read_tx(limited) as c:
                c.execute(select(func.count()).select_from(resource_current)).scalar_one()
            _assert_503(read_err.value, "timeout")
            with pytest.raises(StoreTimeout) as write_err, write_tx(limited) as c:
                _insert_current(c, "blocked-write")
            _assert_503(write_err.value, "timeout")
            holder.rollback()  # releases the lock
        assert _current_count(limited) == before
        with write_tx(limited) as c:
            _insert_current(c, "after-lock")
        assert _current_count(limited) == before + 1
    finally:
        other.dispose()


def test_idle_in_transaction_session_is_ended_and_the_pool_recovers(limited: Engine) -> None:
    _pg_only(limited)
    with pytest.raises(Unavailable) as caught, read_tx(limited) as c:
        c.execute(text("SELECT 1"))
        time.sleep(1.0)  # a request thread that stalled inside its transaction
        c.execute(text("SELECT 1"))
    _assert_503(caught.value, "transient")
    with read_tx(limited) as c:
        assert c.execute(text("SELECT 1")).scalar() == 1


# -- SQLite: the write lock -------------------------------------------------------------


def test_sqlite_write_lock_held_elsewhere_gives_503_and_reads_still_work(limited: Engine) -> None:
    _sqlite_only(limited)
    before = _current_count(limited)
    holder = sqlite3.connect(limited.url.database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreTimeout) as caught, write_tx(limited) as c:
            _insert_current(c, "blocked-sqlite-write")
        _assert_503(caught.value, "timeout")
        assert _current_count(limited) == before  # WAL: readers do not need the lock
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with write_tx(limited) as c:
        _insert_current(c, "after-sqlite-lock")
    assert _current_count(limited) == before + 1


# -- the mapping ----------------------------------------------------------------------


def test_exhausted_pool_is_503() -> None:
    mapped = unavailable_for(PoolTimeout("QueuePool limit of size 10 overflow 10 reached"))
    assert mapped is not None
    _assert_503(mapped, "transient")


def test_other_database_errors_are_not_turned_into_503(limited: Engine) -> None:
    with write_tx(limited) as c:
        _insert_current(c, "duplicate-me")
    with pytest.raises(IntegrityError), write_tx(limited) as c:
        _insert_current(c, "duplicate-me")


# -- the watchdog: a server that does not answer at all -----------------------------------


def test_request_transaction_past_its_deadline_is_cut_and_the_pool_recovers(db_url: str) -> None:
    """The server's own statement_timeout is out of play here (60 s), as it is when the
    backend is stuck in I/O and never sees the cancel: the client-side deadline cuts."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the watchdog guards PostgreSQL connections")
    limits = DbLimits(statement_timeout_ms=60_000, request_deadline_s=1)
    eng = make_engine(db_url, limits=limits, pool_size=1)
    cuts = WATCHDOG.cuts
    try:
        with pytest.raises(Unavailable) as caught, read_tx(eng) as c:
            c.execute(text("SELECT pg_sleep(4)"))
        _assert_503(caught.value, "transient")
        assert WATCHDOG.cuts == cuts + 1
        with read_tx(eng) as c:  # the cut connection was dropped; a new one serves
            assert c.execute(text("SELECT 1")).scalar() == 1
        with eng.begin() as c:  # jobs have no client-side deadline
            c.execute(text("SELECT pg_sleep(1.5)"))
        assert WATCHDOG.cuts == cuts + 1
    finally:
        eng.dispose()


def test_watchdog_never_cuts_a_connection_it_was_disarmed_for(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the watchdog guards PostgreSQL connections")
    eng = make_engine(db_url, limits=LIMITS, pool_size=1)
    try:
        with eng.connect() as c:
            dbapi = c.connection.dbapi_connection
            cuts = WATCHDOG.cuts
            WATCHDOG.disarm(WATCHDOG.arm(dbapi, 0.01, "a test"))
            time.sleep(WATCHDOG.period * 3)
            assert c.execute(text("SELECT 1")).scalar() == 1
            assert WATCHDOG.cuts == cuts
    finally:
        eng.dispose()


def test_a_long_transaction_of_short_statements_is_not_cut(db_url: str) -> None:
    """The deadline bounds one wait on the server, not the transaction: an audit verify
    or a large Bundle may run many quick statements for longer than the deadline."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the watchdog guards PostgreSQL connections")
    eng = make_engine(db_url, limits=DbLimits(request_deadline_s=2), pool_size=1)
    cuts = WATCHDOG.cuts
    try:
        with read_tx(eng) as c:
            started = time.monotonic()
            while time.monotonic() - started < 4:
                c.execute(text("SELECT pg_sleep(0.01)"))
                time.sleep(0.05)  # the request's own work between statements
        assert WATCHDOG.cuts == cuts
    finally:
        eng.dispose()


class _FakePgConn:
    def __init__(self) -> None:
        self.transaction_status = 2  # idle in transaction
        self.socket = -1  # nothing to cut: _cut reports False


class _FakeConn:
    def __init__(self) -> None:
        self.pgconn = _FakePgConn()


def test_watchdog_cuts_only_after_one_continuous_wait() -> None:
    from exchange.db.engine import Watchdog

    dog = Watchdog(period=3600)  # its thread never looks; the test does
    conn = _FakeConn()
    token = dog.arm(conn, 10, "a test")
    waiting, idle = 1, 2
    for t, status in [(0, waiting), (6, idle), (8, waiting), (12, waiting), (17, waiting)]:
        conn.pgconn.transaction_status = status
        dog.look(t)
        assert token in dog._armed  # 8 -> 17 is 9 s of waiting: not yet
    dog.look(18)
    assert token not in dog._armed  # 10 s of waiting seen: cut (and forgotten)


def test_exhausted_pool_gives_503_through_read_tx(db_url: str) -> None:
    """Before: SQLAlchemy's pool TimeoutError is no DBAPIError, so it escaped read_tx and
    became a 500. Every connection is held here (as by requests stuck on a hung server)."""
    eng = make_engine(db_url, limits=LIMITS, pool_size=1)
    eng.pool._timeout = 0.2  # the wait for a free connection (10 s in production)
    held = []
    try:
        for _ in range(eng.pool.size() + eng.pool._max_overflow):
            held.append(eng.connect())
        with pytest.raises(Unavailable) as caught, read_tx(eng):
            pass
        _assert_503(caught.value, "transient")
        with pytest.raises(Unavailable), write_tx(eng):
            pass
    finally:
        for c in held:
            c.close()
        eng.dispose()
