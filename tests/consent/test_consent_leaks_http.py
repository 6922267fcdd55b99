"""Leak-test matrix through the HTTP API (issue 5): read, vread, instance and type
history, Patient/$everything, batch entries and conditional create, for every rule type.

A hidden resource must answer exactly like a resource that never existed (404), except
``relationship.none``, which by requirement 3 is refused with 403 for the whole record;
and lists (history, $everything) must be identical with the hidden resource present
and after it has been deleted. SQLite and PostgreSQL, real tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from exchange.auth.testing import bearer, quick_token
from exchange.settings import Settings

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SRC = "https://exchange.example.nhs.uk/source-system"
SCT = "http://snomed.info/sct"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
HOSP, GP = "MH001", "MG001"
IDS = "https://example.org/obs-id"


def _day(delta: int) -> str:
    return (datetime.now(UTC) + timedelta(days=delta)).date().isoformat()


def obs(oid: str, pid: str, author: str = GP, extra: str | None = None, security: list | None = None) -> dict:
    meta: dict = {"tag": [{"system": SRC, "code": author}]}
    if security:
        meta["security"] = security
    codings = [{"system": SCT, "code": "271649006"}] + ([{"system": SCT, "code": extra}] if extra else [])
    return {"resourceType": "Observation", "id": oid, "status": "final", "meta": meta,
            "identifier": [{"system": IDS, "value": oid}], "code": {"coding": codings},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": _day(-1)}


#: rule -> (requester kwargs for quick_token, patient, hidden resource, read status)
RULES = {
    "legally-restricted": ({"organization": HOSP}, "m1", obs("mh-r", "m1", author="MS001", extra="105629000"), 404),
    "objection": ({"organization": HOSP}, "m2", obs("mh-o", "m2"), 404),
    "org-denial": ({"organization": HOSP}, "m4", obs("mh-d", "m4"), 404),
    "not-for-patient": ({"kind": "patient", "patient": "m1", "scope": "patient/*.cruds", "role": None,
                         "organization": None}, "m1",
                        obs("mh-n", "m1", security=[{"system": ACT, "code": "NOPAT"}]), 404),
    "no-relationship": ({"organization": HOSP}, "m3", obs("mh-x", "m3"), 403),
}


@pytest.fixture(scope="module")
def app_client(cengine, settings: Settings, put) -> Iterator[TestClient]:  # noqa: ANN001
    from exchange.app import create_app

    put({"resourceType": "Organization", "id": "morg-gp", "identifier": [{"system": ODS, "value": GP}]})
    for pid in ("m1", "m2", "m3", "m4"):
        put({"resourceType": "Patient", "id": pid, "name": [{"family": "Matrix"}],
             "generalPractitioner": [{"reference": "Organization/morg-gp"}]})
        if pid != "m3":
            put({"resourceType": "Encounter", "id": f"menc-{pid}", "status": "in-progress",
                 "class": {"code": "IMP"}, "subject": {"reference": f"Patient/{pid}"},
                 "serviceProvider": {"identifier": {"system": ODS, "value": HOSP}},
                 "period": {"start": _day(-2)}})
        put(obs(f"mvis-{pid}", pid))
    scope = {"coding": [{"code": "patient-privacy"}]}
    put({"resourceType": "Consent", "id": "mc2", "status": "active", "scope": scope,
         "patient": {"reference": "Patient/m2"}, "provision": {"type": "deny"}})
    put({"resourceType": "Consent", "id": "mc4", "status": "active", "scope": scope,
         "patient": {"reference": "Patient/m4"}, "provision": {"type": "permit", "provision": [
             {"type": "deny", "actor": [{"reference": {"identifier": {"system": ODS, "value": HOSP}}}]}]}})
    s = settings.with_(auth_enabled=True, consent_enabled=True, audit_enabled=False)
    with TestClient(create_app(s, engine=cengine)) as client:
        client.consent_settings = s  # type: ignore[attr-defined]
        yield client


def _token(app_client, cengine, **kw: object) -> dict[str, str]:  # noqa: ANN001
    kw.setdefault("scope", "user/*.cruds")
    return bearer(quick_token(cengine, app_client.consent_settings, client_id="consent-matrix", **kw))


def _ids(body: dict) -> list[str]:
    """Entries as fullUrl|method (delete entries of history carry no resource)."""
    return sorted(f"{e.get('fullUrl')}|{(e.get('request') or {}).get('method', '')}"
                  for e in body.get("entry", [])
                  if (e.get("resource") or {}).get("resourceType") != "OperationOutcome")


def _delete(cengine, rid: str) -> None:  # noqa: ANN001
    """Delete through the store as the write path does (search and consent index too)."""
    from consent.facts import index_facts
    from exchange.db.engine import write_tx
    from exchange.repository import store

    with write_tx(cengine) as conn:
        cur = store.lock_current(conn, "Observation", rid)
        assert cur is not None and not cur.deleted
        gone = store.write_version(conn, "Observation", rid, None, method="DELETE", current=cur)
        index_facts(conn, gone.rid, "Observation", None)


def _lists(client: TestClient, h: dict, pid: str) -> dict:
    out = {}
    for name, url in (("type-history", "/fhir/Observation/_history"),
                      ("everything", f"/fhir/Patient/{pid}/$everything"),
                      ("search", f"/fhir/Observation?patient={pid}&_total=accurate")):
        r = client.get(url, headers=h)
        body = r.json()
        out[name] = (r.status_code, body.get("total"), _ids(body))
    return out


@pytest.mark.parametrize("rule", sorted(RULES))
def test_hidden_answers_like_absent(app_client, cengine, put, rule):
    kw, pid, hidden, read_status = RULES[rule]
    h = _token(app_client, cengine, **kw)
    put(hidden)
    hid = hidden["id"]
    for url in (f"/fhir/Observation/{hid}", f"/fhir/Observation/{hid}/_history/1"):
        assert app_client.get(url, headers=h).status_code == read_status, url
    assert app_client.get("/fhir/Observation/never-existed", headers=h).status_code == 404
    mine = app_client.get(f"/fhir/Observation/{hid}/_history", headers=h)
    absent = app_client.get("/fhir/Observation/never-existed/_history", headers=h)
    assert (mine.status_code, _ids(mine.json())) == (absent.status_code, _ids(absent.json()))
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Observation/{hid}"}},
        {"request": {"method": "GET", "url": "Observation/never-existed"}}]}
    entries = app_client.post("/fhir", json=batch, headers=h).json()["entry"]
    assert entries[0]["response"]["status"].startswith(str(read_status))
    assert entries[1]["response"]["status"].startswith("404")
    with_hidden = _lists(app_client, h, pid)
    flat = str(with_hidden)
    assert hid not in flat
    _delete(cengine, hid)
    assert _lists(app_client, h, pid) == with_hidden


def test_conditional_create_does_not_probe_hidden(app_client, cengine, put):
    put(obs("mh-cc", "m2"))  # hidden from the hospital by the objection
    h = _token(app_client, cengine, organization=HOSP)
    r = app_client.post("/fhir/Observation", json={k: v for k, v in obs("new-cc", "m1").items() if k != "id"},
                        headers={**h, "If-None-Exist": f"identifier={IDS}|mh-cc"})
    absent = app_client.post("/fhir/Observation", json={k: v for k, v in obs("new-cc2", "m1").items() if k != "id"},
                             headers={**h, "If-None-Exist": f"identifier={IDS}|never-existed"})
    assert r.status_code == absent.status_code == 201


def test_system_history_hides_delete_markers(app_client, cengine, put):
    h = _token(app_client, cengine, organization=HOSP)
    put(obs("mh-sys", "m2"))  # hidden from the hospital by the objection

    def listing() -> list[str]:
        return _ids(app_client.get("/fhir/_history?_count=1000", headers=h).json())

    before = listing()
    _delete(cengine, "mh-sys")
    assert listing() == before
