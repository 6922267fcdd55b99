"""One person's GP, hospital, community and social care records meet in one shared
record (issue 9, "Done means"): after loading the sample feeds exactly as ``make demo``
does, ``Patient/$everything`` for Joan Whitfield, asked by her GP practice with a real
token and consent and audit on, returns data from all four sources with the Provenance
naming each, and ``$care-preferences`` reports the cross-source CPR conflict."""

from __future__ import annotations

from collections import Counter

import pytest
from fastapi.testclient import TestClient

from adapters.pipeline import ingest
from adapters.registry import load
from exchange.app import create_app
from exchange.auth.testing import bearer, quick_token
from exchange.demo import FEEDS, NHS, SHARED_PERSON
from exchange.settings import Settings

SOURCE_TAG = "https://exchange.example.nhs.uk/source-system"


@pytest.fixture(scope="module")
def loaded(db_url, var_dir, engine):  # noqa: ANN001, ANN201
    settings = Settings(database_url=db_url, base_url="http://testserver/fhir", var_dir=var_dir,
                        secret_key="test-secret")
    for name, source_system, paths in FEEDS:
        report = ingest(engine, settings, load(name), paths, source_system=source_system)
        assert report.rejected == 0, (name, report.to_dict()["problems"][:3])
    app = create_app(settings, engine=engine)
    with TestClient(app) as client:
        yield client, settings


def _gp(client, settings, engine, organization="N82001"):  # noqa: ANN001, ANN202
    return bearer(quick_token(engine, settings, scope="user/*.rs", organization=organization,
                              role="R8000", purpose="TREAT"))


def test_everything_has_all_four_sources_with_provenance(loaded, engine):
    client, settings = loaded
    h = _gp(client, settings, engine)
    found = client.get(f"/fhir/Patient?identifier={NHS}|{SHARED_PERSON}", headers=h).json()
    matches = [e for e in found["entry"] if e["search"]["mode"] == "match"]
    assert len(matches) == 1
    pid = matches[0]["resource"]["id"]
    body = client.get(f"/fhir/Patient/{pid}/$everything?_count=1000", headers=h).json()
    resources = [e["resource"] for e in body["entry"] if e["resource"]["resourceType"] != "OperationOutcome"]
    sources = Counter(t["code"] for r in resources for t in r.get("meta", {}).get("tag", [])
                      if t.get("system") == SOURCE_TAG and r["resourceType"] != "Provenance")
    assert {"N82001", "REM", "RW4", "LA1"} <= set(sources), sources
    provenance_sources = {a["who"]["identifier"]["value"] for r in resources if r["resourceType"] == "Provenance"
                          for a in r["agent"] if "identifier" in a.get("who", {})}
    assert {"N82001", "REM", "RW4", "LA1"} <= provenance_sources


def test_care_preferences_show_the_cross_source_conflict(loaded, engine):
    client, settings = loaded
    h = _gp(client, settings, engine)
    found = client.get(f"/fhir/Patient?identifier={NHS}|{SHARED_PERSON}", headers=h).json()
    pid = next(e["resource"]["id"] for e in found["entry"] if e["search"]["mode"] == "match")
    doc = client.get(f"/fhir/Patient/{pid}/$care-preferences", headers=h).json()
    assert doc["type"] == "document"
    sections = {s["title"]: s for s in doc["entry"][0]["resource"]["section"]}
    conflicts = next(s for t, s in sections.items() if t.lower().startswith("conflicts"))
    assert conflicts.get("entry"), "the GP/community DNACPR vs hospital For-CPR conflict must be reported"
    cards = client.post("/cds-services/care-preferences-patient-view", headers=h,
                        json={"hook": "patient-view", "hookInstance": "t", "context": {"patientId": pid, "userId": "Practitioner/x"}}).json()
    assert any(c["indicator"] == "critical" and "CONFLICT" in c["summary"].upper() for c in cards["cards"])


def test_a_clinician_without_relationship_is_refused(loaded, engine):
    client, settings = loaded
    h = _gp(client, settings, engine, organization="Y99999")
    found = client.get(f"/fhir/Patient?identifier={NHS}|{SHARED_PERSON}", headers=h)
    assert found.status_code == 200
    assert [e for e in found.json().get("entry", []) if e.get("search", {}).get("mode") == "match"] == []
