"""The hospital's care relationship comes from the Encounters its HL7 v2 feed wrote
(issue 9, gaps #4), end to end on SQLite and PostgreSQL.

Only the hospital feed (adapters/hl7v2/samples/rem-uk-feed.hl7, source REM) is
loaded, so the sole link between the trust and Joan Whitfield is
``Encounter.serviceProvider`` as the adapter maps it (MSH-4 -> ``Organization/org-REM``
with its ODS identifier), read by consent/facts.py. Authorisation, consent and audit
are on; tokens are real (``quick_token``). A clinician of the trust (ODS REM, role
R8000) reads her record; a clinician of an organisation with no relationship cannot;
and once the visit is outside the relationship look-back, the trust is refused too,
so it is the Encounter, nothing else, that gives the access."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from adapters.hl7v2 import Hl7v2Adapter
from adapters.identity import stored_id
from adapters.pipeline import ingest
from exchange.app import create_app
from exchange.auth.testing import bearer, quick_token
from exchange.demo import NHS, SAMPLES, SHARED_PERSON
from exchange.settings import Settings

FEED = SAMPLES / "hl7v2/samples/rem-uk-feed.hl7"
DISCHARGED = datetime(2026, 11, 15, 16, 0, tzinfo=UTC)  # Joan's visit V100001 (A03)


def _settings(db_url, var_dir, lookback_days: int) -> Settings:  # noqa: ANN001
    return Settings(database_url=db_url, base_url="http://testserver/fhir", var_dir=var_dir,
                    secret_key="test-secret", relationship_lookback_days=lookback_days)


@pytest.fixture(scope="module")
def hospital(db_url, var_dir, engine):  # noqa: ANN001, ANN201
    # a look-back that covers the sample discharge whenever the test runs: the mapping,
    # not the calendar, is under test
    lookback = max(365, (datetime.now(UTC) - DISCHARGED).days + 30)
    settings = _settings(db_url, var_dir, lookback)
    report = ingest(engine, settings, Hl7v2Adapter(), [FEED], source_system="REM")
    assert report.rejected == 0, report.to_dict()["problems"][:3]
    with TestClient(create_app(settings, engine=engine)) as client:
        yield client, settings


def _token(engine, settings, organization: str) -> dict:  # noqa: ANN001
    return bearer(quick_token(engine, settings, scope="user/*.rs", organization=organization,
                              role="R8000", purpose="TREAT", client_id=f"client-{organization}"))


def _joan(client, headers) -> list[dict]:  # noqa: ANN001
    found = client.get(f"/fhir/Patient?identifier={NHS}|{SHARED_PERSON}", headers=headers)
    assert found.status_code == 200, found.text
    return [e["resource"] for e in found.json().get("entry", [])
            if e.get("search", {}).get("mode") == "match"]


def test_the_adapter_writes_the_serviceprovider_consent_reads(hospital, engine) -> None:  # noqa: ANN001
    from sqlalchemy import select

    from consent.tables import consent_link

    with engine.connect() as conn:
        links = conn.execute(select(consent_link.c.kind, consent_link.c.org_ref,
                                    consent_link.c.org_ods)
                             .where(consent_link.c.kind == "encounter")).all()
    # every hospital visit links the patient to the trust, by reference and by ODS code
    trust = f"Organization/{stored_id('REM', 'org-REM', 'Organization')}"
    assert links and {(ln.org_ref, ln.org_ods) for ln in links} == {(trust, "REM")}


def test_hospital_clinician_reads_the_patient_through_the_api(hospital, engine) -> None:  # noqa: ANN001
    client, settings = hospital
    h = _token(engine, settings, "REM")
    matches = _joan(client, h)
    assert len(matches) == 1
    pid = matches[0]["id"]
    assert client.get(f"/fhir/Patient/{pid}", headers=h).status_code == 200
    body = client.get(f"/fhir/Patient/{pid}/$everything?_count=1000", headers=h)
    assert body.status_code == 200, body.text
    types = {e["resource"]["resourceType"] for e in body.json()["entry"]}
    assert {"Encounter", "Observation", "DiagnosticReport", "Flag", "DocumentReference",
            "Condition"} <= types, types
    flags = client.get(f"/fhir/Flag?patient={pid}", headers=h).json()
    codes = {c["code"] for e in flags.get("entry", []) for c in e["resource"]["code"]["coding"]}
    assert "450475007" in codes  # the hospital's own CPR decision


def test_stranger_organisation_is_refused(hospital, engine) -> None:  # noqa: ANN001
    client, settings = hospital
    h = _token(engine, settings, "Y99999")
    assert _joan(client, h) == []
    pid = _joan(client, _token(engine, settings, "REM"))[0]["id"]
    assert client.get(f"/fhir/Patient/{pid}", headers=h).status_code in (403, 404)
    everything = client.get(f"/fhir/Patient/{pid}/$everything", headers=h)
    assert everything.status_code in (403, 404) or not [
        e for e in everything.json().get("entry", [])
        if e["resource"]["resourceType"] not in ("OperationOutcome",)]


def test_without_a_recent_encounter_the_hospital_is_refused(hospital, db_url, var_dir, engine) -> None:  # noqa: ANN001
    # the same data, with a look-back that ends after the discharge: Joan's visit no longer
    # counts, and the trust has no other link to her
    _, loaded = hospital
    lookback = (datetime.now(UTC) - DISCHARGED).days - 1
    if lookback < 0:
        pytest.skip("the clock is before the sample discharge: no look-back can exclude it")
    settings = _settings(db_url, var_dir, lookback)
    with TestClient(create_app(settings, engine=engine)) as client:
        h = _token(engine, settings, "REM")
        assert _joan(client, h) == []
    assert loaded.relationship_lookback_days > lookback
