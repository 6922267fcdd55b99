"""AuditEvent content per interaction (IHE BALP shape), and the derived query columns."""

from __future__ import annotations

from collections import Counter

import orjson
from audit_helpers import BREAK_GLASS, CLINICIAN, make_ctx
from fhir.resources.R4B.auditevent import AuditEvent

from exchange.audit.columns import derive
from exchange.audit.event import event_from_context, token_event
from exchange.pipeline.context import Requester


def _valid(event: dict) -> dict:
    AuditEvent.model_validate(event)  # a valid R4 AuditEvent
    return event


def _by_role(event: dict, role: str) -> list[dict]:
    return [e for e in event["entity"] if e["role"]["code"] == role]


def test_read_patient_event_names_agents_patient_query_and_returned_resource() -> None:
    ctx = make_ctx(released=(("Patient", "p1"),))
    ev = _valid(event_from_context(ctx))
    assert ev["type"]["code"] == "rest"
    assert ev["subtype"][0] == {"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}
    assert ev["action"] == "R" and ev["outcome"] == "0"
    user = [a for a in ev["agent"] if a["requestor"]]
    assert len(user) == 1
    assert user[0]["who"]["identifier"]["value"] == "555123456789"
    assert user[0]["role"][0]["coding"][0]["code"] == "R8000"
    assert user[0]["location"]["identifier"]["value"] == "A81001"
    assert user[0]["purposeOfUse"][0]["coding"][0]["code"] == "TREAT"
    client = [a for a in ev["agent"] if a["type"]["coding"][0]["code"] == "110153"]
    assert client[0]["who"]["identifier"]["value"] == "gp-system"
    assert client[0]["network"]["address"] == "127.0.0.1"
    assert [e["what"]["reference"] for e in _by_role(ev, "1")] == ["Patient/p1"]
    query = _by_role(ev, "24")[0]
    assert query["description"] == "GET /fhir/Patient/p1"
    assert [e["what"]["reference"] for e in _by_role(ev, "4")] == ["Patient/p1/_history/1"]
    assert ev["source"]["observer"]["display"] == "care-record-exchange"


def test_search_touching_several_patients_records_each() -> None:
    ctx = make_ctx(interaction="search-type", resource_type="Observation", resource_id=None,
                   query="code=1234&_count=10", patients=("p1", "p2", "p3"),
                   released=(("Observation", "o1"), ("Observation", "o2")))
    ev = _valid(event_from_context(ctx))
    assert ev["action"] == "E" and ev["subtype"][0]["code"] == "search-type"
    assert sorted(e["what"]["reference"] for e in _by_role(ev, "1")) == [
        "Patient/p1", "Patient/p2", "Patient/p3"]
    assert _by_role(ev, "24")[0]["description"] == "GET /fhir/Observation?code=1234&_count=10"
    cols, patients = derive(ev)
    assert patients == ["p1", "p2", "p3"]
    assert cols["released"] == 2 and cols["resource_type"] == "Observation"
    assert cols["entity_types"] == " Observation Patient "


def test_write_interactions_have_crud_actions() -> None:
    for interaction, action in [("create", "C"), ("update", "U"), ("patch", "U"),
                                ("delete", "D"), ("vread", "R"), ("history-instance", "R"),
                                ("transaction", "E"), ("batch", "E")]:
        ev = _valid(event_from_context(make_ctx(interaction=interaction)))
        assert ev["action"] == action, interaction
        assert ev["subtype"][0]["code"] == interaction


def test_operation_records_its_name() -> None:
    ctx = make_ctx(interaction="operation", operation="$everything", patients=("p1", "p2"))
    ev = _valid(event_from_context(ctx))
    assert ev["action"] == "E"
    assert [s["code"] for s in ev["subtype"]] == ["operation", "$everything"]


def test_failure_outcomes() -> None:
    assert event_from_context(make_ctx(status=403))["outcome"] == "4"
    assert event_from_context(make_ctx(status=503))["outcome"] == "8"
    assert event_from_context(make_ctx(status=None))["outcome"] == "12"  # type: ignore[arg-type]
    ev = event_from_context(make_ctx(status=403, outcome_detail="consent denied"))
    assert ev["outcomeDesc"] == "consent denied"


def test_withheld_count_and_rules_are_recorded() -> None:
    ctx = make_ctx(interaction="search-type", resource_type="Condition", resource_id=None,
                   withheld=3, withheld_rules=Counter({"sensitive-sexual-health": 2,
                                                      "patient-objection": 1}))
    ev = _valid(event_from_context(ctx))
    withheld = [e for e in ev["entity"] if e.get("name") == "withheld"][0]
    details = {d["type"]: d["valueString"] for d in withheld["detail"]}
    assert details["withheld-count"] == "3"
    assert details["withheld-by:sensitive-sexual-health"] == "2"
    assert details["withheld-by:patient-objection"] == "1"
    assert derive(ev)[0]["withheld"] == 3


def test_break_glass_reason_and_relationship() -> None:
    ctx = make_ctx(BREAK_GLASS, relationship=False)
    ev = _valid(event_from_context(ctx))
    assert ev["purposeOfEvent"][0]["coding"][0]["code"] == "BTG"
    bg = [e for e in ev["entity"] if e.get("name") == "break-glass"][0]
    assert bg["description"] == "Unconscious patient in ED"
    cols, _ = derive(ev)
    assert cols["break_glass"] is True
    assert cols["break_glass_reason"] == "Unconscious patient in ED"
    assert cols["relationship"] is False
    assert cols["agent"] == "555999888777" and cols["organization"] == "RX1"
    assert cols["role"] == "R8003" and cols["agent_name"] == "Dr Amir Khan"


def test_system_client_without_user_has_no_requestor_user() -> None:
    system = Requester(kind="system", client_id="population-health", scopes=frozenset({"system/*.read"}))
    ev = _valid(event_from_context(make_ctx(system)))
    assert not any(a["requestor"] for a in ev["agent"])
    cols, _ = derive(ev)
    assert cols["client_id"] == "population-health" and cols["agent"] is None


def test_patient_token_records_its_patient() -> None:
    citizen = Requester(kind="patient", client_id="nhs-app", patient_id="p9")
    ev = event_from_context(make_ctx(citizen, resource_type="Observation", resource_id=None,
                                     interaction="search-type"))
    assert derive(ev)[1] == ["p9"]


def test_token_event_for_success_and_failure() -> None:
    ok = _valid(token_event(200, "gp-system", "token issued", practitioner_id="555123456789",
                            organization="A81001", purpose_of_use="TREAT"))
    assert ok["type"]["code"] == "110114" and ok["outcome"] == "0"
    assert ok["subtype"][0]["code"] == "token"
    bad = _valid(token_event(401, "rogue", "invalid client assertion", subtype="auth-failure"))
    assert bad["outcome"] == "4" and bad["outcomeDesc"] == "invalid client assertion"
    cols, patients = derive(bad)
    assert cols["client_id"] == "rogue" and cols["subtype"] == "auth-failure" and patients == []


def test_event_serialises_canonically() -> None:
    from exchange.audit.chain import canonical
    ev = event_from_context(make_ctx(CLINICIAN))
    assert canonical(ev) == canonical(orjson.loads(canonical(ev)))
