"""The server and the ingest killed with SIGKILL mid-work (issue 11, "Faults").

On SQLite and PostgreSQL, a real server child process (``python -m exchange serve``)
is killed with SIGKILL while it processes large transaction Bundles, and while it
serves a burst of audited reads; an ``exchange ingest`` child process is killed
part-way through a multi-batch extract. Proves: after a restart no transaction is
half-written (every Bundle is all-or-nothing; every Bundle acknowledged 200 is there in
full); the store is whole; the killed ingest left whole batches only and its re-run
converges to exactly the state of a clean run; the access log verifies and every
response a client received has its AuditEvent.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from exchange.db.engine import make_engine, read_tx
from exchange.db.tables import resource_current as rc
from exchange.db.tables import resource_version as rv
from tests.hardening.faults.checks import audit_verifies, audited_requests, store_problems
from tests.hardening.faults.feed import write_community_feed
from tests.hardening.faults.server import ROOT, ServerProcess, child_env, prepare_database, track

pytestmark = pytest.mark.slow
FHIR_JSON = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}
BUNDLE_ENTRIES = 60


@pytest.fixture(scope="module")
def prepared(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    prepare_database(db_url)
    return db_url, tmp_path_factory.mktemp("kill-var")


@pytest.fixture(scope="module")
def store(prepared: tuple[str, Path]):  # noqa: ANN201
    eng = make_engine(prepared[0])
    yield eng
    eng.dispose()


def _bundle(prefix: str, n: int) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "PUT", "url": f"Patient/{prefix}-{k}"},
         "resource": {"resourceType": "Patient", "id": f"{prefix}-{k}", "name": [{"family": prefix}],
                      "identifier": [{"system": "urn:fault", "value": f"{prefix}-{k}"}]}}
        for k in range(n)]}


def _patient_ids(engine) -> set[str]:  # noqa: ANN001
    with read_tx(engine) as conn:
        return {r[0] for r in conn.execute(select(rc.c.res_id).where(rc.c.res_type == "Patient"))}


def test_sigkill_during_transaction_bundles(prepared, store) -> None:  # noqa: ANN001
    url, var = prepared
    server = ServerProcess(url, var).start()
    sent: list[str] = []
    answered: dict[str, int] = {}
    two_done = threading.Event()

    def sender() -> None:
        with httpx.Client(timeout=120) as http:
            while True:
                prefix = f"tx{uuid.uuid4().hex[:8]}"
                sent.append(prefix)
                try:
                    r = http.post(server.base, json=_bundle(prefix, BUNDLE_ENTRIES), headers=FHIR_JSON)
                except httpx.HTTPError:
                    return  # the server died under this request
                answered[prefix] = r.status_code
                if sum(s == 200 for s in answered.values()) >= 2:
                    two_done.set()

    thread = threading.Thread(target=sender)
    thread.start()
    assert two_done.wait(120), server.log()[-2000:]
    server.kill()
    thread.join(timeout=60)
    in_flight = [p for p in sent if p not in answered]
    assert len(in_flight) == 1  # the kill landed while a Bundle was being processed
    print(f"kill/bundles: {sum(s == 200 for s in answered.values())} acknowledged, 1 in flight")

    server = ServerProcess(url, var).start()  # restart on the same database
    try:
        assert httpx.get(f"{server.base}/Patient/{sent[0]}-0", headers=FHIR_JSON).status_code == 200
    finally:
        server.stop()
    ids = _patient_ids(store)
    present = {p: sum(f"{p}-{k}" in ids for k in range(BUNDLE_ENTRIES)) for p in sent}
    assert all(n in (0, BUNDLE_ENTRIES) for n in present.values()), present
    assert all(present[p] == BUNDLE_ENTRIES for p, s in answered.items() if s == 200)
    assert store_problems(store) == []
    ok, summary = audit_verifies(store, url, var)
    assert ok, summary
    assert audited_requests(store)[("POST ", "HTTP 200")] >= sum(s == 200 for s in answered.values())


def test_sigkill_during_audited_reads(prepared, store) -> None:  # noqa: ANN001
    url, var = prepared
    server = ServerProcess(url, var).start()
    prefix = f"rd{uuid.uuid4().hex[:6]}"
    made = httpx.post(server.base, json=_bundle(prefix, 200), headers=FHIR_JSON, timeout=120)
    assert made.status_code == 200, made.text[:500]
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for k in range(200):
        todo.put(f"{prefix}-{k}")
    received: list[tuple[str, int]] = []
    enough = threading.Event()

    def reader() -> None:
        with httpx.Client(timeout=60) as http:
            while True:
                try:
                    rid = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    r = http.get(f"{server.base}/Patient/{rid}", headers=FHIR_JSON)
                except httpx.HTTPError:
                    return
                received.append((rid, r.status_code))
                if len(received) >= 60:
                    enough.set()

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for t in threads:
        t.start()
    assert enough.wait(120), server.log()[-2000:]
    server.kill()
    for t in threads:
        t.join(timeout=60)
    assert received and all(status == 200 for _, status in received)
    assert not todo.empty()  # the burst was cut short by the kill
    print(f"kill/reads: {len(received)} responses received before the kill")

    ServerProcess(url, var).start().stop()  # a restart after the crash
    ok, summary = audit_verifies(store, url, var)
    assert ok, summary
    audited = audited_requests(store)
    missing = [rid for rid, _ in received if audited[(f"GET Patient/{rid}", "HTTP 200")] < 1]
    assert not missing, f"{len(missing)} responses without an AuditEvent, e.g. {missing[:3]}"


def _state(engine) -> dict[tuple[str, str], dict[str, Any]]:  # noqa: ANN001
    """Every current non-Provenance resource, without the volatile meta fields."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    with read_tx(engine) as conn:
        q = select(rc.c.res_type, rc.c.res_id, rv.c.content).select_from(rc.join(rv, rv.c.seq == rc.c.seq)).where(
            rc.c.deleted.is_(False), rc.c.res_type != "Provenance")
        for rtype, rid, content in conn.execute(q):
            data = orjson.loads(bytes(content))
            meta = {k: v for k, v in data.get("meta", {}).items() if k not in ("lastUpdated", "versionId")}
            out[(rtype, rid)] = {**data, "meta": meta}
    return out


