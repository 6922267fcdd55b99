"""CDS Hooks patient-view service with real SMART tokens and the real audit sink (issue 6)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parents[1] / "operations"))

from eol_fixtures import attorney, dnr_consent, flag, observation  # noqa: E402

from exchange.audit.tables import audit_event, audit_event_patient  # noqa: E402
from exchange.auth.testing import bearer, quick_token  # noqa: E402
from exchange.db.engine import read_tx, write_tx  # noqa: E402
from exchange.repository.store import lock_current, write_version  # noqa: E402

URL = "/cds-services/care-preferences-patient-view"


def put(conn, res: dict) -> None:  # noqa: ANN001
    cur = lock_current(conn, res["resourceType"], res["id"])
    write_version(conn, res["resourceType"], res["id"], dict(res), method="PUT", current=cur)


@pytest.fixture(scope="module")
def secure_client(engine, settings):  # noqa: ANN001, ANN201
    from fastapi.testclient import TestClient

    from exchange.app import create_app

    s = settings.with_(auth_enabled=True, audit_enabled=True, consent_enabled=False)
    resources = [
        {"resourceType": "Patient", "id": "cds-conflict"},
        flag("gp-dnacpr", "450476008", source="GP", start="2025-03-01", patient="cds-conflict", author="Dr Patel"),
        dnr_consent("h-consent", source="Hospital", patient="cds-conflict", when="2025-04-01"),
        flag("h-forcpr", "450475007", source="Community", start="2025-05-01", patient="cds-conflict",
             author="Nurse Brown"),
        {"resourceType": "Patient", "id": "cds-calm"},
        flag("calm-overdue", "450476008", source="GP", start="2020-01-01", end="2021-01-01", patient="cds-calm"),
        flag("calm-lpa", "816361000000101", source="GP", start="2024-01-01", patient="cds-calm"),
        attorney("calm-attorney", patient="cds-calm"),
        observation("calm-pod", "395091006", source="Hospice", value={"text": "Hospice"}, patient="cds-calm"),
        {"resourceType": "Patient", "id": "cds-empty"},
    ]
    with write_tx(engine) as conn:
        for r in resources:
            put(conn, r)
    app = create_app(s, engine=engine)
    with TestClient(app) as c:
        c.eol_settings = s  # type: ignore[attr-defined]
        yield c


def hook(pid: str, hook_name: str = "patient-view") -> dict:
    return {"hook": hook_name, "hookInstance": str(uuid.uuid4()), "context": {"patientId": pid, "userId": "Practitioner/x"}}


def token(engine, client, **kw) -> dict[str, str]:  # noqa: ANN001
    return bearer(quick_token(engine, client.eol_settings, **kw))


def test_discovery(secure_client) -> None:  # noqa: ANN001
    r = secure_client.get("/cds-services")
    assert r.status_code == 200
    (svc,) = r.json()["services"]
    assert svc["hook"] == "patient-view" and svc["id"] == "care-preferences-patient-view"
    assert svc["title"] and svc["description"]


def test_requires_a_token(secure_client) -> None:  # noqa: ANN001
    r = secure_client.post(URL, json=hook("cds-conflict"))
    assert r.status_code == 401 and "cards" not in r.json()


def test_conflict_and_dnacpr_are_critical(engine, secure_client) -> None:  # noqa: ANN001
    r = secure_client.post(URL, json=hook("cds-conflict"), headers=token(engine, secure_client))
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert cards[0]["indicator"] == "critical" and cards[0]["summary"].startswith("CONFLICT")
    assert "Dr Patel" in cards[0]["detail"] and "Nurse Brown" in cards[0]["detail"]
    assert "Community" in cards[0]["source"]["label"]
    dnacpr = [c for c in cards if c["summary"].startswith("DNACPR")]
    assert len(dnacpr) == 2  # GP flag and hospital DNR consent, each with its source
    assert {c["source"]["label"].rsplit(": ", 1)[1] for c in dnacpr} == {"GP", "Hospital"}
    for c in cards:
        assert len(c["summary"]) < 140 and c["source"]["label"] and c["detail"]
        assert c["links"][0]["url"] == "http://testserver/fhir/Patient/cds-conflict/$care-preferences"
        assert c["links"][0]["type"] == "absolute"


def test_overdue_is_warning_and_lpa_place_of_death_are_info(engine, secure_client) -> None:  # noqa: ANN001
    r = secure_client.post(URL, json=hook("cds-calm"), headers=token(engine, secure_client))
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    by = {c["indicator"]: [] for c in cards}
    for c in cards:
        by[c["indicator"]].append(c)
    assert "critical" not in by  # the DNACPR's review date has passed: not current
    (warn,) = by["warning"]
    assert "Review date passed" in warn["summary"] and "2021-01-01" in warn["summary"]
    infos = {c["summary"] for c in by["info"]}
    assert "Lasting power of attorney (health and welfare): Ann Smith" in infos
    assert any("Hospice" in s for s in infos)
    lpa = next(c for c in by["info"] if "attorney" in c["summary"])
    assert "07700 900123" in lpa["detail"]


def test_no_preferences_no_cards(engine, secure_client) -> None:  # noqa: ANN001
    r = secure_client.post(URL, json=hook("cds-empty"), headers=token(engine, secure_client))
    assert r.status_code == 200 and r.json() == {"cards": []}


def test_unknown_patient_and_bad_requests(engine, secure_client) -> None:  # noqa: ANN001
    h = token(engine, secure_client)
    assert secure_client.post(URL, json=hook("nobody"), headers=h).status_code == 404
    assert secure_client.post(URL, json=hook("cds-calm", "order-select"), headers=h).status_code == 400
    assert secure_client.post(URL, json={"hook": "patient-view"}, headers=h).status_code == 400
    bad = secure_client.post(URL, content=b"not json", headers={**h, "content-type": "application/json"})
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"


def test_scopes_and_patient_binding_are_enforced(engine, secure_client) -> None:  # noqa: ANN001
    narrow = token(engine, secure_client, scope="user/Observation.rs", client_id="cds-narrow")
    assert secure_client.post(URL, json=hook("cds-calm"), headers=narrow).status_code == 403
    own = token(engine, secure_client, kind="patient", scope="patient/*.rs", patient="cds-calm",
                client_id="cds-citizen", practitioner=None, role=None)
    assert secure_client.post(URL, json=hook("cds-calm"), headers=own).status_code == 200
    assert secure_client.post(URL, json=hook("cds-conflict"), headers=own).status_code == 403


def test_every_call_is_audited(engine, secure_client) -> None:  # noqa: ANN001
    def count() -> int:
        with read_tx(engine) as conn:
            return conn.execute(select(func.count()).select_from(audit_event_patient)
                                .where(audit_event_patient.c.patient_id == "cds-calm")).scalar_one()

    before = count()
    secure_client.post(URL, json=hook("cds-calm"), headers=token(engine, secure_client))
    assert count() == before + 1
    with read_tx(engine) as conn:
        row = conn.execute(select(audit_event).order_by(audit_event.c.seq.desc()).limit(1)).one()
    assert row.subtype == "operation" and row.outcome == 0 and row.released >= 4
    assert b"cds-patient-view" in bytes(row.content)


def test_care_preferences_operation_with_real_tokens(engine, secure_client) -> None:  # noqa: ANN001
    path = "/fhir/Patient/cds-conflict/$care-preferences"
    assert secure_client.get(path).status_code == 401
    r = secure_client.get(path, headers=token(engine, secure_client))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["type"] == "document"
    issues = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "DetectedIssue"]
    assert any(i["code"]["coding"][0]["code"] == "conflict" for i in issues)
    narrow = token(engine, secure_client, scope="user/Observation.rs", client_id="cds-narrow-2")
    assert secure_client.get(path, headers=narrow).status_code == 403
    with read_tx(engine) as conn:
        row = conn.execute(select(audit_event).order_by(audit_event.c.seq.desc()).limit(1)).one()
    assert row.outcome != 0  # the refused call is on the record too
