"""Core behaviours that were implemented but not pinned by a test (issue 2, #3-#7),
on both databases.

* update-as-create is reserved to system clients: a ``user/`` token gets 403
  (docs/architecture.md, "Decisions"; R4 http.html#upsert leaves it to the server);
* transaction processing order (R4 http.html#trules): DELETE, then POST, then PUT/PATCH,
  then GET, including conditional targets;
* ``_since`` and ``_count`` on type and system history (R4 http.html#history);
* an unexpected error is a 500 OperationOutcome with issue code ``exception`` and no
  traceback text (R4 operationoutcome.html, issue-type ``exception``);
* a read returns the stored bytes, never a re-serialised model.
"""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from exchange.auth.testing import bearer, quick_token
from exchange.db.tables import resource_current, resource_version

FHIR = {"content-type": "application/fhir+json"}


def _uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- #3 update-as-create --------------------------------------------------------------

@pytest.fixture(scope="module")
def auth_client(settings, engine):  # noqa: ANN001, ANN201
    from exchange.app import create_app

    with TestClient(create_app(settings.with_(auth_enabled=True), engine=engine)) as c:
        yield c


def test_update_as_create_is_403_for_a_user_token_and_allowed_for_a_system_token(auth_client, settings, engine):
    user = bearer(quick_token(engine, settings, scope="user/*.cruds", kind="user", client_id="gaps-user-client"))
    system = bearer(quick_token(engine, settings, scope="system/*.cruds", kind="system", client_id="gaps-system-client",
                                practitioner=None, role=None, purpose=None, name=None))
    pid = _uid("upsert")
    body = {"resourceType": "Patient", "id": pid, "gender": "female"}
    r = auth_client.put(f"/fhir/Patient/{pid}", json=body, headers={**FHIR, **user})
    assert r.status_code == 403, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["code"] == "forbidden"
    assert auth_client.get(f"/fhir/Patient/{pid}", headers=system).status_code == 404  # nothing was written

    r = auth_client.put(f"/fhir/Patient/{pid}", json=body, headers={**FHIR, **system})
    assert r.status_code == 201, r.text
    # the rule is about creating: the same user may update the resource that now exists
    r = auth_client.put(f"/fhir/Patient/{pid}", json={**body, "gender": "other"}, headers={**FHIR, **user})
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "other"


def test_update_as_create_inside_a_transaction_is_403_for_a_user_token(auth_client, settings, engine):
    """A Bundle entry re-enters the same handler, so the rule holds there too."""
    user = bearer(quick_token(engine, settings, scope="user/*.cruds", kind="user", client_id="gaps-user-client"))
    pid = _uid("upsert-tx")
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": pid}, "request": {"method": "PUT", "url": f"Patient/{pid}"}}]}
    r = auth_client.post("/fhir", json=tx, headers={**FHIR, **user})
    assert r.status_code == 403 and r.json()["issue"][0]["code"] == "forbidden"


# --- #4 transaction processing order ---------------------------------------------------

def _tx(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def test_transaction_conditional_delete_runs_before_a_post_listed_first(client):
    """Listed POST then DELETE of the same condition: the DELETE runs first (it finds
    nothing), so the newly created resource survives."""
    ident = _uid("order-a")
    cond = f"identifier=urn:test|{ident}"
    r = client.post("/fhir", json=_tx(
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": ident}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": f"Patient?{cond}"}},
    ), headers=FHIR)
    assert r.status_code == 200, r.text
    created, deleted = r.json()["entry"]
    assert created["response"]["status"].startswith("201")
    assert deleted["response"]["status"].startswith("204")
    found = client.get(f"/fhir/Patient?{cond}").json()
    assert len(found.get("entry", [])) == 1


def test_transaction_delete_then_conditional_create_of_the_same_target(client):
    """DELETE Patient?identifier=X with POST If-None-Exist identifier=X: the delete runs
    first, so the conditional create matches nothing and creates a new resource, and a
    reference to the POST's fullUrl points at the new resource, not the deleted one."""
    ident = _uid("order-b")
    cond = f"identifier=urn:test|{ident}"
    old = client.post("/fhir/Patient", json={"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": ident}]},
                      headers=FHIR).json()["id"]
    r = client.post("/fhir", json=_tx(
        {"fullUrl": "urn:uuid:11111111-2222-3333-4444-555555555555",
         "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": ident}], "gender": "male"},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": cond}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                      "subject": {"reference": "urn:uuid:11111111-2222-3333-4444-555555555555"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "DELETE", "url": f"Patient?{cond}"}},
    ), headers=FHIR)
    assert r.status_code == 200, r.text
    created, obs, deleted = r.json()["entry"]
    assert deleted["response"]["status"].startswith("204")
    assert created["response"]["status"].startswith("201")
    new = created["response"]["location"].split("/")[1]
    assert new != old
    assert client.get(f"/fhir/Patient/{old}").status_code == 410
    assert client.get(f"/fhir/Patient/{new}").json()["gender"] == "male"
    obs_id = obs["response"]["location"].split("/")[1]
    assert client.get(f"/fhir/Observation/{obs_id}").json()["subject"]["reference"] == f"Patient/{new}"


def test_transaction_delete_and_put_of_the_same_resource_is_rejected(client):
    """R4 http.html#trules: identities may not overlap between DELETE, POST and PUT."""
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()["id"]
    r = client.post("/fhir", json=_tx(
        {"resource": {"resourceType": "Patient", "id": pid, "gender": "male"}, "request": {"method": "PUT", "url": f"Patient/{pid}"}},
        {"request": {"method": "DELETE", "url": f"Patient/{pid}"}},
    ), headers=FHIR)
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200  # nothing was applied