def _ingest(url: str, var: Path, feed: Path) -> subprocess.Popen[bytes]:
    return track(subprocess.Popen([sys.executable, "-m", "exchange", "ingest", "community", str(feed)],
                                  cwd=str(ROOT), env=child_env(url, var), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL))


def _resource_count(engine) -> int:  # noqa: ANN001
    with read_tx(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(rc)).scalar_one())


@pytest.fixture(scope="module")
def clean_ingest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, str], dict[str, Any]]]:
    """The feed, and the state a clean, uninterrupted ingest of it produces."""
    tmp = tmp_path_factory.mktemp("clean-ingest")
    feed = tmp / "feed"
    write_community_feed(feed, 90)
    reference_url = f"sqlite:///{tmp / 'reference.db'}"
    prepare_database(reference_url)
    assert _ingest(reference_url, tmp / "var", feed).wait(timeout=300) == 0
    reference = make_engine(reference_url)
    try:
        return feed, _state(reference)
    finally:
        reference.dispose()


def test_sigkill_during_ingest_then_rerun_converges(prepared, store, clean_ingest) -> None:  # noqa: ANN001
    url, var = prepared
    feed, expected = clean_ingest
    assert len(expected) > 1000

    before = _resource_count(store)
    proc = _ingest(url, var, feed)
    stopped = threading.Event()
    while proc.poll() is None and _resource_count(store) < before + 200:
        stopped.wait(0.02)
    proc.kill()
    proc.wait(timeout=60)
    assert proc.returncode == -9, "the ingest finished before it could be killed"
    partial = {k: v for k, v in _state(store).items() if k[1] in {i for _, i in expected}}
    assert 0 < len(partial) < len(expected)  # some batches committed, not all
    print(f"kill/ingest: {len(partial)} of {len(expected)} resources in when killed")
    assert store_problems(store) == []
    assert all(expected[k] == v for k, v in partial.items() if k in expected)

    assert _ingest(url, var, feed).wait(timeout=300) == 0
    after = {k: v for k, v in _state(store).items() if k in expected}
    assert after == expected
    assert store_problems(store) == []
