"""``$care-preferences`` is held to the token's SMART scopes (gaps-6 #5; enforced by
exchange/auth/scoped_gate.py): a token that may read Patient but not Flag gets the
document without any Flag content, and the document says records were not shown; a
token that may read Flag gets the DNACPR. Real tokens over HTTP, SQLite and PostgreSQL."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from eol_fixtures import flag  # noqa: E402

from exchange.auth.testing import bearer, quick_token  # noqa: E402
from exchange.db.engine import write_tx  # noqa: E402
from exchange.repository import store  # noqa: E402

PATH = "/fhir/Patient/sc1/$care-preferences"


@pytest.fixture(scope="module")
def api(engine, settings):  # noqa: ANN001, ANN201
    from fastapi.testclient import TestClient

    from exchange.app import create_app

    s = settings.with_(auth_enabled=True, consent_enabled=True, audit_enabled=False)
    with write_tx(engine) as conn:
        for res in ({"resourceType": "Patient", "id": "sc1"},
                    flag("sc1-dnacpr", "450476008", patient="sc1", author="Dr Patel")):
            cur = store.lock_current(conn, res["resourceType"], res["id"])
            store.write_version(conn, res["resourceType"], res["id"], res, method="PUT", current=cur)
    with TestClient(create_app(s, engine=engine)) as client:
        client.sc_settings = s  # type: ignore[attr-defined]
        yield client


def _system(engine, api, scope: str) -> dict[str, str]:  # noqa: ANN001
    return bearer(quick_token(engine, api.sc_settings, client_id=f"sc-{scope}", kind="system", scope=scope,
                              organization=None))


def _doc(api, h) -> list[dict]:  # noqa: ANN001
    r = api.get(PATH, headers=h)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json()["entry"]]


def test_patient_only_scope_gets_no_flag_content(engine, api) -> None:  # noqa: ANN001
    resources = _doc(api, _system(engine, api, "system/Patient.rs"))
    assert not [x for x in resources if x["resourceType"] == "Flag"]
    assert api.get("/fhir/Flag?patient=sc1", headers=_system(engine, api, "system/Patient.rs")).status_code == 403
    text = " ".join(str(x) for x in resources)
    assert "sc1-dnacpr" not in text and "450476008" not in text  # not even referenced or described
    issues = [x for x in resources if x["resourceType"] == "DetectedIssue"]
    (told,) = [i for i in issues if "cannot be shown" in i.get("detail", "")]  # the clinician is told, and why
    assert "access token does not allow reading Flag, Observation, Consent" in told["detail"]
    assert "record(s)" not in told["detail"]  # said from the token alone, never a count of what was hidden


def test_flag_scope_gets_the_dnacpr(engine, api) -> None:  # noqa: ANN001
    resources = _doc(api, _system(engine, api, "system/Patient.rs system/Flag.rs"))
    assert "sc1-dnacpr" in {x["id"] for x in resources if x["resourceType"] == "Flag"}
    told = [i["detail"] for i in resources if i["resourceType"] == "DetectedIssue"]
    assert any("does not allow reading Observation, Consent" in d and "Flag" not in d for d in told)
    everything = _doc(api, _system(engine, api, "system/*.rs"))
    assert not [i for i in everything if i["resourceType"] == "DetectedIssue" and "access token" in i["detail"]]


def test_patient_only_scope_gets_no_dnacpr_card(engine, api) -> None:  # noqa: ANN001
    import uuid

    hook = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"patientId": "sc1"}}
    r = api.post("/cds-services/care-preferences-patient-view", json=hook,
                 headers=_system(engine, api, "system/Patient.rs"))
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert not any(c["indicator"] == "critical" for c in cards)
    assert any(c["summary"] == "Care preferences may be withheld (not covered by this system's access)"
               for c in cards)
    full = api.post("/cds-services/care-preferences-patient-view", json=hook,
                    headers=_system(engine, api, "system/Patient.rs system/Flag.rs")).json()["cards"]
    assert full[0]["indicator"] == "critical" and full[0]["summary"].startswith("DNACPR")
