"""Content negotiation, errors and limits of the HTTP facade (R4 http.html#mime-type)."""

from __future__ import annotations

import orjson

FHIR = {"content-type": "application/fhir+json"}


def test_metadata_is_a_truthful_capability_statement(client):
    r = client.get("/fhir/metadata")
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    types = {res["type"] for res in cs["rest"][0]["resource"]}
    for t in ("Patient", "Observation", "Flag", "Consent", "List", "Appointment"):
        assert t in types
    patient = next(res for res in cs["rest"][0]["resource"] if res["type"] == "Patient")
    assert {"read", "vread", "update", "patch", "delete", "create", "search-type"} <= {i["code"] for i in patient["interaction"]}
    assert {i["code"] for i in cs["rest"][0]["interaction"]} >= {"transaction", "batch"}


def test_format_and_accept(client):
    assert client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"}).status_code == 406
    r = client.get("/fhir/metadata?_format=xml")
    assert r.status_code == 406 and r.json()["issue"][0]["code"] == "not-supported"
    r = client.get("/fhir/metadata", headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    r = client.get("/fhir/metadata?_format=json")
    assert r.headers["content-type"].startswith("application/fhir+json")


def test_pretty(client):
    r = client.get("/fhir/metadata?_pretty=true")
    assert r.text.startswith("{\n  ")
    assert orjson.loads(r.content)["resourceType"] == "CapabilityStatement"


def test_wrong_content_type_and_charset(client):
    r = client.post("/fhir/Patient", content=b"<Patient/>", headers={"content-type": "application/fhir+xml"})
    assert r.status_code == 415 and r.json()["resourceType"] == "OperationOutcome"
    r = client.post("/fhir/Patient", content=b'{"resourceType":"Patient"}',
                    headers={"content-type": "application/fhir+json; charset=latin-1"})
    assert r.status_code == 415


def test_malformed_json(client):
    r = client.post("/fhir/Patient", content=b'{"resourceType": "Patient",', headers=FHIR)
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "structure"
    r = client.post("/fhir/Patient", content=b"[1,2]", headers=FHIR)
    assert r.status_code == 400


def test_body_size_limit(client, settings):
    big = b'{"resourceType":"Patient","text":{"status":"generated","div":"' + b"x" * (settings.max_body_bytes + 10) + b'"}}'
    r = client.post("/fhir/Patient", content=big, headers=FHIR)
    assert r.status_code == 413 and r.json()["issue"][0]["code"] == "too-long"


def test_utf8_round_trip(client):
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Dubois", "given": ["Renée"]}]}, headers=FHIR)
    pid = r.json()["id"]
    got = client.get(f"/fhir/Patient/{pid}")
    assert got.json()["name"][0]["given"] == ["Renée"]
    assert "Renée".encode() in got.content


def test_openapi_served(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.json()["openapi"].startswith("3.")
