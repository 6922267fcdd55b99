"""$everything carries the Provenance of the patient's resources (where each came from)."""

from __future__ import annotations

FHIR = {"content-type": "application/fhir+json"}


def _put(client, res):
    r = client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=FHIR)
    assert r.status_code in (200, 201), r.text


def test_everything_includes_provenance_of_members_only(client):
    _put(client, {"resourceType": "Patient", "id": "ev-prov-a"})
    _put(client, {"resourceType": "Patient", "id": "ev-prov-b"})
    _put(client, {"resourceType": "Observation", "id": "ev-prov-obs-a", "status": "final", "code": {"text": "x"},
                  "subject": {"reference": "Patient/ev-prov-a"}})
    _put(client, {"resourceType": "Observation", "id": "ev-prov-obs-b", "status": "final", "code": {"text": "x"},
                  "subject": {"reference": "Patient/ev-prov-b"}})
    for who in ("a", "b"):
        _put(client, {"resourceType": "Provenance", "id": f"ev-prov-{who}-src", "recorded": "2026-11-30T00:00:00Z",
                      "target": [{"reference": f"Observation/ev-prov-obs-{who}/_history/1"}],
                      "agent": [{"who": {"display": f"source {who}"}}]})
    body = client.get("/fhir/Patient/ev-prov-a/$everything").json()
    ids = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in body["entry"]}
    assert ("Provenance", "ev-prov-a-src") in ids
    assert ("Provenance", "ev-prov-b-src") not in ids
    assert ("Observation", "ev-prov-obs-b") not in ids
