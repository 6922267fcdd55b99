"""Care preferences reach the clinician through the real consent gate (issues 5 and 6):
where the patient has objected to sharing, a hospital clinician with a care relationship
still gets the DNACPR, the preferred place of care and the capacity assessment through
$care-preferences and CDS Hooks, but not the rest of the record; a clinician with no
relationship is refused unless they break glass. SQLite and PostgreSQL."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from eol_fixtures import KIND, flag, observation  # noqa: E402

from exchange.auth.testing import bearer, quick_token  # noqa: E402
from exchange.db.engine import write_tx  # noqa: E402
from exchange.repository import store  # noqa: E402

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
GP, HOSP, FAR = "EG001", "EH001", "EF001"


def _put(engine, res: dict) -> None:  # noqa: ANN001
    from consent.facts import index_facts
    from consent.labels import apply_labels

    res = apply_labels(dict(res))
    with write_tx(engine) as conn:
        cur = store.lock_current(conn, res["resourceType"], res["id"])
        stored = store.write_version(conn, res["resourceType"], res["id"], res, method="PUT", current=cur)
        index_facts(conn, stored.rid, res["resourceType"], res)


@pytest.fixture(scope="module")
def api(engine, settings):  # noqa: ANN001, ANN201
    from fastapi.testclient import TestClient

    from exchange.app import create_app

    s = settings.with_(auth_enabled=True, consent_enabled=True, audit_enabled=False)
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    for res in (
        {"resourceType": "Organization", "id": "eorg-gp", "identifier": [{"system": ODS, "value": GP}]},
        {"resourceType": "Patient", "id": "ep1", "generalPractitioner": [{"reference": "Organization/eorg-gp"}]},
        {"resourceType": "Encounter", "id": "eenc1", "status": "in-progress", "class": {"code": "AMB"},
         "subject": {"reference": "Patient/ep1"}, "period": {"start": day},
         "serviceProvider": {"identifier": {"system": ODS, "value": HOSP}}},
        flag("ep1-dnacpr", "450476008", patient="ep1", source="GP"),
        observation("ep1-ppc", "place-of-care", system=KIND, value="Home", patient="ep1", source="Community"),
        observation("ep1-cap", "mental-capacity", system=KIND, value="Lacks capacity", patient="ep1",
                    code_text="Capacity to decide on CPR", source="Hospital"),
        observation("ep1-bp", "75367002", value="150/90", patient="ep1"),  # ordinary record: hidden
        {"resourceType": "Consent", "id": "ep1-objection", "status": "active",
         "scope": {"coding": [{"code": "patient-privacy"}]}, "patient": {"reference": "Patient/ep1"},
         "provision": {"type": "deny", "provision": [{"type": "permit", "actor": [
             {"reference": {"identifier": {"system": ODS, "value": GP}}}]}]}},
    ):
        _put(engine, res)
    with TestClient(create_app(s, engine=engine)) as client:
        client.eol_settings = s  # type: ignore[attr-defined]
        yield client


def tok(engine, api, **kw) -> dict[str, str]:  # noqa: ANN001
    kw.setdefault("scope", "user/*.rs")
    return bearer(quick_token(engine, api.eol_settings, client_id="eol-consent", **kw))


def ids(doc: dict) -> set[str]:
    return {e["resource"].get("id") for e in doc["entry"]}


def test_objection_still_shows_care_preferences_to_direct_care(engine, api) -> None:  # noqa: ANN001
    r = api.get("/fhir/Patient/ep1/$care-preferences", headers=tok(engine, api, organization=HOSP))
    assert r.status_code == 200, r.text
    got = ids(r.json())
    assert {"ep1-dnacpr", "ep1-ppc", "ep1-cap"} <= got
    assert "ep1-bp" not in got and "ep1-objection" not in got
    issues = [e["resource"] for e in r.json()["entry"] if e["resource"]["resourceType"] == "DetectedIssue"]
    assert any("patient's request" in i["detail"] for i in issues)  # the rest of the record is withheld
    hook = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"patientId": "ep1"}}
    cards = api.post("/cds-services/care-preferences-patient-view", json=hook,
                     headers=tok(engine, api, organization=HOSP)).json()["cards"]
    assert cards and cards[0]["indicator"] == "critical" and cards[0]["summary"].startswith("DNACPR")
    assert any(c["indicator"] == "info" and "patient's request" in c["summary"] for c in cards)


def test_no_relationship_is_refused_unless_break_glass(engine, api) -> None:  # noqa: ANN001
    path = "/fhir/Patient/ep1/$care-preferences"
    assert api.get(path, headers=tok(engine, api, organization=FAR)).status_code == 403
    btg = tok(engine, api, organization=FAR, purpose="BTG", reason="Cardiac arrest in the street")
    r = api.get(path, headers=btg)
    assert r.status_code == 200 and "ep1-dnacpr" in ids(r.json())
