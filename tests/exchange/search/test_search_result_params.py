"""Result parameters without a test until now (issue 3, #4), through HTTP on both databases:
``_summary=text`` and ``_summary=false`` (R4 search.html#summary), ``_total=estimate``
(search.html#total), and the exact id sets of ``_profile`` and ``_security``
(search.html#all: token / uri on ``meta.profile`` and ``meta.security``)."""

from __future__ import annotations

import pytest

FHIR = {"content-type": "application/fhir+json"}
PROF_A = "https://example.org/StructureDefinition/result-a"
PROF_B = "https://example.org/StructureDefinition/result-b"
CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SUBSETTED = "SUBSETTED"
NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Resultson</div>'}


@pytest.fixture(scope="module")
def record(client):  # noqa: ANN001, ANN201
    people = {
        "rp1": {"meta": {"profile": [PROF_A], "security": [{"system": ACT, "code": "PSY"}]}},
        "rp2": {"meta": {"profile": [PROF_B]}},
        "rp3": {"meta": {"profile": [PROF_A, PROF_B], "security": [{"system": ACT, "code": "HIV"}]}},
        "rp4": {},
    }
    for pid, extra in people.items():
        body = {"resourceType": "Patient", "id": pid, "text": NARRATIVE, "name": [{"family": "Resultson", "given": [pid]}],
                "gender": "female", **extra}
        r = client.put(f"/fhir/Patient/{pid}", json=body, headers=FHIR)
        assert r.status_code in (200, 201), r.text
    r = client.put("/fhir/Observation/ro1", headers=FHIR, json={
        "resourceType": "Observation", "id": "ro1", "text": NARRATIVE, "status": "final", "code": {"text": "pulse"},
        "subject": {"reference": "Patient/rp1"}, "valueQuantity": {"value": 70, "unit": "/min"}})
    assert r.status_code in (200, 201), r.text
    return sorted(people)


def _search(client, query: str) -> dict:  # noqa: ANN001
    r = client.get(f"/fhir/{query}")
    assert r.status_code == 200, r.text
    return r.json()


def _ids(bundle: dict) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def _tags(resource: dict) -> set[str]:
    """``meta.tag`` codes: R4 search.html#summary marks subsetted resources with the
    v3-ObservationValue ``SUBSETTED`` code in ``Resource.meta.tag``."""
    return {s.get("code") for s in resource.get("meta", {}).get("tag", [])}


def test_profile_exact_id_sets(client, record):
    assert _ids(_search(client, f"Patient?_profile={PROF_A}")) == {"rp1", "rp3"}
    assert _ids(_search(client, f"Patient?_profile={PROF_B}")) == {"rp2", "rp3"}
    assert _ids(_search(client, f"Patient?_profile={PROF_A},{PROF_B}")) == {"rp1", "rp2", "rp3"}
    assert _ids(_search(client, f"Patient?_profile={PROF_A}&_profile={PROF_B}")) == {"rp3"}
    assert _ids(_search(client, "Patient?_profile=https://example.org/StructureDefinition/none")) == set()
    assert _ids(_search(client, "Patient?_profile:missing=true&family=resultson")) == {"rp4"}


def test_security_exact_id_sets(client, record):
    assert _ids(_search(client, f"Patient?_security={ACT}|PSY")) == {"rp1"}
    assert _ids(_search(client, f"Patient?_security={ACT}|HIV")) == {"rp3"}
    assert _ids(_search(client, "Patient?_security=PSY,HIV")) == {"rp1", "rp3"}  # code in any system
    assert _ids(_search(client, f"Patient?_security={CONF}|PSY")) == set()  # right code, wrong system
    assert _ids(_search(client, f"Patient?_security:not={ACT}|PSY&family=resultson")) == {"rp2", "rp3", "rp4"}


def test_summary_text_keeps_text_id_meta_and_mandatory_elements(client, record):
    bundle = _search(client, "Patient?family=resultson&_summary=text")
    assert _ids(bundle) == set(record)
    for e in bundle["entry"]:
        res = e["resource"]
        assert set(res) <= {"resourceType", "id", "meta", "text"}, set(res)
        assert res["text"]["div"] == NARRATIVE["div"]
        assert SUBSETTED in _tags(res)
    obs = _search(client, "Observation?_id=ro1&_summary=text")["entry"][0]["resource"]
    assert {"text", "status"} <= set(obs) and "subject" not in obs and "valueQuantity" not in obs
    assert SUBSETTED in _tags(obs)


def test_summary_text_keeps_mandatory_complex_elements(client, record):
    obs = _search(client, "Observation?_id=ro1&_summary=text")["entry"][0]["resource"]
    # Observation.status and Observation.code are mandatory (1..1), so both stay
    assert set(obs) == {"resourceType", "id", "meta", "text", "status", "code"}


def test_elements_keeps_mandatory_complex_elements(client, record):
    # search.html#elements: mandatory elements are returned whatever _elements names
    obs = _search(client, "Observation?_id=ro1&_elements=subject")["entry"][0]["resource"]
    assert set(obs) == {"resourceType", "id", "meta", "status", "code", "subject"}
    assert obs["code"] == {"text": "pulse"}
    assert SUBSETTED in _tags(obs)


def test_summary_text_and_elements_keep_mandatory_choice_element(client, record):
    # MedicationRequest.medication[x] is 1..1: the variant the resource carries is kept
    r = client.put("/fhir/MedicationRequest/rm1", headers=FHIR, json={
        "resourceType": "MedicationRequest", "id": "rm1", "text": NARRATIVE, "status": "active",
        "intent": "order", "medicationCodeableConcept": {"text": "aspirin"},
        "subject": {"reference": "Patient/rp2"}, "note": [{"text": "with food"}]})
    assert r.status_code in (200, 201), r.text
    mr = _search(client, "MedicationRequest?_id=rm1&_summary=text")["entry"][0]["resource"]
    assert set(mr) == {"resourceType", "id", "meta", "text", "status", "intent", "medicationCodeableConcept", "subject"}
    mr = _search(client, "MedicationRequest?_id=rm1&_elements=note")["entry"][0]["resource"]
    assert set(mr) == {"resourceType", "id", "meta", "status", "intent", "medicationCodeableConcept", "subject", "note"}


def test_summary_false_is_the_whole_resource(client, record):
    bundle = _search(client, "Patient?family=resultson&_summary=false")
    assert _ids(bundle) == set(record)
    for e in bundle["entry"]:
        res = e["resource"]
        assert res == client.get(f"/fhir/Patient/{res['id']}").json()
        assert SUBSETTED not in _tags(res)
    obs = _search(client, "Observation?_id=ro1&_summary=false")["entry"][0]["resource"]
    assert obs == client.get("/fhir/Observation/ro1").json()


def test_total_estimate_counts_and_none_omits(client, record):
    est = _search(client, "Patient?family=resultson&_total=estimate&_count=1")
    assert est["total"] == 4 and len(est["entry"]) == 1
    est = _search(client, f"Patient?_profile={PROF_A}&_total=estimate")
    assert est["total"] == 2
    assert "total" not in _search(client, "Patient?family=resultson&_total=none&_count=1")
    assert _search(client, "Patient?family=resultson&_total=accurate&_count=1")["total"] == 4
