"""batch and transaction Bundles (R4 http.html#transaction) on both databases."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from exchange.db.tables import resource_version

FHIR = {"content-type": "application/fhir+json"}


def _count_versions(engine) -> int:
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(resource_version)).scalar_one()


def test_transaction_resolves_urn_uuid_references(client):
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "BP"},
                      "subject": {"reference": "urn:uuid:aaaa"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:aaaa", "resource": {"resourceType": "Patient", "name": [{"family": "Nolan"}]},
         "request": {"method": "POST", "url": "Patient"}},
    ]}
    r = client.post("/fhir", json=tx, headers=FHIR)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "transaction-response"
    obs_loc, pat_loc = (e["response"]["location"] for e in body["entry"])  # original order kept
    assert obs_loc.startswith("Observation/") and pat_loc.startswith("Patient/")
    obs = client.get("/fhir/" + obs_loc.split("/_history")[0]).json()
    assert obs["subject"]["reference"] == pat_loc.split("/_history")[0]


def test_failing_transaction_rolls_back_everything(client, engine):
    before = _count_versions(engine)
    keep_id = f"k-{uuid.uuid4().hex[:8]}"
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": keep_id}, "request": {"method": "PUT", "url": f"Patient/{keep_id}"}},
        {"resource": {"resourceType": "Patient", "name": [{"family": "Good"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final"}, "request": {"method": "POST", "url": "Observation"}},
    ]}
    r = client.post("/fhir", json=tx, headers=FHIR)
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert "Bundle.entry[2]" in issue["diagnostics"]
    assert _count_versions(engine) == before
    assert client.get(f"/fhir/Patient/{keep_id}").status_code == 404


def test_transaction_processing_order_delete_before_create(client):
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()["id"]
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": pid, "gender": "male"}, "request": {"method": "PUT", "url": f"Patient/{pid}"}},
        {"request": {"method": "GET", "url": f"Patient/{pid}"}},
    ]}
    body = client.post("/fhir", json=tx, headers=FHIR).json()
    # GET runs after PUT (R4 transaction processing rules) and sees the new version
    assert body["entry"][1]["resource"]["gender"] == "male"


def test_transaction_rejects_duplicate_targets(client):
    pid = f"d-{uuid.uuid4().hex[:8]}"
    entry = {"resource": {"resourceType": "Patient", "id": pid}, "request": {"method": "PUT", "url": f"Patient/{pid}"}}
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry, entry]}, headers=FHIR)
    assert r.status_code == 400


def test_transaction_unresolved_urn_is_error(client):
    tx = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:nowhere"}}, "request": {"method": "POST", "url": "Observation"}}]}
    r = client.post("/fhir", json=tx, headers=FHIR)
    assert r.status_code == 400


def test_batch_reports_each_entry(client):
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()["id"]
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{pid}"}},
        {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
        {"resource": {"resourceType": "Patient", "birthDate": "bad"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
    ]}
    r = client.post("/fhir", json=batch, headers=FHIR)
    assert r.status_code == 200
    entries = r.json()["entry"]
    assert r.json()["type"] == "batch-response"
    assert entries[0]["response"]["status"].startswith("200") and entries[0]["resource"]["id"] == pid
    assert entries[1]["response"]["status"] == "404"
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[2]["response"]["status"] == "400"
    assert entries[3]["response"]["status"].startswith("201")


def test_bundle_limits_and_types(client, settings):
    too_many = {"resourceType": "Bundle", "type": "batch",
                "entry": [{"request": {"method": "GET", "url": "metadata"}}] * (settings.max_bundle_entries + 1)}
    r = client.post("/fhir", json=too_many, headers=FHIR)
    assert r.status_code == 413 and r.json()["issue"][0]["code"] == "too-long"
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "collection"}, headers=FHIR)
    assert r.status_code == 400
    r = client.post("/fhir", json={"resourceType": "Patient"}, headers=FHIR)
    assert r.status_code == 400


def test_history_paging_and_since(client):
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR).json()["id"]
    for g in ("male", "female", "other", "unknown"):
        client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "gender": g}, headers=FHIR)
    seen = []
    url = f"/fhir/Patient/{pid}/_history?_count=2"
    while url:
        page = client.get(url).json()
        seen += [e["response"]["etag"] for e in page["entry"]]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        url = nxt[0].replace("http://testserver", "") if nxt else None
    assert seen == [f'W/"{v}"' for v in (5, 4, 3, 2, 1)]
    v3 = client.get(f"/fhir/Patient/{pid}/_history/3").json()["meta"]["lastUpdated"]
    since = client.get(f"/fhir/Patient/{pid}/_history", params={"_since": v3}).json()
    assert [e["response"]["etag"] for e in since["entry"]] == ['W/"5"', 'W/"4"', 'W/"3"']
    assert client.get(f"/fhir/Patient/{pid}/_history?_since=yesterday").status_code == 400
    assert client.get(f"/fhir/Patient/{pid}/_history?_cursor=forged.token").status_code == 400
    type_hist = client.get("/fhir/Patient/_history?_count=3").json()
    assert type_hist["type"] == "history" and len(type_hist["entry"]) == 3
    assert client.get("/fhir/_history?_count=1").json()["type"] == "history"
