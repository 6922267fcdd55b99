"""A Consent that explicitly restricts the care-preference class (issue 6: "unless a
Consent provision explicitly restricts this class, in which case the response says
so"), over HTTP with a real token and a real Consent: the restricted Flags are not
released, ``$care-preferences`` carries a ``withheld`` DetectedIssue that says why, and
the CDS Hooks service answers with an info card that says so. SQLite and PostgreSQL."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from eol_fixtures import KIND, flag, observation  # noqa: E402

from consent.decisions import CARE_PREF_NOTICE  # noqa: E402
from exchange.auth.testing import bearer, quick_token  # noqa: E402
from exchange.db.engine import write_tx  # noqa: E402
from exchange.repository import store  # noqa: E402

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
GP, HOSP = "CR001", "CR002"
PRIVACY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]}


def _put(engine, res: dict) -> None:  # noqa: ANN001
    from consent.facts import index_facts
    from consent.labels import apply_labels

    res = apply_labels(dict(res))
    with write_tx(engine) as conn:
        cur = store.lock_current(conn, res["resourceType"], res["id"])
        stored = store.write_version(conn, res["resourceType"], res["id"], res, method="PUT", current=cur)
        index_facts(conn, stored.rid, res["resourceType"], res)


def _world(pid: str, provision: dict | None) -> list[dict]:
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    out = [
        {"resourceType": "Patient", "id": pid, "generalPractitioner": [{"reference": "Organization/cr-gp"}]},
        {"resourceType": "Encounter", "id": f"{pid}-enc", "status": "in-progress", "class": {"code": "AMB"},
         "subject": {"reference": f"Patient/{pid}"}, "period": {"start": day},
         "serviceProvider": {"identifier": {"system": ODS, "value": HOSP}}},
        flag(f"{pid}-dnacpr", "450476008", patient=pid, source="GP"),
        observation(f"{pid}-ppc", "place-of-care", system=KIND, value="Home", patient=pid, source="Community"),
    ]
    if provision is not None:
        out.append({"resourceType": "Consent", "id": f"{pid}-consent", "status": "active", "scope": PRIVACY,
                    "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                    "patient": {"reference": f"Patient/{pid}"}, "provision": provision})
    return out


#: the patient objects to sharing and, explicitly, to sharing their Flags (the class of
#: their DNACPR decision); the place-of-care Observation is not restricted explicitly
RESTRICTS_FLAGS = {"type": "deny", "provision": [
    {"type": "deny", "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Flag"}]}]}
#: a plain objection that does not name the care-preference class
PLAIN_OBJECTION = {"type": "deny"}


@pytest.fixture(scope="module")
def api(engine, settings):  # noqa: ANN001, ANN201
    from fastapi.testclient import TestClient

    from exchange.app import create_app

    s = settings.with_(auth_enabled=True, consent_enabled=True, audit_enabled=False)
    _put(engine, {"resourceType": "Organization", "id": "cr-gp", "identifier": [{"system": ODS, "value": GP}]})
    nothing = [r for r in _world("cr-restricts-nothing", RESTRICTS_FLAGS) if r["resourceType"] != "Flag"]
    for res in _world("cr-restricts", RESTRICTS_FLAGS) + _world("cr-objects", PLAIN_OBJECTION) + nothing:
        _put(engine, res)
    with TestClient(create_app(s, engine=engine)) as client:
        client.cr_settings = s  # type: ignore[attr-defined]
        yield client


def _hospital(engine, api) -> dict[str, str]:  # noqa: ANN001
    return bearer(quick_token(engine, api.cr_settings, client_id="cr-hosp", scope="user/*.rs", organization=HOSP))


def _document(api, h, pid: str) -> tuple[set[str], list[dict]]:  # noqa: ANN001
    r = api.get(f"/fhir/Patient/{pid}/$care-preferences", headers=h)
    assert r.status_code == 200, r.text
    resources = [e["resource"] for e in r.json()["entry"]]
    return {x["id"] for x in resources}, [x for x in resources if x["resourceType"] == "DetectedIssue"]


def _cards(api, h, pid: str) -> list[dict]:  # noqa: ANN001
    hook = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"patientId": pid}}
    r = api.post("/cds-services/care-preferences-patient-view", json=hook, headers=h)
    assert r.status_code == 200, r.text
    return r.json()["cards"]


def test_explicit_restriction_is_stated_in_the_document(engine, api) -> None:  # noqa: ANN001
    got, issues = _document(api, _hospital(engine, api), "cr-restricts")
    assert "cr-restricts-dnacpr" not in got  # the restricted class is withheld
    assert "cr-restricts-ppc" in got  # what the provision does not name is still shared
    (withheld,) = [i for i in issues if CARE_PREF_NOTICE in i.get("detail", "")]
    assert withheld["code"]["coding"][0]["code"] == "withheld" and "not shown" in withheld["detail"]
    assert not any("record(s)" in i.get("detail", "") for i in issues)  # never a count of what was hidden


def test_the_statement_does_not_depend_on_what_was_hidden(engine, api) -> None:  # noqa: ANN001
    """The same restriction with no care preference recorded gives the same statement, so
    it reveals nothing about whether a withheld record exists."""
    h = _hospital(engine, api)
    _, with_flag = _document(api, h, "cr-restricts")
    _, without = _document(api, h, "cr-restricts-nothing")
    assert sorted(i["detail"] for i in with_flag) == sorted(i["detail"] for i in without)
    cards = {(c["indicator"], c["summary"], c["detail"]) for c in _cards(api, h, "cr-restricts")}
    assert cards == {(c["indicator"], c["summary"], c["detail"]) for c in _cards(api, h, "cr-restricts-nothing")}


def test_explicit_restriction_is_stated_on_a_card(engine, api) -> None:  # noqa: ANN001
    cards = _cards(api, _hospital(engine, api), "cr-restricts")
    assert not any(c["summary"].startswith("DNACPR") for c in cards)
    info = [c for c in cards if c["indicator"] == "info"]
    assert any(c["summary"] == "Care preferences may be withheld (patient's consent restricts them)"
               and "patient's consent directive explicitly restricts them" in c["detail"] for c in info), cards


def test_a_plain_objection_does_not_hide_or_mention_them(engine, api) -> None:  # noqa: ANN001
    h = _hospital(engine, api)
    got, issues = _document(api, h, "cr-objects")
    assert {"cr-objects-dnacpr", "cr-objects-ppc"} <= got
    assert not any(CARE_PREF_NOTICE in i.get("detail", "") for i in issues)
    cards = _cards(api, h, "cr-objects")
    assert cards[0]["summary"].startswith("DNACPR")
    assert not any("explicitly restricts" in c["detail"] for c in cards)
