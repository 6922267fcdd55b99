"""The patients a request names (exchange.pipeline.concerned), the patients of withheld
resources and the SQL narrowing noted by the choke point (exchange.pipeline.disclosure),
and how the AuditEvent reports them (exchange.audit.event). No database needed."""

from __future__ import annotations

import orjson
import pytest

from exchange.audit.event import event_from_context, patients_of
from exchange.pipeline.concerned import named_patients, patients_named_by
from exchange.pipeline.context import RequestContext, Requester
from exchange.pipeline.disclosure import (
    Decision,
    PermitAll,
    gate_of,
    narrow,
    release,
    release_or_refuse,
)
from exchange.repository.stored import StoredResource

USER = Requester(kind="user", client_id="gp", practitioner_id="555", organization="A1", role="R8000",
                 purpose_of_use="TREAT")


def _ctx(path: str = "", query: str = "", *, rtype: str | None = None, rid: str | None = None,
         parent: RequestContext | None = None) -> RequestContext:
    return RequestContext(requester=USER, path=path, query=query, resource_type=rtype, resource_id=rid,
                          interaction="search-type", parent=parent)


@pytest.mark.parametrize(("path", "query", "rtype", "rid", "expected"), [
    ("Observation", "patient=p1", "Observation", None, {"p1"}),
    ("Observation", "subject=Patient/p2,p3&code=x", "Observation", None, {"p2", "p3"}),
    ("Observation", "subject:Patient=p4", "Observation", None, {"p4"}),
    ("Observation", "subject=Group/g1", "Observation", None, set()),  # another type: no patient
    ("Observation", "patient=not%20an%20id", "Observation", None, set()),  # no valid id
    ("Coverage", "beneficiary=p5", "Coverage", None, {"p5"}),
    ("Patient", "_id=p6,p7", "Patient", None, {"p6", "p7"}),
    ("Observation", "_id=o1", "Observation", None, set()),  # _id names a patient on Patient only
    ("Patient/p8", "", "Patient", "p8", {"p8"}),
    ("Patient/p9/Observation", "", "Observation", None, {"p9"}),  # compartment
    ("Patient/p10/$everything", "", "Patient", "p10", {"p10"}),
    ("/fhir/Patient/p11", "", None, None, {"p11"}),  # refused before routing (401)
    ("Patient/_history", "", None, None, set()),
    ("Patient/$match", "", None, None, set()),
])
def test_patients_named_by_the_request(path, query, rtype, rid, expected) -> None:  # noqa: ANN001, PLR0913
    assert patients_named_by(_ctx(path, query, rtype=rtype, rid=rid)) == expected


def test_named_patients_include_those_already_known() -> None:
    ctx = _ctx("Observation", "patient=p1", rtype="Observation")
    ctx.patients.add("p2")
    assert named_patients(ctx) == {"p1", "p2"}


def _res(rtype: str, rid: str, patient: str | None, n: int = 1) -> StoredResource:
    from datetime import UTC, datetime

    data = {"resourceType": rtype, "id": rid}
    if patient:
        data["subject"] = {"reference": f"Patient/{patient}"}
    return StoredResource(rid=n, resource_type=rtype, id=rid, version_id=1, last_updated=datetime.now(UTC),
                          deleted=False, content=orjson.dumps(data), method="PUT")


class _DenyPatient(PermitAll):
    """Denies everything about one patient; narrows every query and reports its rules."""

    type_independent = True

    def __init__(self, hidden: str, rules: tuple[str, ...] = ()) -> None:
        self.hidden = hidden
        self.rules = rules

    def sql_filter(self, conn, ctx, resource_type, rid_column):  # noqa: ANN001
        return "narrowed"

    def narrowing_rules(self, ctx):  # noqa: ANN001
        return self.rules

    def check(self, conn, ctx, resource):  # noqa: ANN001
        if f"Patient/{self.hidden}" in resource.content.decode():
            return Decision("deny", "relationship.none", "no care relationship")
        return Decision("permit")


class _Wrapper(PermitAll):
    """A gate holding another as ``inner`` (like exchange.auth.scoped_gate)."""

    def __init__(self, inner) -> None:  # noqa: ANN001
        self.inner = inner

    def sql_filter(self, conn, ctx, resource_type, rid_column):  # noqa: ANN001
        return self.inner.sql_filter(conn, ctx, resource_type, rid_column)

    def check(self, conn, ctx, resource):  # noqa: ANN001
        return self.inner.check(conn, ctx, resource)


def test_patient_of_a_withheld_resource_is_logged_not_released() -> None:
    root = _ctx("", "", rtype=None)
    root.interaction = "batch"
    root.gate = _DenyPatient("p-hidden")
    entry = root.child(method="GET", path="Observation")
    shown = release(None, entry, [_res("Observation", "o1", "p-seen"), _res("Observation", "o2", "p-hidden", 2)])
    assert [r.id for r in shown] == ["o1"]
    assert entry.patients == {"p-seen"}  # what the response is about
    assert entry.withheld_patients == {"p-hidden"} == root.withheld_patients  # the batch's record too
    assert patients_of(root) == ["p-hidden"]  # p-seen reaches the batch via bundle's merge


def test_refused_read_names_the_patient_in_the_event() -> None:
    from exchange.outcome import FhirError

    ctx = _ctx("Observation/o2", rtype="Observation", rid="o2")
    ctx.interaction = "read"
    ctx.gate = _DenyPatient("p-hidden")
    with pytest.raises(FhirError) as refused:
        release_or_refuse(None, ctx, _res("Observation", "o2", "p-hidden"))
    assert "p-hidden" not in str(refused.value.outcome())
    ctx.outcome_status = refused.value.status
    event = event_from_context(ctx)
    assert [e["what"]["reference"] for e in event["entity"] if e["role"]["code"] == "1"] == ["Patient/p-hidden"]


def test_sql_narrowing_is_noted_with_the_rules_in_force() -> None:
    root = _ctx("Observation", "patient=p1", rtype="Observation")
    root.gate = _Wrapper(_DenyPatient("x", ("relationship.none", "label.legally-restricted")))
    entry = root.child(method="GET", path="Observation")
    gate = gate_of(entry)
    assert gate is root.gate and isinstance(gate, _Wrapper)  # the batch's own gate, as it is
    assert narrow(None, entry, "Observation", None) == "narrowed"
    assert gate.type_independent is True
    assert root.narrowed_types == {"Observation"} == entry.narrowed_types
    assert root.narrowing_rules == {"relationship.none", "label.legally-restricted"}
    root.outcome_status = 200
    event = event_from_context(root)
    narrowing = [e for e in event["entity"] if e.get("name") == "narrowing"]
    assert len(narrowing) == 1
    details = [(d["type"], d["valueString"]) for d in narrowing[0]["detail"]]
    assert details == [("sql-narrowing", "applied"), ("narrowed-types", "Observation"),
                       ("narrowing-rule", "label.legally-restricted"), ("narrowing-rule", "relationship.none")]
    assert not [e for e in event["entity"] if e.get("name") == "withheld"]  # no count is claimed


def test_no_narrowing_entity_when_the_gate_adds_nothing() -> None:
    ctx = _ctx("Observation", "", rtype="Observation")
    ctx.gate = PermitAll()
    assert narrow(None, ctx, "Observation", None) is None
    ctx.outcome_status = 200
    assert ctx.narrowed_types == set()
    assert not [e for e in event_from_context(ctx)["entity"] if e.get("name") == "narrowing"]
