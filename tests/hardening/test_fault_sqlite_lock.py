"""SQLite's write lock held by someone else for longer than the busy timeout (issue 11,
"Faults"; docs/architecture.md, "Time limits").

Another connection holds ``BEGIN IMMEDIATE`` on the database file of a real server
child process whose request busy timeout is small (``EXCHANGE_SQLITE_BUSY_TIMEOUT_MS``).
Proves: writes are answered with 503 + OperationOutcome (code ``timeout``) +
Retry-After instead of waiting, and change nothing; reads still work (WAL readers need
no lock) when the access log is off - with it on they are refused too, because the
AuditEvent of a read needs the write lock and there is no access without a record; the
process stays up and serves writes again, audited, once the lock is released.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from exchange.db.engine import make_engine
from tests.hardening.conftest import db_fingerprint
from tests.hardening.faults.checks import audit_verifies, store_problems
from tests.hardening.faults.locks import sqlite_write_lock
from tests.hardening.faults.server import ServerProcess, prepare_database

pytestmark = pytest.mark.slow
FHIR_JSON = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}
BUSY_MS = "300"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp("sqlite-lock") / "exchange.db"
    url = f"sqlite:///{path}"
    prepare_database(url)
    return url, path


@pytest.fixture(scope="module")
def audited(database: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(database[0], tmp_path_factory.mktemp("lock-var-audited"),
                           EXCHANGE_SQLITE_BUSY_TIMEOUT_MS=BUSY_MS).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def unaudited(database: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(database[0], tmp_path_factory.mktemp("lock-var-plain"),
                           EXCHANGE_SQLITE_BUSY_TIMEOUT_MS=BUSY_MS, EXCHANGE_AUDIT_ENABLED="0").start()
    yield server
    server.stop()


def _put(http: httpx.Client, base: str, pid: str) -> httpx.Response:
    return http.put(f"{base}/Patient/{pid}", headers=FHIR_JSON,
                    json={"resourceType": "Patient", "id": pid, "name": [{"family": "Locked"}]})


def _bundle(prefix: str) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "PUT", "url": f"Patient/{prefix}-{k}"},
         "resource": {"resourceType": "Patient", "id": f"{prefix}-{k}"}} for k in range(3)]}


def _assert_busy(r: httpx.Response, assert_outcome: Callable[[bytes], dict], code: str | None = "timeout") -> None:
    assert r.status_code == 503, (r.status_code, r.text[:300])
    assert r.headers.get("retry-after"), r.headers
    outcome = assert_outcome(r.content)
    if code is not None:
        assert outcome["issue"][0]["code"] == code, outcome


def test_writes_get_503_reads_still_work(database, unaudited: ServerProcess, assert_outcome) -> None:  # noqa: ANN001
    url, path = database
    base = unaudited.base
    engine = make_engine(url)
    try:
        with httpx.Client(timeout=60) as http:
            assert _put(http, base, "seen").status_code in (200, 201)
            before = db_fingerprint(engine)
            with sqlite_write_lock(str(path)):
                writes = [_put(http, base, "blocked"), _put(http, base, "seen"),
                          http.post(base, json=_bundle("blocked-tx"), headers=FHIR_JSON)]
                reads = [http.get(f"{base}/Patient/seen", headers=FHIR_JSON),
                         http.get(f"{base}/Patient?family=Locked", headers=FHIR_JSON)]
            print(f"sqlite lock: {len(writes)} writes, slowest 503 "
                  f"{max(r.elapsed.total_seconds() for r in writes):.2f} s (busy_timeout {BUSY_MS} ms)")
            for r in writes:
                _assert_busy(r, assert_outcome)
            assert [r.status_code for r in reads] == [200, 200], [r.text[:200] for r in reads]
            assert reads[0].json()["id"] == "seen"
            assert db_fingerprint(engine) == before  # the refused writes changed nothing
            assert unaudited.proc is not None and unaudited.proc.poll() is None
            assert _put(http, base, "after-lock").status_code == 201
            assert store_problems(engine) == []
    finally:
        engine.dispose()


def test_with_the_access_log_on_reads_are_refused_too_then_recover(database, audited: ServerProcess,  # noqa: ANN001
                                                                     assert_outcome) -> None:  # noqa: ANN001
    url, path = database
    base = audited.base
    engine = make_engine(url)
    try:
        with httpx.Client(timeout=60) as http:
            assert _put(http, base, "audited").status_code in (200, 201)
            before = db_fingerprint(engine)
            with sqlite_write_lock(str(path)):
                write = _put(http, base, "audited-blocked")
                read = http.get(f"{base}/Patient/audited", headers=FHIR_JSON)
            # neither request's AuditEvent could be committed (the access log needs the same
            # write lock), so both answers are the audit sink's 503, with no data
            _assert_busy(write, assert_outcome, code=None)
            _assert_busy(read, assert_outcome, code=None)
            assert db_fingerprint(engine) == before
            assert audited.proc is not None and audited.proc.poll() is None
            assert http.get(f"{base}/Patient/audited", headers=FHIR_JSON).status_code == 200
            assert _put(http, base, "audited-after").status_code == 201
            assert store_problems(engine) == []
            ok, summary = audit_verifies(engine, url, audited.var_dir)
            assert ok, summary
    finally:
        engine.dispose()
