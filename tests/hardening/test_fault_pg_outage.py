"""PostgreSQL stopped while the server is under load (issue 11, "Faults").

A private PostgreSQL cluster (never the shared one on 5432) backs a real server child
process. Writers post all-or-nothing transaction Bundles and readers read, while the
database is stopped (``pg_ctl stop -m fast``, then a crash with ``-m immediate``) and
started again. Proves: during the outage every request is answered (no hang, no client
timeout) with 503 and an OperationOutcome (plus Retry-After); no Bundle is
half-applied; every Bundle acknowledged 200 is stored in full; the same server process
recovers by itself; the store is whole and the access log verifies afterwards.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from exchange.db.engine import make_engine, read_tx
from exchange.db.tables import resource_current as rc
from tests.hardening.faults.checks import audit_verifies, store_problems
from tests.hardening.faults.pgcluster import PrivateCluster, missing_reason
from tests.hardening.faults.server import ServerProcess, prepare_database

pytestmark = pytest.mark.slow
FHIR_JSON = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}
WRITERS, READERS, ENTRIES = 3, 2, 3


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
    url = cluster.create_database(f"outage_{uuid.uuid4().hex[:8]}")
    prepare_database(url)
    server = ServerProcess(url, tmp_path_factory.mktemp("outage-var")).start()
    yield server, url
    server.stop()


def _bundle(prefix: str) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "PUT", "url": f"Patient/{prefix}-{k}"},
         "resource": {"resourceType": "Patient", "id": f"{prefix}-{k}", "name": [{"family": prefix}]}}
        for k in range(ENTRIES)]}


class Load:
    """Writers and readers looping until told to stop; every response is kept."""

    def __init__(self, base: str, known_id: str) -> None:
        self.base, self.known_id = base, known_id
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.bundles: dict[str, int] = {}  # prefix -> status
        self.responses: list[httpx.Response] = []
        self.client_errors: list[str] = []
        self.threads = [threading.Thread(target=self._write, args=(i,)) for i in range(WRITERS)]
        self.threads += [threading.Thread(target=self._read) for _ in range(READERS)]

    def _keep(self, r: httpx.Response) -> None:
        with self.lock:
            self.responses.append(r)

    def _write(self, n: int) -> None:
        with httpx.Client(timeout=60) as http:
            i = 0
            while not self.stop.is_set():
                prefix = f"w{n}x{i}x{uuid.uuid4().hex[:6]}"
                i += 1
                try:
                    r = http.post(self.base, json=_bundle(prefix), headers=FHIR_JSON)
                except httpx.HTTPError as exc:
                    self.client_errors.append(repr(exc))
                    continue
                with self.lock:
                    self.bundles[prefix] = r.status_code
                self._keep(r)

    def _read(self) -> None:
        with httpx.Client(timeout=60) as http:
            while not self.stop.is_set():
                try:
                    self._keep(http.get(f"{self.base}/Patient/{self.known_id}", headers=FHIR_JSON))
                except httpx.HTTPError as exc:
                    self.client_errors.append(repr(exc))

    def count(self, status: int) -> int:
        with self.lock:
            return sum(1 for r in self.responses if r.status_code == status)

    def wait_for(self, status: int, more_than: int, budget: int = 4000) -> bool:
        """Wait until more than ``more_than`` responses with ``status`` were seen."""
        for _ in range(budget):
            if self.count(status) > more_than:
                return True
            self.stop.wait(0.01)
        return False


def _outage_cycle(cluster: PrivateCluster, load: Load, mode: str) -> None:
    ok_before = load.count(200)
    assert load.wait_for(200, ok_before + 10), "the server did not serve the load before the outage"
    cluster.stop(mode)
    unavailable = load.count(503)
    assert load.wait_for(503, unavailable + 10), "no 503 answers while the database was down"
    cluster.start()
    ok_after = load.count(200)
    assert load.wait_for(200, ok_after + 10, budget=6000), "the server did not recover by itself"


def test_database_outage_fails_fast_with_503_and_recovers(served, cluster: PrivateCluster,  # noqa: ANN001
                                                           assert_outcome) -> None:  # noqa: ANN001
    server, url = served
    known = httpx.put(f"{server.base}/Patient/known", headers=FHIR_JSON,
                      json={"resourceType": "Patient", "id": "known"})
    assert known.status_code in (200, 201), known.text
    load = Load(server.base, "known")
    for t in load.threads:
        t.start()
    try:
        _outage_cycle(cluster, load, "fast")
        _outage_cycle(cluster, load, "immediate")
    finally:
        load.stop.set()
        for t in load.threads:
            t.join(timeout=120)
    assert server.proc is not None and server.proc.poll() is None, "the server process died"
    print(f"outage: {len(load.responses)} responses, {load.count(503)} x 503, "
          f"{len(load.bundles)} bundles ({sum(s == 200 for s in load.bundles.values())} committed), slowest 503 "
          f"{max((r.elapsed.total_seconds() for r in load.responses if r.status_code == 503), default=0):.2f} s")
    assert not load.client_errors, load.client_errors[:5]  # every request was answered
    statuses = {r.status_code for r in load.responses}
    assert statuses <= {200, 201, 503}, statuses
    for r in load.responses:
        if r.status_code == 503:
            assert_outcome(r.content)
            assert r.headers.get("retry-after"), r.headers
    # and it serves normally again, without a restart
    assert httpx.get(f"{server.base}/Patient/known", headers=FHIR_JSON).status_code == 200

    engine = make_engine(url)
    try:
        with read_tx(engine) as conn:
            ids = {row[0] for row in conn.execute(select(rc.c.res_id).where(rc.c.res_type == "Patient"))}
        half = {p: sum(f"{p}-{k}" in ids for k in range(ENTRIES)) for p in load.bundles}
        assert all(n in (0, ENTRIES) for n in half.values()), {p: n for p, n in half.items() if 0 < n < ENTRIES}
        lost = [p for p, status in load.bundles.items() if status == 200 and half[p] != ENTRIES]
        assert not lost, lost
        assert sum(1 for s in load.bundles.values() if s == 503) > 0
        assert store_problems(engine) == []
        ok, summary = audit_verifies(engine, url, server.var_dir)
        assert ok, summary
    finally:
        engine.dispose()
