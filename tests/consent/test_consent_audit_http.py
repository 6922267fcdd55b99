"""Consent decisions reach the access log, through the real app with authorisation,
consent and audit all on (issue 5, gaps-5 #1 and #2). SQLite and PostgreSQL.

* Requirement 3: a clinician with no care relationship is refused (403 read, empty
  search) unless they break glass with a reason; the break-glass read and search are
  "audited as break-glass and appear in the IG break-glass report"
  (``exchange.audit.reports``, report ``break-glass``) with the stated reason.
* Requirement 4: break-glass "overrides the objection and is reported".
* "Explaining decisions": every denial in normal traffic records its rule id for the
  audit log -- read back from the stored AuditEvent (``audit_event.content``), for a
  withheld read and for a search whose resources are withheld one by one at the choke
  point (``exchange.pipeline.disclosure.release``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from exchange.audit.reports import run_report
from exchange.audit.tables import audit_event
from exchange.auth.testing import bearer, quick_token
from exchange.db.engine import read_tx
from exchange.settings import Settings

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SRC = "https://exchange.example.nhs.uk/source-system"
SCT = "http://snomed.info/sct"
GP, HOSP, FAR = "AG001", "AH001", "AF001"
NO_REL_REASON = "collapsed in street, unconscious"
OBJECTION_REASON = "anaphylaxis in A&E, objection overridden"


def _day(delta: int) -> str:
    return (datetime.now(UTC) + timedelta(days=delta)).date().isoformat()


def _obs(oid: str, pid: str) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "meta": {"tag": [{"system": SRC, "code": GP}]},
            "code": {"coding": [{"system": SCT, "code": "271649006"}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": _day(-1)}


@pytest.fixture(scope="module")
def audited(cengine, settings: Settings, put) -> Iterator[tuple[TestClient, Settings]]:  # noqa: ANN001
    """ap1: registered with the GP only (no relationship for FAR). ap2: a hospital
    Encounter (relationship for HOSP) and a blanket objection with the GP permitted.
    ap3: the GP only; its Provenance targets a Observation nobody outside may see."""
    from exchange.app import create_app

    put({"resourceType": "Organization", "id": "aorg-gp", "identifier": [{"system": ODS, "value": GP}]})
    for pid in ("ap1", "ap2", "ap3"):
        put({"resourceType": "Patient", "id": pid, "name": [{"family": "Auditwell"}],
             "generalPractitioner": [{"reference": "Organization/aorg-gp"}]})
    put(_obs("aobs-1", "ap1"))
    put({"resourceType": "Encounter", "id": "aenc-2", "status": "in-progress", "class": {"code": "IMP"},
         "subject": {"reference": "Patient/ap2"},
         "serviceProvider": {"identifier": {"system": ODS, "value": HOSP}}, "period": {"start": _day(-2)}})
    put(_obs("aobs-2", "ap2"))
    put({"resourceType": "Consent", "id": "ac2", "status": "active",
         "scope": {"coding": [{"code": "patient-privacy"}]}, "patient": {"reference": "Patient/ap2"},
         "provision": {"type": "deny", "provision": [{"type": "permit", "actor": [
             {"reference": {"identifier": {"system": ODS, "value": GP}}}]}]}})
    s = settings.with_(auth_enabled=True, consent_enabled=True, audit_enabled=True)
    with TestClient(create_app(s, engine=cengine)) as client:
        yield client, s


def _token(cengine, s: Settings, **kw: object) -> dict[str, str]:  # noqa: ANN001
    kw.setdefault("scope", "user/*.rs")
    return bearer(quick_token(cengine, s, client_id="consent-audit", **kw))


def _last_seq(cengine) -> int:  # noqa: ANN001
    with read_tx(cengine) as conn:
        return conn.execute(select(func.coalesce(func.max(audit_event.c.seq), 0))).scalar_one()


def _events_after(cengine, seq: int) -> list[dict]:  # noqa: ANN001
    with read_tx(cengine) as conn:
        rows = conn.execute(select(audit_event.c.content).where(audit_event.c.seq > seq)
                            .order_by(audit_event.c.seq)).scalars().all()
    return [orjson.loads(bytes(c)) for c in rows]


def _withheld_details(event: dict) -> dict[str, str]:
    """The ``withheld`` entity's details of a stored AuditEvent (type -> value)."""
    found = [e for e in event.get("entity", []) if e.get("name") == "withheld"]
    assert len(found) == 1, event
    return {d["type"]: d["valueString"] for d in found[0].get("detail", [])}


def _report(cengine, start: datetime) -> list[dict]:  # noqa: ANN001
    with read_tx(cengine) as conn:
        return run_report(conn, "break-glass", start, datetime.now(UTC) + timedelta(minutes=5))


def _entries(bundle: dict, rtype: str) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == rtype]


def test_break_glass_without_relationship_is_in_the_ig_report(audited, cengine):
    client, s = audited
    start = datetime.now(UTC) - timedelta(seconds=5)
    far = _token(cengine, s, organization=FAR)
    assert client.get("/fhir/Observation/aobs-1", headers=far).status_code == 403
    assert _entries(client.get("/fhir/Observation", params={"patient": "ap1"}, headers=far).json(),
                    "Observation") == []
    assert [r for r in _report(cengine, start) if "ap1" in r["patients"].split()] == []

    btg = _token(cengine, s, organization=FAR, purpose="BTG", reason=NO_REL_REASON)
    read = client.get("/fhir/Observation/aobs-1", headers=btg)
    assert read.status_code == 200 and read.json()["id"] == "aobs-1"
    found = client.get("/fhir/Observation", params={"patient": "ap1"}, headers=btg)
    assert _entries(found.json(), "Observation") == ["aobs-1"]

    rows = [r for r in _report(cengine, start) if r["reason"] == NO_REL_REASON]
    assert sorted(r["interaction"] for r in rows) == ["read", "search-type"], rows
    for r in rows:
        assert r["patients"].split() == ["ap1"]
        assert r["organization"] == FAR and r["purpose"] == "BTG"
        assert r["outcome"] == 0 and r["released"] >= 1
    # the refused TREAT attempts are no break-glass accesses
    assert all(r["purpose"] == "BTG" for r in _report(cengine, start))


