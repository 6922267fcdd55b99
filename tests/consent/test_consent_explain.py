"""$access-check: per type and per resource decisions with the rule and directive."""

from __future__ import annotations

import orjson
import pytest

from consent.explain import access_check
from exchange.db.engine import read_tx
from exchange.outcome import Forbidden
from exchange.pipeline.context import RequestContext, Requester

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SCT = "http://snomed.info/sct"


@pytest.fixture(scope="module")
def record(put):  # noqa: ANN001, ANN201
    put({"resourceType": "Organization", "id": "xo-gp", "identifier": [{"system": ODS, "value": "B82002"}]})
    put({"resourceType": "Patient", "id": "xp1", "generalPractitioner": [{"reference": "Organization/xo-gp"}]})
    for i in range(2):
        put({"resourceType": "Observation", "id": f"xobs{i}", "status": "final",
             "code": {"coding": [{"system": SCT, "code": "75367002"}]}, "subject": {"reference": "Patient/xp1"}})
    put({"resourceType": "Flag", "id": "xflag", "status": "active", "subject": {"reference": "Patient/xp1"},
         "code": {"coding": [{"system": SCT, "code": "450476008"}]}})
    put({"resourceType": "Consent", "id": "xc", "status": "active", "patient": {"reference": "Patient/xp1"},
         "scope": {"coding": [{"code": "patient-privacy"}]},
         "provision": {"type": "deny", "provision": [{"type": "permit", "actor": [
             {"reference": {"identifier": {"system": ODS, "value": "B82002"}}}]}]}})
    return True


def params(**kv: str) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": k, "valueString": v} for k, v in kv.items()]}


def run(cengine, settings, caller: Requester, p: dict) -> dict:  # noqa: ANN001
    with read_tx(cengine) as conn:
        return orjson.loads(access_check(conn, RequestContext(requester=caller), settings, "xp1", p))


def parts(result: dict) -> dict:
    return {p["name"]: next((v for k, v in p.items() if k.startswith("value")), None)
            for p in result["part"]}


SYSTEM = Requester(kind="system", client_id="ig-tools")


def test_per_type_explanation_for_an_objecting_patient(record, cengine, settings):
    out = run(cengine, settings, SYSTEM, params(kind="user", role="R8000", organization="RQQ09",
                                                purpose="BTG"))
    top = {p["name"]: p for p in out["parameter"]}
    assert top["relationship"]["valueBoolean"] is False
    results = {parts(r)["resourceType"]: r for r in out["parameter"] if r["name"] == "result"}
    obs = parts(results["Observation"])
    assert (obs["decision"], obs["count"], obs["denied"]) == ("deny", 2, 2)
    rules = [r for r in results["Observation"]["part"] if r["name"] == "rule"]
    assert {p["name"]: p.get("valueString") for p in rules[0]["part"]}["id"] == "break-glass.no-reason"


def test_per_resource_explanation_names_the_directive(record, cengine, settings):
    out = run(cengine, settings, SYSTEM, params(kind="system", clientId="other", detail="resource"))
    by_ref = {parts(r)["resource"]["reference"]: parts(r) for r in out["parameter"] if r["name"] == "result"}
    assert by_ref["Observation/xobs0"]["decision"] == "deny"
    assert by_ref["Observation/xobs0"]["rule"] == "consent.Consent/xc#provision"
    assert by_ref["Observation/xobs0"]["directive"] == {"reference": "Consent/xc"}
    assert by_ref["Flag/xflag"]["decision"] == "permit"
    assert by_ref["Patient/xp1"]["decision"] == "permit"
    notices = [p["valueString"] for p in out["parameter"] if p["name"] == "notice"]
    assert len(notices) == 1


def test_gp_permitted_by_nested_exception(record, cengine, settings):
    out = run(cengine, settings, SYSTEM, params(kind="user", role="R0260", organization="B82002",
                                                resourceType="Observation"))
    results = [parts(r) for r in out["parameter"] if r["name"] == "result"]
    assert [(r["resourceType"], r["decision"], r["permitted"]) for r in results] == [("Observation", "permit", 2)]


def test_only_ig_and_system_callers(record, cengine, settings):
    clinician = Requester(kind="user", role="R8000", organization="B82002")
    with pytest.raises(Forbidden):
        run(cengine, settings, clinician, params(kind="user"))
    caldicott = Requester(kind="user", role="R5105", organization="B82002")
    assert run(cengine, settings, caldicott, params(kind="patient"))["resourceType"] == "Parameters"
