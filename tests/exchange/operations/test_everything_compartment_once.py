"""``Patient/$everything`` builds its Patient-compartment condition once per process
(compartmentdefinition-patient.html: one ``res_type = T AND param IN (...)`` term per
resource type) and binds the patient per request; on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import orjson
import pytest
from sqlalchemy.dialects import postgresql, sqlite

from exchange.db.engine import read_tx, write_tx
from exchange.operations import everything as ev
from exchange.pipeline.context import ANONYMOUS, RequestContext
from exchange.pipeline.disclosure import PERMIT
from exchange.repository.store import lock_current, write_version
from exchange.search.registry import PATIENT_COMPARTMENT

BASE = "http://testserver/fhir"


def _ref(r: str) -> dict:
    return {"reference": r}


# members reached through several compartment parameters, not only subject/patient
RECORD = [
    {"resourceType": "Patient", "id": "once-1"},
    {"resourceType": "Patient", "id": "once-2"},
    {"resourceType": "Observation", "id": "once-o1", "status": "final", "code": {"text": "x"},
     "subject": _ref("Patient/once-1")},
    {"resourceType": "AllergyIntolerance", "id": "once-a2", "patient": _ref("Patient/once-2"),
     "asserter": _ref("Patient/once-1")},  # in both compartments (patient, asserter)
    {"resourceType": "CareTeam", "id": "once-c2", "participant": [{"member": _ref("Patient/once-2")}]},
    # a parameter that is not a compartment parameter of its type: in no compartment
    {"resourceType": "Observation", "id": "once-focus", "status": "final", "code": {"text": "y"},
     "focus": [_ref("Patient/once-1")]},
]


@pytest.fixture(scope="module")
def rec(engine):  # noqa: ANN001, ANN201
    with write_tx(engine) as conn:
        for res in RECORD:
            cur = lock_current(conn, res["resourceType"], res["id"])
            write_version(conn, res["resourceType"], res["id"], dict(res), method="PUT", current=cur)
    return engine


def _ids(engine, settings, pid: str, ctx: RequestContext | None = None) -> set[str]:  # noqa: ANN001
    with read_tx(engine) as conn:
        body = ev.everything(conn, ctx or RequestContext(requester=ANONYMOUS), settings, patient_id=pid,
                             params=[("_count", "100")], base_url=BASE)
    return {e["resource"]["id"] for e in orjson.loads(body).get("entry", [])}


def test_condition_names_exactly_the_compartment_parameters_as_constants():
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        compiled = ev._IN_SOME_COMPARTMENT.compile(dialect=dialect)
        assert compiled.params == {}  # constants in the SQL text: nothing to bind per execution
        terms = re.findall(r"res_type = '([^']+)' AND search_reference\.param IN \(([^)]*)\)", str(compiled))
        pairs = {(t, p.strip().strip("'")) for t, ps in terms for p in ps.split(",")}
        assert len(terms) == len(PATIENT_COMPARTMENT)
        assert pairs == {(t, p) for t, ps in PATIENT_COMPARTMENT.items() for p in ps}


@pytest.mark.parametrize("bad", ["", "x'y", "a b", "1abc", "subject; drop"])
def test_only_names_become_sql_literals(bad):
    with pytest.raises(ValueError):
        ev._sql_literal(bad)


def test_built_once_and_the_patient_is_bound_per_request(rec, settings, monkeypatch):
    def rebuilt():  # noqa: ANN202
        raise AssertionError("the compartment condition was rebuilt for a request")

    monkeypatch.setattr(ev, "_compartment_params", rebuilt)
    one = {"once-1", "once-o1", "once-a2"}
    two = {"once-2", "once-a2", "once-c2"}
    for _ in range(2):  # alternate: nothing of one request's patient sticks to the next
        assert _ids(rec, settings, "once-1") == one
        assert _ids(rec, settings, "once-2") == two


def test_gate_condition_still_narrows_members(rec, settings):
    class Gate:
        def sql_filter(self, conn, ctx, resource_type, rid_column):  # noqa: ANN001, ANN201
            if resource_type == "AllergyIntolerance":
                return rid_column.is_(None)  # hides every AllergyIntolerance in SQL
            return None

        def check(self, conn, ctx, resource):  # noqa: ANN001, ANN201
            return PERMIT

    ctx = RequestContext(requester=ANONYMOUS, gate=Gate())
    assert _ids(rec, settings, "once-1", ctx) == {"once-1", "once-o1"}
    assert _ids(rec, settings, "once-2", RequestContext(requester=ANONYMOUS, gate=Gate())) == {"once-2", "once-c2"}
