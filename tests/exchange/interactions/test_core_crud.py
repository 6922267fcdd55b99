"""Conformance of read, vread, create, update, patch, delete (R4 http.html) on both databases."""

from __future__ import annotations

import uuid

FHIR = {"content-type": "application/fhir+json"}


def _patient(family: str = "Whitfield", **extra) -> dict:
    return {"resourceType": "Patient", "name": [{"family": family, "given": ["Joan"]}], **extra}


def test_create_assigns_id_version_and_headers(client):
    r = client.post("/fhir/Patient", json=_patient(id="client-chosen"), headers=FHIR)
    assert r.status_code == 201
    body = r.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"].endswith(f"/Patient/{body['id']}/_history/1")
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert "last-modified" in r.headers


def test_read_returns_stored_bytes_and_vread_each_version(client):
    pid = client.post("/fhir/Patient", json=_patient(), headers=FHIR).json()["id"]
    v2 = client.put(f"/fhir/Patient/{pid}", json=_patient("Smith", id=pid), headers=FHIR)
    assert v2.status_code == 200 and v2.json()["meta"]["versionId"] == "2"
    assert client.get(f"/fhir/Patient/{pid}").json()["name"][0]["family"] == "Smith"
    old = client.get(f"/fhir/Patient/{pid}/_history/1")
    assert old.status_code == 200 and old.json()["name"][0]["family"] == "Whitfield"
    assert old.headers["etag"] == 'W/"1"'
    assert client.get(f"/fhir/Patient/{pid}/_history/9").status_code == 404
    assert client.get(f"/fhir/Patient/{pid}/_history/x").status_code == 404


def test_read_unknown_is_404_outcome(client):
    r = client.get(f"/fhir/Patient/{uuid.uuid4()}")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["code"] == "not-found"


def test_unknown_type_and_method(client):
    r = client.get("/fhir/Spaceship/1")
    assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-found"
    r = client.post("/fhir/Patient/abc", json=_patient(), headers=FHIR)
    assert r.status_code == 405 and r.json()["issue"][0]["code"] == "not-supported"


def test_conditional_read_304(client):
    r = client.post("/fhir/Patient", json=_patient(), headers=FHIR)
    pid, etag = r.json()["id"], r.headers["etag"]
    r = client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    r = client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"7"'})
    assert r.status_code == 200
    lm = client.get(f"/fhir/Patient/{pid}").headers["last-modified"]
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-Modified-Since": lm}).status_code == 304
    assert client.get(f"/fhir/Patient/{pid}", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200


def test_update_if_match(client):
    pid = client.post("/fhir/Patient", json=_patient(), headers=FHIR).json()["id"]
    ok = client.put(f"/fhir/Patient/{pid}", json=_patient("A", id=pid), headers={**FHIR, "If-Match": 'W/"1"'})
    assert ok.status_code == 200
    stale = client.put(f"/fhir/Patient/{pid}", json=_patient("B", id=pid), headers={**FHIR, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["issue"][0]["code"] == "conflict"
    assert client.get(f"/fhir/Patient/{pid}").json()["name"][0]["family"] == "A"


def test_update_unchanged_content_is_a_no_op(client):
    pid = client.post("/fhir/Patient", json=_patient(), headers=FHIR).json()["id"]
    again = client.put(f"/fhir/Patient/{pid}", json=_patient(id=pid, meta={"versionId": "99"}), headers=FHIR)
    assert again.status_code == 200
    assert again.json()["meta"]["versionId"] == "1"
    hist = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert len(hist["entry"]) == 1


def test_update_as_create_and_id_rules(client):
    new_id = f"p-{uuid.uuid4().hex[:8]}"
    r = client.put(f"/fhir/Patient/{new_id}", json=_patient(id=new_id), headers=FHIR)
    assert r.status_code == 201 and r.json()["id"] == new_id
    r = client.put(f"/fhir/Patient/{new_id}", json=_patient(id="other"), headers=FHIR)
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["Patient.id"]
    r = client.put(f"/fhir/Patient/{new_id}", json=_patient(), headers=FHIR)
    assert r.status_code == 400
    r = client.put("/fhir/Patient/bad$id", json=_patient(id="bad$id"), headers=FHIR)
    assert r.status_code == 400
    r = client.put(f"/fhir/Observation/{new_id}", json=_patient(id=new_id), headers=FHIR)
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["resourceType"]


def test_validation_names_element(client):
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "birthDate": "1936-13-45"}, headers=FHIR)
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["Patient.birthDate"]
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "nickname": "x"}, headers=FHIR)
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "structure"
    r = client.post("/fhir/Observation", json={"resourceType": "Observation", "status": "final"}, headers=FHIR)
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "required"
    assert r.json()["issue"][0]["expression"] == ["Observation.code"]


def test_prefer_return(client):
    r = client.post("/fhir/Patient", json=_patient(), headers={**FHIR, "Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b"" and r.headers["location"]
    r = client.post("/fhir/Patient", json=_patient(), headers={**FHIR, "Prefer": "return=OperationOutcome"})
    assert r.status_code == 201 and r.json()["resourceType"] == "OperationOutcome"


def test_patch(client):
    pid = client.post("/fhir/Patient", json=_patient(), headers=FHIR).json()["id"]
    ops = b'[{"op":"add","path":"/gender","value":"female"}]'
    r = client.patch(f"/fhir/Patient/{pid}", content=ops, headers={"content-type": "application/json-patch+json"})
    assert r.status_code == 200 and r.json()["gender"] == "female" and r.json()["meta"]["versionId"] == "2"
    bad = b'[{"op":"add","path":"/birthDate","value":"not-a-date"}]'
    r = client.patch(f"/fhir/Patient/{pid}", content=bad, headers={"content-type": "application/json-patch+json"})
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["Patient.birthDate"]
    r = client.patch(f"/fhir/Patient/{pid}", content=b'[{"op":"remove","path":"/nothere"}]',
                     headers={"content-type": "application/json-patch+json"})
    assert r.status_code == 422
    r = client.patch(f"/fhir/Patient/{pid}", content=ops, headers={"content-type": "application/json-patch+json", "If-Match": 'W/"1"'})
    assert r.status_code == 412
    r = client.patch(f"/fhir/Patient/{pid}", content=b'[{"op":"replace","path":"/id","value":"x"}]',
                     headers={"content-type": "application/json-patch+json"})
    assert r.status_code == 422
    assert client.get(f"/fhir/Patient/{pid}").json()["meta"]["versionId"] == "2"


def test_delete_is_a_version_and_read_gives_410(client):
    pid = client.post("/fhir/Patient", json=_patient(), headers=FHIR).json()["id"]
    r = client.delete(f"/fhir/Patient/{pid}")
    assert r.status_code == 204
    r = client.get(f"/fhir/Patient/{pid}")
    assert r.status_code == 410 and r.json()["issue"][0]["code"] == "deleted"
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 204  # idempotent
    hist = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "POST"]
    assert "resource" not in hist["entry"][0]
    assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200
    # update after delete revives with the next version
    r = client.put(f"/fhir/Patient/{pid}", json=_patient(id=pid), headers=FHIR)
    assert r.status_code == 201 and r.json()["meta"]["versionId"] == "3"


def test_delete_if_match(client):
    pid = client.post("/fhir/Patient", json=_patient(), headers=FHIR).json()["id"]
    assert client.delete(f"/fhir/Patient/{pid}", headers={"If-Match": 'W/"5"'}).status_code == 412
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200
