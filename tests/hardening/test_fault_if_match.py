"""Concurrent conflicting writes against a live server (issue 11, "Faults").

Many threads, released together by a barrier, send conflicting writes over real HTTP
to a running server, on SQLite and PostgreSQL. Proves: with ``If-Match`` exactly one
update (or delete, or patch) wins and every other gets 412 with an OperationOutcome;
the winner's content is what is stored and no version is lost or duplicated; racing
creates-by-update of one new id give one 201 and a gap-free version chain, never a
5xx; racing conditional creates (``If-None-Exist``) create one resource, not several.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select

from exchange.db.engine import read_tx
from exchange.db.tables import resource_version as rv
from tests.hardening.faults.checks import store_problems

pytestmark = pytest.mark.slow
THREADS = 12
FHIR_JSON = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}


def _race(fn: Callable[[httpx.Client, int], httpx.Response], n: int = THREADS) -> list[httpx.Response]:
    """Run ``fn(client, i)`` on ``n`` threads, released at the same moment."""
    barrier = threading.Barrier(n)
    clients = [httpx.Client(timeout=60) for _ in range(n)]

    def run(i: int) -> httpx.Response:
        barrier.wait()
        return fn(clients[i], i)

    try:
        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(run, range(n)))
    finally:
        for c in clients:
            c.close()


def _versions(engine, rtype: str, rid: str) -> list[int]:  # noqa: ANN001
    with read_tx(engine) as conn:
        return sorted(int(v) for (v,) in conn.execute(
            select(rv.c.version_id).where(rv.c.res_type == rtype, rv.c.res_id == rid)))


def _statuses(responses: list[httpx.Response]) -> list[int]:
    return sorted(r.status_code for r in responses)


def test_if_match_updates_exactly_one_wins_each_round(live_server: str, engine, assert_outcome) -> None:  # noqa: ANN001
    rid = f"race-{uuid.uuid4().hex[:8]}"
    first = httpx.put(f"{live_server}/Patient/{rid}", headers=FHIR_JSON,
                      json={"resourceType": "Patient", "id": rid, "gender": "unknown"})
    assert first.status_code == 201, first.text
    for version in range(1, 4):
        def put(http: httpx.Client, i: int, version: int = version) -> httpx.Response:
            # a body unlike every earlier version: an identical body is a no-op update (200, no
            # new version), which would rightly succeed beside the round's real winner
            body = {"resourceType": "Patient", "id": rid, "name": [{"family": f"Writer{i}", "given": [f"r{version}"]}]}
            return http.put(f"{live_server}/Patient/{rid}", json=body,
                            headers={**FHIR_JSON, "if-match": f'W/"{version}"'})

        responses = _race(put)
        assert _statuses(responses) == [200] + [412] * (THREADS - 1), [
            (r.status_code, r.headers.get("etag"), r.text[-160:]) for r in responses]
        winner = next(r for r in responses if r.status_code == 200)
        assert winner.headers["etag"] == f'W/"{version + 1}"'
        for r in responses:
            if r.status_code == 412:
                assert_outcome(r.content)
        stored = httpx.get(f"{live_server}/Patient/{rid}", headers=FHIR_JSON).json()
        assert stored["meta"]["versionId"] == str(version + 1)
        assert stored["name"] == winner.json()["name"]
    assert _versions(engine, "Patient", rid) == [1, 2, 3, 4]


def test_if_match_update_and_patch_race_then_delete_race(live_server: str, engine, assert_outcome) -> None:  # noqa: ANN001
    rid = f"mixed-{uuid.uuid4().hex[:8]}"
    url = f"{live_server}/Patient/{rid}"
    assert httpx.put(url, headers=FHIR_JSON, json={"resourceType": "Patient", "id": rid, "active": True}).status_code == 201

    def change(http: httpx.Client, i: int) -> httpx.Response:
        headers = {**FHIR_JSON, "if-match": 'W/"1"'}
        if i % 2:
            return http.patch(url, headers={**headers, "content-type": "application/json-patch+json"},
                              content=b'[{"op": "replace", "path": "/active", "value": false}]')
        return http.put(url, headers=headers, json={"resourceType": "Patient", "id": rid, "active": False,
                                                     "gender": "other"})

    responses = _race(change)
    assert _statuses(responses) == [200] + [412] * (THREADS - 1), [(r.status_code, r.text[:120]) for r in responses]

    def delete(http: httpx.Client, i: int) -> httpx.Response:
        return http.delete(url, headers={**FHIR_JSON, "if-match": 'W/"2"'})

    responses = _race(delete)
    wins = [r for r in responses if r.status_code < 300]
    assert len(wins) == 1, [(r.status_code, r.text[:120]) for r in responses]
    losers = [r for r in responses if r.status_code >= 300]
    assert [r.status_code for r in losers] == [412] * (THREADS - 1)
    for r in losers:
        assert_outcome(r.content)
    assert _versions(engine, "Patient", rid) == [1, 2, 3]
    assert httpx.get(url, headers=FHIR_JSON).status_code == 410
    assert store_problems(engine) == []


def test_racing_create_by_update_of_one_new_id(live_server: str, engine) -> None:  # noqa: ANN001
    rid = f"new-{uuid.uuid4().hex[:8]}"

    def put(http: httpx.Client, i: int) -> httpx.Response:
        return http.put(f"{live_server}/Patient/{rid}", headers=FHIR_JSON,
                        json={"resourceType": "Patient", "id": rid, "name": [{"family": f"Creator{i}"}]})

    responses = _race(put)
    assert _statuses(responses) == [200] * (THREADS - 1) + [201], [(r.status_code, r.text[:200]) for r in responses]
    assert _versions(engine, "Patient", rid) == list(range(1, THREADS + 1))
    assert store_problems(engine) == []


def test_racing_conditional_creates_make_one_resource(live_server: str, engine) -> None:  # noqa: ANN001
    value = uuid.uuid4().hex

    def post(http: httpx.Client, i: int) -> httpx.Response:
        return http.post(f"{live_server}/Patient",
                         headers={**FHIR_JSON, "if-none-exist": f"identifier=urn:race|{value}"},
                         json={"resourceType": "Patient", "identifier": [{"system": "urn:race", "value": value}]})

    responses = _race(post)
    assert all(r.status_code in (200, 201) for r in responses), [r.text[:200] for r in responses]
    with read_tx(engine) as conn:
        made = {rid for rid, content in conn.execute(select(rv.c.res_id, rv.c.content).where(
            rv.c.res_type == "Patient")) if content is not None and value.encode() in bytes(content)}
    assert len(made) == 1, made
    assert _statuses(responses) == [200] * (THREADS - 1) + [201]
