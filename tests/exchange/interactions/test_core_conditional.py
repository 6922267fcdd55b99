"""Conditional create, update and delete (R4 http.html#ccreate, #cond-update, #cdelete)."""

from __future__ import annotations

import uuid

FHIR = {"content-type": "application/fhir+json"}
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def _patient(nhs: str, family: str = "Nolan") -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": NHS, "value": nhs}], "name": [{"family": family}]}


def _nhs() -> str:
    return str(uuid.uuid4().int)[:10]


def test_conditional_create(client):
    nhs = _nhs()
    cond = {**FHIR, "If-None-Exist": f"identifier={NHS}|{nhs}"}
    first = client.post("/fhir/Patient", json=_patient(nhs), headers=cond)
    assert first.status_code == 201
    again = client.post("/fhir/Patient", json=_patient(nhs), headers=cond)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    client.post("/fhir/Patient", json=_patient(nhs), headers=FHIR)  # a duplicate made on purpose
    many = client.post("/fhir/Patient", json=_patient(nhs), headers=cond)
    assert many.status_code == 412
    bad = client.post("/fhir/Patient", json=_patient(nhs), headers={**FHIR, "If-None-Exist": "nonsense-param=1"})
    assert bad.status_code == 400


def test_conditional_update(client):
    nhs = _nhs()
    created = client.put(f"/fhir/Patient?identifier={NHS}|{nhs}", json=_patient(nhs), headers=FHIR)
    assert created.status_code == 201
    pid = created.json()["id"]
    updated = client.put(f"/fhir/Patient?identifier={NHS}|{nhs}", json=_patient(nhs, "Changed"), headers=FHIR)
    assert updated.status_code == 200 and updated.json()["id"] == pid
    assert updated.json()["meta"]["versionId"] == "2"
    wrong_id = client.put(f"/fhir/Patient?identifier={NHS}|{nhs}", json={**_patient(nhs), "id": "other"}, headers=FHIR)
    assert wrong_id.status_code == 400


def test_conditional_delete(client):
    nhs = _nhs()
    pid = client.post("/fhir/Patient", json=_patient(nhs), headers=FHIR).json()["id"]
    assert client.delete(f"/fhir/Patient?identifier={NHS}|{nhs}").status_code == 204
    assert client.get(f"/fhir/Patient/{pid}").status_code == 410
    assert client.delete(f"/fhir/Patient?identifier={NHS}|{nhs}").status_code == 204  # nothing left
    other = _nhs()
    client.post("/fhir/Patient", json=_patient(other), headers=FHIR)
    client.post("/fhir/Patient", json=_patient(other), headers=FHIR)
    assert client.delete(f"/fhir/Patient?identifier={NHS}|{other}").status_code == 412


def test_transaction_conditional_reference_and_create(client):
    nhs = _nhs()
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": _patient(nhs),
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={NHS}|{nhs}"}},
    ]}
    first = client.post("/fhir", json=tx, headers=FHIR).json()
    again = client.post("/fhir", json=tx, headers=FHIR).json()
    assert first["entry"][0]["response"]["status"].startswith("201")
    assert again["entry"][0]["response"]["status"].startswith("200")
    assert first["entry"][0]["response"]["location"].split("/")[1] == again["entry"][0]["response"]["location"].split("/")[1]
    obs_tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": f"Patient?identifier={NHS}|{nhs}"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    body = client.post("/fhir", json=obs_tx, headers=FHIR).json()
    obs = client.get("/fhir/" + body["entry"][0]["response"]["location"].split("/_history")[0]).json()
    assert obs["subject"]["reference"] == "Patient/" + first["entry"][0]["response"]["location"].split("/")[1]
    missing = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": f"Patient?identifier={NHS}|0000000000"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    assert client.post("/fhir", json=missing, headers=FHIR).status_code == 404
