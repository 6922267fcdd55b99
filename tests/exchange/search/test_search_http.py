"""Search through the HTTP facade: GET, POST _search, paging links, lenient handling,
compartment and $everything routes (R4 http.html#search, search.html)."""

from __future__ import annotations

import pytest

FHIR = {"content-type": "application/fhir+json"}


@pytest.fixture(scope="module")
def people(client):  # noqa: ANN001, ANN201
    ids = []
    for i in range(5):
        r = client.put(f"/fhir/Patient/http{i}", headers=FHIR, json={
            "resourceType": "Patient", "id": f"http{i}", "name": [{"family": f"Httpson{i}"}],
            "gender": "female" if i % 2 else "male"})
        assert r.status_code in (200, 201), r.text
        ids.append(f"http{i}")
    r = client.put("/fhir/Observation/httpobs", headers=FHIR, json={
        "resourceType": "Observation", "id": "httpobs", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/http1"}})
    assert r.status_code in (200, 201), r.text
    return ids


def _ids(bundle):
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def test_get_search_and_follow_next_links(client, people):
    r = client.get("/fhir/Patient", params={"family": "httpson", "_count": "2"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    seen = _ids(bundle)
    while nxt := {x["relation"]: x["url"] for x in bundle["link"]}.get("next"):
        bundle = client.get(nxt).json()
        seen += _ids(bundle)
    assert sorted(seen) == people


def test_post_search_form_body(client, people):
    r = client.post("/fhir/Patient/_search", content="family=httpson&gender=female",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and sorted(_ids(r.json())) == ["http1", "http3"]


def test_unknown_parameter_400_and_lenient(client, people):
    r = client.get("/fhir/Patient", params={"family": "httpson", "colour": "blue"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    r = client.get("/fhir/Patient", params={"family": "httpson", "colour": "blue"},
                   headers={"Prefer": "handling=lenient"})
    assert r.status_code == 200 and len(_ids(r.json())) == 5


def test_compartment_and_everything_routes(client, people):
    r = client.get("/fhir/Patient/http1/Observation")
    assert r.status_code == 200 and _ids(r.json()) == ["httpobs"]
    r = client.get("/fhir/Patient/http1/$everything")
    assert r.status_code == 200, r.text
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {"http1", "httpobs"}
