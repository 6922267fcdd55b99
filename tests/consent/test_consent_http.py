"""The consent layer through the real application with real tokens: 403 on read without a
relationship, empty searches, break-glass, the patient's-request notice in a searchset,
the patient's own app, and $access-check (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from exchange.auth.testing import bearer, quick_token
from exchange.settings import Settings

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SCT = "http://snomed.info/sct"
GP, HOSP, FAR = "HG001", "HH001", "HF001"


def _day(delta: int) -> str:
    return (datetime.now(UTC) + timedelta(days=delta)).date().isoformat()


@pytest.fixture(scope="module")
def http_settings(settings: Settings) -> Settings:
    return settings.with_(auth_enabled=True, consent_enabled=True, audit_enabled=False)


@pytest.fixture(scope="module")
def api(cengine, http_settings: Settings, put) -> Iterator[TestClient]:  # noqa: ANN001
    from exchange.app import create_app

    put({"resourceType": "Organization", "id": "horg-gp", "identifier": [{"system": ODS, "value": GP}]})
    for pid in ("hp1", "hp2"):
        put({"resourceType": "Patient", "id": pid, "name": [{"family": "Httpson"}],
             "generalPractitioner": [{"reference": "Organization/horg-gp"}]})
        put({"resourceType": "Encounter", "id": f"henc-{pid}", "status": "in-progress",
             "class": {"code": "AMB"}, "subject": {"reference": f"Patient/{pid}"},
             "serviceProvider": {"identifier": {"system": ODS, "value": HOSP}},
             "period": {"start": _day(-1)}})
        put({"resourceType": "Observation", "id": f"hobs-{pid}", "status": "final",
             "code": {"coding": [{"system": SCT, "code": "271649006"}]},
             "subject": {"reference": f"Patient/{pid}"}})
        put({"resourceType": "Flag", "id": f"hflag-{pid}", "status": "active",
             "code": {"coding": [{"system": SCT, "code": "450476008"}]},
             "subject": {"reference": f"Patient/{pid}"}})
    put({"resourceType": "Consent", "id": "hc2", "status": "active",
         "scope": {"coding": [{"code": "patient-privacy"}]}, "patient": {"reference": "Patient/hp2"},
         "provision": {"type": "deny", "provision": [{"type": "permit", "actor": [
             {"reference": {"identifier": {"system": ODS, "value": GP}}}]}]}})
    with TestClient(create_app(http_settings, engine=cengine)) as client:
        yield client


def token(cengine, http_settings, **kw: object) -> dict[str, str]:  # noqa: ANN001
    kw.setdefault("scope", "user/*.rs")
    return bearer(quick_token(cengine, http_settings, client_id="consent-http", **kw))


def test_relationship_read_search_and_break_glass(api, cengine, http_settings):
    hosp = token(cengine, http_settings, organization=HOSP)
    assert api.get("/fhir/Observation/hobs-hp1", headers=hosp).status_code == 200
    far = token(cengine, http_settings, organization=FAR)
    refused = api.get("/fhir/Observation/hobs-hp1", headers=far)
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
    found = api.get("/fhir/Observation", params={"patient": "hp1"}, headers=far).json()
    assert found["resourceType"] == "Bundle" and not [
        e for e in found.get("entry", []) if e["resource"]["resourceType"] != "OperationOutcome"]
    btg = token(cengine, http_settings, organization=FAR, purpose="BTG", reason="collapsed in street")
    assert api.get("/fhir/Observation/hobs-hp1", headers=btg).status_code == 200


def test_objection_leaves_demographics_and_care_preferences_with_notice(api, cengine, http_settings):
    hosp = token(cengine, http_settings, organization=HOSP)
    assert api.get("/fhir/Observation/hobs-hp2", headers=hosp).status_code == 404
    assert api.get("/fhir/Patient/hp2", headers=hosp).status_code == 200
    bundle = api.get("/fhir/Observation", params={"patient": "hp2"}, headers=hosp).json()
    assert [e for e in bundle.get("entry", []) if e["resource"]["resourceType"] == "Observation"] == []
    flags = api.get("/fhir/Flag", params={"patient": "hp2"}, headers=hosp).json()
    assert [e["resource"]["id"] for e in flags["entry"] if e["resource"]["resourceType"] == "Flag"] == ["hflag-hp2"]
    text = str(bundle)
    assert "withheld at the patient's request" in text
    gp = token(cengine, http_settings, organization=GP, role="R0260")
    assert api.get("/fhir/Observation/hobs-hp2", headers=gp).status_code == 200


def test_patient_app_sees_only_own_record(api, cengine, http_settings):
    me = token(cengine, http_settings, kind="patient", patient="hp1", scope="patient/*.rs",
               role=None, organization=None)
    assert api.get("/fhir/Observation/hobs-hp1", headers=me).status_code == 200
    assert api.get("/fhir/Observation/hobs-hp2", headers=me).status_code in (403, 404)


def test_access_check_over_http(api, cengine, http_settings):
    system = token(cengine, http_settings, kind="system", scope="system/*.rs")
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "kind", "valueString": "user"}, {"name": "role", "valueString": "R8000"},
        {"name": "organization", "valueString": HOSP}, {"name": "resourceType", "valueString": "Observation"}]}
    r = api.post("/fhir/Patient/hp2/$access-check", json=body, headers=system)
    assert r.status_code == 200, r.text
    results = [p for p in r.json()["parameter"] if p["name"] == "result"]
    parts = {p["name"]: p for p in results[0]["part"]}
    assert parts["decision"]["valueCode"] == "deny"
    assert parts["directive"]["valueReference"]["reference"] == "Consent/hc2"
