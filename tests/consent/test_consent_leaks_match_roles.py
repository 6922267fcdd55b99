"""More leak cells through the real app (issue 5 "Done means"; gaps-5 #3), SQLite and
PostgreSQL: ``Patient/$match`` with a Patient the requester may not see
(``relationship.none``), and the limited social-care role (``policy.role-scope``).

``$match`` (FHIR R4 patient-operation-match.html) grades candidates against each other
(adapters.identity: a demographic match is *certain* only when it is unique) and cuts the
list to ``count``: a hidden candidate must take part in neither, or its presence shows in
the answer (a missing entry, a lower grade) compared with a database without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from exchange.auth.testing import bearer, quick_token
from exchange.settings import Settings

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SRC = "https://exchange.example.nhs.uk/source-system"
SCT = "http://snomed.info/sct"
GP, HOSP = "TG001", "TH001"
DEMOGRAPHICS = {"name": [{"family": "Matchwell", "given": ["Ada"]}], "birthDate": "1960-02-03",
                "gender": "female", "address": [{"postalCode": "LS1 4AP"}]}


def _day(delta: int) -> str:
    return (datetime.now(UTC) + timedelta(days=delta)).date().isoformat()


def _hidden_patient() -> dict:
    """Same demographics as mt-vis, no NHS number, no relationship with HOSP; its id
    sorts before mt-vis."""
    return {"resourceType": "Patient", "id": "mt-a-hidden", **DEMOGRAPHICS,
            "generalPractitioner": [{"reference": "Organization/torg-gp"}]}


@pytest.fixture(scope="module")
def api(cengine, settings: Settings, put) -> Iterator[TestClient]:  # noqa: ANN001
    from exchange.app import create_app

    put({"resourceType": "Organization", "id": "torg-gp", "identifier": [{"system": ODS, "value": GP}]})
    put({"resourceType": "Patient", "id": "mt-vis", **DEMOGRAPHICS,
         "identifier": [{"system": NHS, "value": "9434765919"}],
         "generalPractitioner": [{"reference": "Organization/torg-gp"}]})
    put({"resourceType": "Patient", "id": "sw1", "name": [{"family": "Socialwell"}],
         "generalPractitioner": [{"reference": "Organization/torg-gp"}]})
    for pid in ("mt-vis", "sw1"):
        put({"resourceType": "Encounter", "id": f"tenc-{pid}", "status": "in-progress", "class": {"code": "AMB"},
             "subject": {"reference": f"Patient/{pid}"},
             "serviceProvider": {"identifier": {"system": ODS, "value": HOSP}}, "period": {"start": _day(-2)}})
    put({"resourceType": "Observation", "id": "tobs-social", "status": "final",
         "meta": {"tag": [{"system": SRC, "code": GP},
                          {"system": "https://exchange.example.nhs.uk/record-category", "code": "social-care"}]},
         "code": {"coding": [{"system": SCT, "code": "271649006"}]}, "subject": {"reference": "Patient/sw1"},
         "effectiveDateTime": _day(-1)})
    s = settings.with_(auth_enabled=True, consent_enabled=True, audit_enabled=False)
    with TestClient(create_app(s, engine=cengine)) as client:
        client.consent_settings = s  # type: ignore[attr-defined]
        yield client


def _h(api: TestClient, cengine, **kw: object) -> dict[str, str]:  # noqa: ANN001
    kw.setdefault("scope", "user/*.cruds")
    return bearer(quick_token(cengine, api.consent_settings, client_id="consent-match", **kw))


def _match(api: TestClient, h: dict, count: int | None = None) -> tuple[int, list]:
    params = [{"name": "resource", "resource": {"resourceType": "Patient", **DEMOGRAPHICS}}]
    if count is not None:
        params.append({"name": "count", "valueInteger": count})
    r = api.post("/fhir/Patient/$match", json={"resourceType": "Parameters", "parameter": params}, headers=h)
    assert r.status_code == 200, r.text
    b = r.json()
    return b["total"], [(e["fullUrl"].rsplit("/", 1)[1], e["search"]["score"],
                         e["search"]["extension"][0]["valueCode"]) for e in b.get("entry", [])]


def _delete_patient(cengine, pid: str) -> None:  # noqa: ANN001
    from consent.facts import index_facts
    from exchange.db.engine import write_tx
    from exchange.repository import store

    with write_tx(cengine) as conn:
        cur = store.lock_current(conn, "Patient", pid)
        assert cur is not None and not cur.deleted
        gone = store.write_version(conn, "Patient", pid, None, method="DELETE", current=cur)
        index_facts(conn, gone.rid, "Patient", None)


def _present_and_absent(api: TestClient, cengine, put, count: int | None) -> tuple:  # noqa: ANN001
    h = _h(api, cengine, organization=HOSP)
    put(_hidden_patient())
    try:
        assert api.get("/fhir/Patient/mt-a-hidden", headers=h).status_code == 403
        present = _match(api, h, count)
    finally:
        _delete_patient(cengine, "mt-a-hidden")
    return present, _match(api, h, count)


def test_control_the_visible_patient_is_a_certain_match(api, cengine):
    h = _h(api, cengine, organization=HOSP)
    assert _match(api, h) == (1, [("mt-vis", 0.95, "certain")])
    assert _match(api, h, count=1) == (1, [("mt-vis", 0.95, "certain")])


def test_hidden_candidate_does_not_take_a_counted_place(api, cengine, put):
    present, absent = _present_and_absent(api, cengine, put, count=1)
    assert "mt-a-hidden" not in str(present)
    assert present == absent


def test_hidden_candidate_does_not_change_the_grade(api, cengine, put):
    present, absent = _present_and_absent(api, cengine, put, count=None)
    assert "mt-a-hidden" not in str(present)
    assert present == absent


def test_social_care_role_refused_clinical_record_by_read(api, cengine):
    """``policy.role-scope`` is a disclosed refusal (consent/decisions.py): 403 on read of
    an out-of-scope resource, 404 for an id that does not exist."""
    sw = _h(api, cengine, organization=HOSP, role="R1974")
    assert api.get("/fhir/Encounter/tenc-sw1", headers=sw).status_code == 403
    assert api.get("/fhir/Encounter/never-existed", headers=sw).status_code == 404
    assert api.get("/fhir/Patient/sw1", headers=sw).status_code == 200
    assert api.get("/fhir/Observation/tobs-social", headers=sw).status_code == 200


@pytest.mark.xfail(strict=True, reason=(
    "OVER-HIDING, not a leak: consent.narrowing hides every type outside a limited role "
    "group's resource_types in SQL, ignoring the group's tags, which ConsentGate.check "
    "permits: a social-care-tagged Observation is readable by id (200) but no search finds it"))
def test_social_care_tagged_record_is_found_by_search_as_by_read(api, cengine):
    sw = _h(api, cengine, organization=HOSP, role="R1974")
    found = api.get("/fhir/Observation", params={"patient": "sw1", "_total": "accurate"}, headers=sw).json()
    ids = [e["resource"]["id"] for e in found.get("entry", []) if e["resource"]["resourceType"] == "Observation"]
    assert ids == ["tobs-social"] and found["total"] == 1