def test_transaction_get_listed_first_runs_after_the_delete(client):
    """GET, PUT, DELETE listed in that order: the GET is processed last, after the
    DELETE, so it finds the resource gone (410) and the whole transaction fails: the
    PUT and the DELETE are rolled back."""
    gone = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()["id"]
    keep = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()["id"]
    r = client.post("/fhir", json=_tx(
        {"request": {"method": "GET", "url": f"Patient/{gone}"}},
        {"resource": {"resourceType": "Patient", "id": keep, "gender": "female"}, "request": {"method": "PUT", "url": f"Patient/{keep}"}},
        {"request": {"method": "DELETE", "url": f"Patient/{gone}"}},
    ), headers=FHIR)
    # the GET of the deleted resource fails the whole transaction (410), so nothing is applied
    assert r.status_code == 410, r.text
    assert client.get(f"/fhir/Patient/{gone}").status_code == 200
    assert "gender" not in client.get(f"/fhir/Patient/{keep}").json()


# --- #5 history _since and _count at type and system level ---------------------------

def _etags(bundle: dict) -> list[tuple[str, str]]:
    return [(e["fullUrl"].rsplit("/", 1)[1], e["response"]["etag"]) for e in bundle.get("entry", [])]


def _next(bundle: dict) -> str | None:
    nxt = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
    return nxt[0].replace("http://testserver", "") if nxt else None


def test_type_and_system_history_since_and_count(client):
    rtype = "Device"  # a type no other test in this module writes
    before = [client.post(f"/fhir/{rtype}", json={"resourceType": rtype}, headers=FHIR).json() for _ in range(2)]
    time.sleep(0.01)  # lastUpdated has millisecond precision: make the boundary unambiguous
    first_new = client.post(f"/fhir/{rtype}", json={"resourceType": rtype, "status": "active"}, headers=FHIR).json()
    since = first_new["meta"]["lastUpdated"]
    later = [client.put(f"/fhir/{rtype}/{before[0]['id']}", json={**before[0], "status": "inactive"}, headers=FHIR).json(),
             client.post(f"/fhir/{rtype}", json={"resourceType": rtype}, headers=FHIR).json()]
    expected = [(d["id"], f'W/"{d["meta"]["versionId"]}"') for d in reversed([first_new, *later])]

    th = client.get(f"/fhir/{rtype}/_history", params={"_since": since})
    assert th.status_code == 200 and th.json()["type"] == "history"
    assert _etags(th.json()) == expected  # newest first, nothing before _since

    sh = client.get("/fhir/_history", params={"_since": since}).json()
    mine = [x for x in _etags(sh) if x[0] in {d["id"] for d in (*before, first_new, *later)}]
    assert mine == expected
    assert all(e["response"]["etag"] for e in sh["entry"])

    # _count pages the same set, in the same order, at both levels
    for url in (f"/fhir/{rtype}/_history?_count=2&_since={since}", f"/fhir/_history?_count=1&_since={since}"):
        seen, size = [], int(url.split("_count=")[1].split("&")[0])
        while url:
            page = client.get(url)
            assert page.status_code == 200, page.text
            assert len(page.json().get("entry", [])) <= size
            seen += _etags(page.json())
            url = _next(page.json())
        assert [x for x in seen if x in expected] == expected

    future = "2999-01-01T00:00:00Z"
    assert client.get(f"/fhir/{rtype}/_history", params={"_since": future}).json().get("entry", []) == []
    assert client.get("/fhir/_history", params={"_since": future}).json().get("entry", []) == []
    assert client.get(f"/fhir/{rtype}/_history", params={"_since": "2024-01-01"}).status_code == 400  # not an instant
    assert client.get("/fhir/_history", params={"_count": "x"}).status_code == 400


# --- #6 unexpected error -> 500 exception, no traceback --------------------------------

def test_unexpected_error_is_a_500_exception_outcome_without_traceback(client, monkeypatch):
    from exchange.interactions import read

    secret = "SECRET-INTERNAL-DETAIL-42"

    def boom(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError(secret)

    monkeypatch.setattr(read, "read", boom)
    r = client.get(f"/fhir/Patient/{_uid('boom')}")
    assert r.status_code == 500
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert [i["code"] for i in body["issue"]] == ["exception"]
    assert body["issue"][0]["severity"] in ("error", "fatal")
    assert r.headers["content-type"].startswith("application/fhir+json")
    for leak in (secret, "Traceback", "RuntimeError", 'File "', ".py"):
        assert leak not in r.text, leak


# --- #7 a read returns the stored bytes -------------------------------------------------

def test_read_returns_exactly_the_stored_bytes(client, engine):
    """The body of GET is the ``resource_version`` content byte for byte. The stored
    bytes are replaced by a JSON spelling that no serialiser produces (spaces around
    colons, keys out of order), so re-serialising through a model or ``orjson`` would
    fail this test."""
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"}, headers=FHIR).json()["id"]
    with engine.begin() as conn:
        seq = conn.execute(select(resource_current.c.seq).where(
            resource_current.c.res_type == "Patient", resource_current.c.res_id == pid)).scalar_one()
        stored = conn.execute(select(resource_version.c.content).where(resource_version.c.seq == seq)).scalar_one()
        doc = orjson.loads(stored)
        meta = orjson.dumps(doc["meta"]).decode()
        odd = ('{ "gender" : "male",  "id": "' + pid + '", "meta": ' + meta
               + ', "resourceType": "Patient", "multipleBirthInteger": 2 }').encode()
        conn.execute(resource_version.update().where(resource_version.c.seq == seq).values(content=odd))
    r = client.get(f"/fhir/Patient/{pid}")
    assert r.status_code == 200
    assert r.content == odd
    v = client.get(f"/fhir/Patient/{pid}/_history/1")
    assert v.content == odd
