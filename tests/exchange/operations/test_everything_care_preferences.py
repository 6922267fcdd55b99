"""``Patient/$everything`` with real tokens and the consent layer on (issues 3 and 6).

- The type-level call (every patient's record) is for system clients only: a user or
  patient requester gets a 403 OperationOutcome, a system client gets the searchset.
- The care preferences (DNACPR, LPA with its attorney, preferred place of death) are in
  the instance-level result, also where the patient's objection hides the rest of the
  record from the clinician. SQLite and PostgreSQL.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from eol_fixtures import attorney, flag, observation  # noqa: E402

from exchange.auth.testing import bearer, quick_token  # noqa: E402
from exchange.db.engine import write_tx  # noqa: E402
from exchange.repository import store  # noqa: E402

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
GP, HOSP = "EV001", "EV002"
PREFS = {"ev1-dnacpr", "ev1-lpa", "ev1-attorney", "ev1-pod"}


def _put(engine, res: dict) -> None:  # noqa: ANN001
    from consent.facts import index_facts
    from consent.labels import apply_labels

    res = apply_labels(dict(res))
    with write_tx(engine) as conn:
        cur = store.lock_current(conn, res["resourceType"], res["id"])
        stored = store.write_version(conn, res["resourceType"], res["id"], res, method="PUT", current=cur)
        index_facts(conn, stored.rid, res["resourceType"], res)


def world(pid: str, *, objection: bool) -> list[dict]:
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    out = [
        {"resourceType": "Patient", "id": pid, "generalPractitioner": [{"reference": "Organization/ev-gp"}]},
        {"resourceType": "Encounter", "id": f"{pid}-enc", "status": "in-progress", "class": {"code": "AMB"},
         "subject": {"reference": f"Patient/{pid}"}, "period": {"start": day},
         "serviceProvider": {"identifier": {"system": ODS, "value": HOSP}}},
        flag(f"{pid}-dnacpr", "450476008", patient=pid, source="GP"),
        flag(f"{pid}-lpa", "816361000000101", patient=pid, source="GP", start="2024-01-01"),
        attorney(f"{pid}-attorney", patient=pid),
        observation(f"{pid}-pod", "395091006", source="Hospice", value={"text": "Hospice"}, patient=pid),
        observation(f"{pid}-bp", "75367002", value="150/90", patient=pid),  # ordinary record
    ]
    if objection:
        out.append({"resourceType": "Consent", "id": f"{pid}-objection", "status": "active",
                    "scope": {"coding": [{"code": "patient-privacy"}]}, "patient": {"reference": f"Patient/{pid}"},
                    "provision": {"type": "deny", "provision": [{"type": "permit", "actor": [
                        {"reference": {"identifier": {"system": ODS, "value": GP}}}]}]}})
    return out


@pytest.fixture(scope="module")
def api(engine, settings):  # noqa: ANN001, ANN201
    from fastapi.testclient import TestClient

    from exchange.app import create_app

    s = settings.with_(auth_enabled=True, consent_enabled=True, audit_enabled=False)
    _put(engine, {"resourceType": "Organization", "id": "ev-gp", "identifier": [{"system": ODS, "value": GP}]})
    for res in world("ev1", objection=True) + world("ev2", objection=False):
        _put(engine, res)
    with TestClient(create_app(s, engine=engine)) as client:
        client.ev_settings = s  # type: ignore[attr-defined]
        yield client


def tok(engine, api, **kw) -> dict[str, str]:  # noqa: ANN001
    kw.setdefault("scope", "user/*.rs")
    return bearer(quick_token(engine, api.ev_settings, client_id=f"ev-{kw.get('kind', 'user')}", **kw))


def match_ids(r) -> set[str]:  # noqa: ANN001
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", []) if e.get("search", {}).get("mode") == "match"}


def test_type_level_everything_refuses_user_requesters(engine, api) -> None:  # noqa: ANN001
    for method in ("GET", "POST"):
        r = api.request(method, "/fhir/Patient/$everything?_count=5", headers=tok(engine, api, organization=HOSP))
        assert r.status_code == 403, r.text
        body = r.json()
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "forbidden"
        assert "system clients" in body["issue"][0]["diagnostics"]
        assert "entry" not in body


def test_type_level_everything_refuses_patient_requesters(engine, api) -> None:  # noqa: ANN001
    h = tok(engine, api, kind="patient", patient="ev2", scope="patient/*.rs")
    r = api.get("/fhir/Patient/$everything", headers=h)
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome", r.text
    assert match_ids(api.get("/fhir/Patient/ev2/$everything", headers=h)) >= {"ev2", "ev2-dnacpr"}  # own record


def test_type_level_everything_serves_system_clients(engine, api) -> None:  # noqa: ANN001
    h = tok(engine, api, kind="system", scope="system/*.rs", organization=None)
    got = match_ids(api.get("/fhir/Patient/$everything?_count=1000", headers=h))
    assert {"ev1", "ev2", "ev1-dnacpr", "ev2-bp"} <= got


def test_everything_includes_care_preferences(engine, api) -> None:  # noqa: ANN001
    got = match_ids(api.get("/fhir/Patient/ev2/$everything?_count=1000", headers=tok(engine, api, organization=HOSP)))
    assert {p.replace("ev1", "ev2") for p in PREFS} <= got
    assert "ev2-bp" in got


def test_everything_includes_care_preferences_under_an_objection(engine, api) -> None:  # noqa: ANN001
    r = api.get("/fhir/Patient/ev1/$everything?_count=1000", headers=tok(engine, api, organization=HOSP))
    got = match_ids(r)
    assert got >= PREFS  # always shared for direct care
    assert "ev1-bp" not in got and "ev1-objection" not in got  # the rest stays withheld
    notes = [i["diagnostics"] for e in r.json()["entry"] if e["resource"]["resourceType"] == "OperationOutcome"
             for i in e["resource"]["issue"]]
    assert any("patient's request" in n for n in notes)
