"""Off-the-shelf FHIR clients (fhirpy, fhirclient) against the real server over HTTP."""

from __future__ import annotations

import uuid

import httpx
import pytest

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def test_fhirpy_create_read_update_search_and_paging(live_server):
    from fhirpy import SyncFHIRClient

    client = SyncFHIRClient(live_server, extra_headers={"Accept": "application/fhir+json"})
    family = f"Fpy{uuid.uuid4().hex[:6]}"
    patient = client.resource("Patient", name=[{"family": family, "given": ["Joan"]}], gender="female",
                              identifier=[{"system": NHS, "value": "9990000425"}])
    patient.save()
    assert patient.id
    fetched = client.reference("Patient", patient.id).to_resource()
    assert fetched["name"][0]["family"] == family
    fetched["gender"] = "other"
    fetched.save()
    again = client.reference("Patient", patient.id).to_resource()
    assert again["gender"] == "other" and again["meta"]["versionId"] == "2"
    for i in range(5):
        client.resource("Observation", status="final", code={"text": f"obs {i}"},
                        subject=patient.to_reference()).save()
    found = client.resources("Patient").search(family=family).fetch()
    assert [p.id for p in found] == [patient.id]
    # fetch_all follows the server's next links page by page
    all_obs = client.resources("Observation").search(subject=f"Patient/{patient.id}").limit(2).fetch_all()
    assert len(all_obs) == 5 and len({o.id for o in all_obs}) == 5
    # _include read by the client
    bundle = client.resources("Observation").search(subject=f"Patient/{patient.id}").include("Observation", "subject").fetch_raw()
    included = [e for e in bundle.entry if e.get("search", {}).get("mode") == "include"]
    assert [e.resource["id"] for e in included] == [patient.id]


def test_fhirclient_create_read_update_search(live_server):
    from fhirclient import client as fc
    from fhirclient.models.humanname import HumanName
    from fhirclient.models.patient import Patient

    smart = fc.FHIRClient(settings={"app_id": "exchange-tests", "api_base": live_server + "/"})
    family = f"Fcl{uuid.uuid4().hex[:6]}"
    p = Patient()
    name = HumanName()
    name.family = family
    name.given = ["Peter"]
    p.name = [name]
    p.gender = "male"
    created = p.create(smart.server)
    assert created["resourceType"] == "Patient"
    pid = created["id"]
    read = Patient.read(pid, smart.server)
    assert read.name[0].family == family
    read.gender = "unknown"
    read.update(smart.server)
    assert Patient.read(pid, smart.server).gender == "unknown"
    results = Patient.where(struct={"family": family}).perform_resources(smart.server)
    assert [r.id for r in results] == [pid]


def test_fhirclient_follows_next_links_and_reads_includes(live_server):
    """fhirclient pages through a search by the server's ``next`` links (``perform_iter``,
    fhirclient/_utils.py ``iter_pages``) and reads ``_include``d resources (R4
    search.html#include: entries with ``search.mode = include``)."""
    from fhirclient import client as fc
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient

    smart = fc.FHIRClient(settings={"app_id": "exchange-tests", "api_base": live_server + "/"})
    p = Patient({"resourceType": "Patient", "name": [{"family": f"Fpg{uuid.uuid4().hex[:6]}"}]})
    pid = p.create(smart.server)["id"]
    created = set()
    for i in range(5):
        obs = Observation({"resourceType": "Observation", "status": "final", "code": {"text": f"obs {i}"},
                           "subject": {"reference": f"Patient/{pid}"}})
        created.add(obs.create(smart.server)["id"])

    search = Observation.where(struct={"subject": f"Patient/{pid}", "_count": "2"}).include("subject")
    pages = list(search.perform_iter(smart.server))
    assert len(pages) == 3  # 2 + 2 + 1: the client followed two next links
    matches = [e.resource for b in pages for e in b.entry or [] if e.search.mode == "match"]
    included = [e.resource for b in pages for e in b.entry or [] if e.search.mode == "include"]
    assert {m.id for m in matches} == created and len(matches) == 5
    assert all(isinstance(m, Observation) for m in matches)
    # the client parsed each page's included Patient into its model
    assert included and all(isinstance(r, Patient) and r.id == pid for r in included)


def test_server_errors_reach_clients_as_operation_outcomes(live_server):
    r = httpx.get(live_server + "/Patient/not-there-" + uuid.uuid4().hex[:6])
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    with pytest.raises(httpx.HTTPStatusError):
        r.raise_for_status()
