"""PostgreSQL hangs, rather than stops, under a running server (issue 11, "Faults").

Another session holds ACCESS EXCLUSIVE locks (as an ``ALTER TABLE`` or a stuck job
would), so the exchange's statements wait instead of failing. A private cluster backs a
real server child process configured with small request limits
(``EXCHANGE_DB_LOCK_TIMEOUT_MS``, ``EXCHANGE_DB_STATEMENT_TIMEOUT_MS``). Proves: while
the lock is held every request is answered - 503, an OperationOutcome with code
``timeout`` and Retry-After - even a burst larger than the connection pool; the process
stays up; nothing is half-written and no refused write is stored; once the lock is
released the same process serves again by itself. Then the same for the audit store:
with the chain head locked the audit writer fails (so every request is refused with no
data), and it recovers once the lock goes; the access log verifies afterwards. Last, a
database that answers nothing at all (processes stopped), which only the client-side
deadline and connect timeout can catch.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from exchange.audit.tables import audit_event
from exchange.db.engine import make_engine, read_tx
from exchange.db.tables import resource_current as rc
from tests.hardening.faults.checks import audit_verifies, store_problems
from tests.hardening.faults.freeze import frozen
from tests.hardening.faults.locks import pg_table_lock
from tests.hardening.faults.pgcluster import PrivateCluster, missing_reason
from tests.hardening.faults.server import ServerProcess, prepare_database

pytestmark = pytest.mark.slow
FHIR_JSON = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}
RESOURCE_TABLES = ("resource_current", "resource_version")
BURST = 48  # more than the server's thread pool (40) and connection pool (10 + 10)
FROZEN_APP = "exchange-frozen-test"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    reason = missing_reason()
    if reason:
        if os.environ.get("EXCHANGE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"a private PostgreSQL cluster is required: {reason}")
        pytest.skip(reason)
    c = PrivateCluster()
    c.start()
    yield c
    c.destroy()


@pytest.fixture(scope="module")
def served(cluster: PrivateCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    url = cluster.create_database(f"hang_{uuid.uuid4().hex[:8]}")
    prepare_database(url)
    server = ServerProcess(url, tmp_path_factory.mktemp("hang-var"),
                           EXCHANGE_DB_LOCK_TIMEOUT_MS="300", EXCHANGE_DB_STATEMENT_TIMEOUT_MS="2000").start()
    yield server, url
    server.stop()


def _patient(pid: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": "Hang"}]}


def _bundle(prefix: str, entries: int = 3) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "PUT", "url": f"Patient/{prefix}-{k}"}, "resource": _patient(f"{prefix}-{k}")}
        for k in range(entries)]}


def _requests(base: str, tag: str) -> list[tuple[str, str, dict | None]]:
    """One of each kind: read, search, update, create, transaction."""
    return [
        ("GET", f"{base}/Patient/known", None),
        ("GET", f"{base}/Patient?family=Hang", None),
        ("PUT", f"{base}/Patient/{tag}-put", _patient(f"{tag}-put")),
        ("POST", f"{base}/Patient", {"resourceType": "Patient", "name": [{"family": f"{tag}-post"}]}),
        ("POST", base, _bundle(f"{tag}-tx")),
    ]


def _send(http: httpx.Client, method: str, url: str, body: dict | None) -> httpx.Response:
    return http.request(method, url, json=body, headers=FHIR_JSON)


def _assert_refused(r: httpx.Response, assert_outcome: Callable[[bytes], dict], code: str) -> None:
    assert r.status_code == 503, (r.status_code, r.text[:300])
    assert r.headers.get("retry-after"), r.headers
    outcome = assert_outcome(r.content)
    assert outcome["issue"][0]["code"] == code, outcome  # an OperationOutcome only: no data


def _patient_ids(engine) -> set[str]:  # noqa: ANN001
    with read_tx(engine) as conn:
        return {row[0] for row in conn.execute(select(rc.c.res_id).where(rc.c.res_type == "Patient"))}


def _audit_count(engine) -> int:  # noqa: ANN001
    with read_tx(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(audit_event)).scalar_one())


def test_locked_resource_tables_give_503_then_recover(served, assert_outcome) -> None:  # noqa: ANN001
    server, url = served
    with httpx.Client(timeout=60) as http:
        assert _send(http, "PUT", f"{server.base}/Patient/known", _patient("known")).status_code in (200, 201)
        engine = make_engine(url)
        try:
            audited_before = _audit_count(engine)
            with pg_table_lock(url, RESOURCE_TABLES):
                refused = [_send(http, *req) for req in _requests(server.base, "locked")]
                # a burst larger than every pool: each one is answered, none hangs
                with ThreadPoolExecutor(max_workers=BURST) as pool:
                    burst = list(pool.map(lambda i: _send(http, "GET", f"{server.base}/Patient/known", None),
                                          range(BURST)))
                assert http.get(f"http://127.0.0.1:{server.port}/healthz").status_code == 200
            print(f"pg lock: {len(refused) + len(burst)} requests under the lock, "
                  f"{sum(r.status_code == 503 for r in refused + burst)} x 503, slowest "
                  f"{max(r.elapsed.total_seconds() for r in refused + burst):.2f} s (lock_timeout 0.3 s)")
            for r in refused + burst:
                _assert_refused(r, assert_outcome, "timeout")
            assert server.proc is not None and server.proc.poll() is None, "the server process died"

            # nothing refused was stored, nothing is half-written, every refusal was audited
            ids = _patient_ids(engine)
            assert not {i for i in ids if i.startswith("locked")}, ids
            assert store_problems(engine) == []
            assert _audit_count(engine) >= audited_before + len(refused) + BURST

            # the same process serves again by itself
            served_again = [_send(http, *req) for req in _requests(server.base, "after")]
            assert [r.status_code for r in served_again] == [200, 200, 201, 201, 200], \
                [(r.status_code, r.text[:200]) for r in served_again]
            assert {"after-put", "after-tx-0", "after-tx-1", "after-tx-2"} <= _patient_ids(engine)
        finally:
            engine.dispose()


def test_locked_audit_head_refuses_everything_then_the_writer_recovers(served, assert_outcome) -> None:  # noqa: ANN001
    server, url = served
    with httpx.Client(timeout=60) as http:
        assert http.get(f"{server.base}/Patient/known", headers=FHIR_JSON).status_code == 200
        engine = make_engine(url)
        try:
            with pg_table_lock(url, ("audit_head",)):
                refused = [_send(http, *req) for req in _requests(server.base, "unaudited")]
            # No access without a record: the audit writer could not commit, so every
            # response is a 503 OperationOutcome with no data.
            print(f"pg audit lock: {len(refused)} requests, slowest "
                  f"{max(r.elapsed.total_seconds() for r in refused):.2f} s")
            for r in refused:
                assert r.status_code == 503, (r.status_code, r.text[:300])
                assert r.headers.get("retry-after")
                assert assert_outcome(r.content)["resourceType"] == "OperationOutcome"
            assert server.proc is not None and server.proc.poll() is None, "the server process died"
            assert store_problems(engine) == []

            ok = [_send(http, *req) for req in _requests(server.base, "audited-again")]
            assert [r.status_code for r in ok] == [200, 200, 201, 201, 200], [(r.status_code, r.text[:200]) for r in ok]
            verified, summary = audit_verifies(engine, url, server.var_dir)
            assert verified, summary
        finally:
            engine.dispose()


def test_frozen_database_every_request_answered_then_recovers(cluster: PrivateCluster,  # noqa: ANN001
                                                              tmp_path_factory: pytest.TempPathFactory,
                                                              assert_outcome) -> None:  # noqa: ANN001
    """The whole database stops answering (postmaster and the server's backends
    SIGSTOPped: no results, no cancels, no new connections, TCP still alive), which no
    server-side limit can catch. The client-side deadline (2 s) and connect timeout
    (2 s) answer every request with 503; after SIGCONT the same process serves again."""
    url = cluster.create_database(f"frozen_{uuid.uuid4().hex[:8]}")
    prepare_database(url)
    server = ServerProcess(url, tmp_path_factory.mktemp("frozen-var"), PGAPPNAME=FROZEN_APP,
                           EXCHANGE_DB_REQUEST_DEADLINE_S="2", EXCHANGE_DB_CONNECT_TIMEOUT_S="2").start()
    engine = make_engine(url)
    try:
        with httpx.Client(timeout=120) as http:
            assert _send(http, "PUT", f"{server.base}/Patient/known", _patient("known")).status_code in (200, 201)
            with ThreadPoolExecutor(max_workers=4) as pool:  # several pooled connections
                assert all(r.status_code == 200 for r in pool.map(
                    lambda _: _send(http, "GET", f"{server.base}/Patient/known", None), range(8)))
            with frozen(cluster, FROZEN_APP) as pids:
                assert len(pids) >= 2, pids
                with ThreadPoolExecutor(max_workers=5) as pool:
                    refused = list(pool.map(lambda req: _send(http, *req), _requests(server.base, "frozen")))
                assert http.get(f"http://127.0.0.1:{server.port}/healthz").status_code == 200
            print(f"frozen: {len(refused)} requests, {sum(r.status_code == 503 for r in refused)} x 503, slowest "
                  f"{max(r.elapsed.total_seconds() for r in refused):.2f} s (deadline 2 s, connect timeout 2 s)")
            for r in refused:
                assert r.status_code == 503, (r.status_code, r.text[:300])
                assert r.headers.get("retry-after"), r.headers
                assert_outcome(r.content)
            assert server.proc is not None and server.proc.poll() is None, "the server process died"

            served_again = [_send(http, *req) for req in _requests(server.base, "thawed")]
            assert [r.status_code for r in served_again] == [200, 200, 201, 201, 200], \
                [(r.status_code, r.text[:200]) for r in served_again]
        assert not {i for i in _patient_ids(engine) if i.startswith("frozen")}
        assert store_problems(engine) == []
        ok, summary = audit_verifies(engine, url, server.var_dir)
        assert ok, summary
    finally:
        engine.dispose()
        server.stop()