def test_break_glass_over_an_objection_is_in_the_ig_report(audited, cengine):
    client, s = audited
    start = datetime.now(UTC) - timedelta(seconds=5)
    hosp = _token(cengine, s, organization=HOSP)
    assert client.get("/fhir/Observation/aobs-2", headers=hosp).status_code == 404
    withheld = client.get("/fhir/Observation", params={"patient": "ap2"}, headers=hosp).json()
    assert _entries(withheld, "Observation") == []
    assert "withheld at the patient's request" in str(withheld)

    btg = _token(cengine, s, organization=HOSP, purpose="BTG", reason=OBJECTION_REASON)
    assert client.get("/fhir/Observation/aobs-2", headers=btg).status_code == 200
    found = client.get("/fhir/Observation", params={"patient": "ap2"}, headers=btg).json()
    assert _entries(found, "Observation") == ["aobs-2"]
    # break-glass that overrides the objection gives no "withheld" notice
    assert "withheld at the patient's request" not in str(found)

    rows = [r for r in _report(cengine, start) if r["reason"] == OBJECTION_REASON]
    assert sorted(r["interaction"] for r in rows) == ["read", "search-type"], rows
    for r in rows:
        assert r["patients"].split() == ["ap2"]
        assert r["organization"] == HOSP and r["released"] >= 1 and r["withheld"] == 0


def test_withheld_read_records_its_rule_in_the_stored_event(audited, cengine):
    client, s = audited
    hosp = _token(cengine, s, organization=HOSP)
    seq = _last_seq(cengine)
    assert client.get("/fhir/Observation/aobs-2", headers=hosp).status_code == 404
    events = _events_after(cengine, seq)
    assert len(events) == 1
    details = _withheld_details(events[0])
    assert details["withheld-count"] == "1"
    assert details == {"withheld-count": "1", "redacted-count": "0",
                       "withheld-by:consent.Consent/ac2#provision": "1"}

    far = _token(cengine, s, organization=FAR)
    seq = _last_seq(cengine)
    assert client.get("/fhir/Observation/aobs-1", headers=far).status_code == 403
    (event,) = _events_after(cengine, seq)
    assert _withheld_details(event)["withheld-by:relationship.none"] == "1"


def test_search_withheld_per_resource_records_its_rules_in_the_stored_event(audited, cengine, monkeypatch):
    """The choke point is the backstop for whatever the SQL narrowing does not express
    (docs/architecture.md, request path step 4). With the narrowing switched off on the
    app's gate, a real search reaches ``release`` with resources of three patients and
    the stored event counts each withheld one under its own rule."""
    client, s = audited
    gate = client.app.state.services.gate
    monkeypatch.setattr(gate, "sql_filter", lambda *args, **kwargs: None)
    hosp = _token(cengine, s, organization=HOSP)
    seq = _last_seq(cengine)
    got = client.get("/fhir/Observation", params={"code": f"{SCT}|271649006"}, headers=hosp)
    assert got.status_code == 200, got.text
    assert _entries(got.json(), "Observation") == []
    (event,) = _events_after(cengine, seq)
    assert _withheld_details(event) == {
        "withheld-count": "2", "redacted-count": "0",
        "withheld-by:consent.Consent/ac2#provision": "1",  # ap2's objection
        "withheld-by:relationship.none": "1",  # ap1: no relationship with HOSP
    }
    released = [e["what"]["reference"] for e in event["entity"] if "what" in e]
    assert not any(r.startswith("Observation/") for r in released)


def test_provenance_of_a_withheld_resource_is_never_released_and_any_denial_is_recorded(audited, cengine, put):
    """With the narrowing on: a Provenance whose target is hidden is either hidden in SQL
    or withheld at the choke point under ``provenance.target-hidden`` -- never released,
    and never withheld without its rule."""
    client, s = audited
    put({"resourceType": "Provenance", "id": "aprov-hidden", "recorded": f"{_day(-1)}T10:00:00Z",
         "target": [{"reference": "Observation/aobs-2"}],
         "agent": [{"who": {"identifier": {"system": ODS, "value": GP}}}]})
    put({"resourceType": "Provenance", "id": "aprov-shown", "recorded": f"{_day(-1)}T10:00:00Z",
         "target": [{"reference": "Patient/ap2"}],
         "agent": [{"who": {"identifier": {"system": ODS, "value": GP}}}]})
    hosp = _token(cengine, s, organization=HOSP)
    seq = _last_seq(cengine)
    got = client.get("/fhir/Provenance", params={"recorded": f"ge{_day(-2)}"}, headers=hosp)
    assert got.status_code == 200, got.text
    assert _entries(got.json(), "Provenance") == ["aprov-shown"]
    (event,) = _events_after(cengine, seq)
    released = [e["what"]["reference"] for e in event["entity"] if "what" in e]
    assert any(r.startswith("Provenance/aprov-shown/") for r in released)
    assert not any("aprov-hidden" in r or "aobs-2" in r for r in released)
    withheld = [e for e in event["entity"] if e.get("name") == "withheld"]
    if withheld:
        assert _withheld_details(event) == {"withheld-count": "1", "redacted-count": "0",
                                            "withheld-by:provenance.target-hidden": "1"}
