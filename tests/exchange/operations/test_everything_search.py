"""Patient/$everything (R4 patient-operation-everything.html): compartment members plus
referenced Practitioner / Organization / Location / Medication / Device, _type, _since,
paging, the disclosure gate, type level; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

import orjson
import pytest

from exchange.db.engine import read_tx, write_tx
from exchange.operations.everything import everything
from exchange.outcome import FhirError
from exchange.pipeline.context import ANONYMOUS, RequestContext
from exchange.pipeline.disclosure import PERMIT, Decision
from exchange.repository.store import lock_current, read_current, write_version
from exchange.search import service

BASE = "http://testserver/fhir"
OLD = datetime(2020, 1, 1, tzinfo=UTC)


def _ref(r: str) -> dict:
    return {"reference": r}


RECORD = [
    {"resourceType": "Patient", "id": "A", "name": [{"family": "Able"}],
     "generalPractitioner": [_ref("Organization/orgA")]},
    {"resourceType": "Patient", "id": "B", "name": [{"family": "Baker"}]},
    {"resourceType": "Practitioner", "id": "drA"},
    {"resourceType": "Practitioner", "id": "drB"},
    {"resourceType": "Practitioner", "id": "drUnused"},
    {"resourceType": "Organization", "id": "orgA"},
    {"resourceType": "Organization", "id": "orgB"},
    {"resourceType": "Location", "id": "locA"},
    {"resourceType": "Medication", "id": "medA"},
    {"resourceType": "Device", "id": "devA"},
    {"resourceType": "Observation", "id": "oA", "status": "final", "code": {"text": "x"},
     "subject": _ref("Patient/A"), "performer": [_ref("Practitioner/drA")], "device": _ref("Device/devA")},
    {"resourceType": "Condition", "id": "cA", "subject": _ref("Patient/A"), "asserter": _ref("Practitioner/drA")},
    {"resourceType": "Encounter", "id": "eA", "status": "finished", "subject": _ref("Patient/A"),
     "serviceProvider": _ref("Organization/orgA"), "location": [{"location": _ref("Location/locA")}]},
    {"resourceType": "MedicationRequest", "id": "mrA", "status": "active", "intent": "order",
     "subject": _ref("Patient/A"), "medicationReference": _ref("Medication/medA")},
    {"resourceType": "Observation", "id": "oB", "status": "final", "code": {"text": "y"},
     "subject": _ref("Patient/B"), "performer": [_ref("Practitioner/drB")]},
    {"resourceType": "Condition", "id": "cB", "subject": _ref("Patient/B"), "asserter": _ref("Practitioner/drB")},
]
A_ALL = {"A", "oA", "cA", "eA", "mrA", "drA", "orgA", "locA", "medA", "devA"}
NEW = {"oA"}  # written "now"; everything else in 2020


@pytest.fixture(scope="module")
def rec(engine):  # noqa: ANN001, ANN201
    with write_tx(engine) as conn:
        for res in RECORD:
            res = dict(res)
            cur = lock_current(conn, res["resourceType"], res["id"])
            write_version(conn, res["resourceType"], res["id"], res, method="PUT", current=cur,
                          when=None if res["id"] in NEW else OLD)
    return engine


def _run(engine, settings, pid, params=(), ctx=None):  # noqa: ANN001, ANN202
    ctx = ctx or RequestContext(requester=ANONYMOUS)
    with read_tx(engine) as conn:
        first = orjson.loads(everything(conn, ctx, settings, patient_id=pid, params=list(params), base_url=BASE))
        pages = [first]
        while nxt := {x["relation"]: x["url"] for x in pages[-1]["link"]}.get("next"):
            cursor = parse_qs(urlparse(nxt).query)["_getpages"][0]
            pages.append(orjson.loads(service.search_page(conn, ctx, settings, cursor, BASE)))
    ids = [e["resource"]["id"] for p in pages for e in p.get("entry", [])]
    assert len(ids) == len(set(ids)), "a resource appeared twice"
    return set(ids), pages


def test_everything_is_compartment_plus_references(rec, settings):
    ids, pages = _run(rec, settings, "A")
    assert ids == A_ALL
    assert pages[0]["type"] == "searchset"
    assert pages[0]["entry"][0]["fullUrl"].startswith(BASE + "/")


def test_type_since_and_paging(rec, settings):
    assert _run(rec, settings, "A", [("_type", "Observation,Practitioner")])[0] == {"oA", "drA"}
    assert _run(rec, settings, "A", [("_since", "2023-01-01T00:00:00Z")])[0] == NEW
    ids, pages = _run(rec, settings, "A", [("_count", "3")])
    assert ids == A_ALL and len(pages) == 4


def test_gate_hides_members_and_what_only_they_reference(rec, settings):
    with read_tx(rec) as conn:
        hidden = {read_current(conn, t, i).rid for t, i in [("Observation", "oA"), ("Condition", "cA")]}

    class Gate:
        def sql_filter(self, conn, ctx, resource_type, rid_column):  # noqa: ANN001, ANN201
            return rid_column.notin_(sorted(hidden))

        def check(self, conn, ctx, resource):  # noqa: ANN001, ANN201
            return Decision("deny", rule="t") if resource.rid in hidden else PERMIT

    ctx = RequestContext(requester=ANONYMOUS, gate=Gate())
    assert _run(rec, settings, "A", ctx=ctx)[0] == A_ALL - {"oA", "cA", "drA", "devA"}


def test_type_level_and_errors(rec, settings):
    ids, _ = _run(rec, settings, None)
    assert ids >= A_ALL | {"B", "oB", "cB", "drB"}
    assert "drUnused" not in ids and "orgB" not in ids
    with pytest.raises(FhirError) as err:
        _run(rec, settings, "nobody")
    assert err.value.status == 404
    with pytest.raises(FhirError) as err:
        _run(rec, settings, "A", [("start", "2020")])
    assert err.value.status == 400


def test_large_compartment_is_paged_completely(rec, settings):
    with write_tx(rec) as conn:
        conn_rows = [{"resourceType": "Observation", "id": f"big{i}", "status": "final", "code": {"text": "z"},
                      "subject": _ref("Patient/B")} for i in range(240)]
        for res in conn_rows:
            write_version(conn, "Observation", res["id"], res, method="PUT")
    ids, pages = _run(rec, settings, "B", [("_count", "60")])
    assert {f"big{i}" for i in range(240)} <= ids and len(pages) == 5
