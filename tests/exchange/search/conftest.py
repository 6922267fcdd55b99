"""A small record with near misses for the search tests, loaded on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from exchange.db.engine import read_tx, write_tx
from exchange.pipeline.context import ANONYMOUS, RequestContext
from exchange.repository.store import lock_current, write_version
from exchange.search import service

BASE = "http://testserver/fhir"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _obs(oid: str, subject: str, code: str, value: Any, effective: dict[str, Any], **extra: Any) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": extra.pop("status", "final"),
            "code": {"coding": [{"system": LOINC, "code": code, "display": extra.pop("display", "Heart rate")}]},
            "subject": {"reference": subject}, **value, **effective, **extra}


def _qty(v: float, code: str = "/min") -> dict:
    return {"valueQuantity": {"value": v, "unit": code, "system": UCUM, "code": code}}


FIXTURE: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "org1", "name": "Leeds GP",
     "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "B86001"}]},
    {"resourceType": "Organization", "id": "org2", "name": "York Hospital"},
    {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Who", "given": ["Hartnell"]}]},
    {"resourceType": "Practitioner", "id": "dr2", "name": [{"family": "Watson"}]},
    {"resourceType": "Patient", "id": "p1",
     "meta": {"source": "http://gp.example/feeds/1", "tag": [{"system": "http://tags", "code": "t1"}]},
     "identifier": [{"system": NHS, "value": "9000000009"}], "active": True,
     "name": [{"family": "Smíth", "given": ["John"]}], "gender": "male", "birthDate": "1970-05-15",
     "telecom": [{"system": "email", "value": "a@x.org"}, {"system": "phone", "value": "0113 000"}],
     "address": [{"line": ["1 High St"], "city": "Leeds", "postalCode": "LS1 1AA"}],
     "generalPractitioner": [{"reference": "Organization/org1"}]},
    {"resourceType": "Patient", "id": "p2", "meta": {"source": "http://gp.example/feeds"},
     "identifier": [{"system": NHS, "value": "9000000017"}], "active": False,
     "name": [{"family": "Smithers", "given": ["Jane"]}], "gender": "female", "birthDate": "1970-06",
     "address": [{"city": "LEEDS"}], "multipleBirthInteger": 2,
     "generalPractitioner": [{"reference": "Organization/org2"}]},
    {"resourceType": "Patient", "id": "p3", "meta": {"source": "http://hospital.example/x"},
     "identifier": [{"system": "http://other/ids", "value": "9000000009"}],
     "name": [{"family": "Jones", "given": ["Smith"]}], "gender": "other", "birthDate": "1985-01-01",
     "deceasedDateTime": "2020-01-01"},
    {"resourceType": "Patient", "id": "p4", "name": [{"family": "Dubois", "given": ["Élodie"]}],
     "birthDate": "1970", "address": [{"city": "York"}]},
    _obs("o1", "Patient/p1", "8867-4", _qty(72), {"effectiveDateTime": "2024-01-01T10:00:00Z"},
         performer=[{"reference": "Practitioner/dr1"}], encounter={"reference": "Encounter/e1"},
         category=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "vital-signs"}]}],
         identifier=[{"system": "http://lab/ids", "value": "X1",
                      "type": {"coding": [{"system": V2_0203, "code": "MR"}]}}]),
    _obs("o2", "Patient/p2", "8867-4", _qty(100), {"effectiveDateTime": "2024-01-02"}, status="preliminary",
         identifier=[{"system": "http://lab/ids", "value": "X1",
                      "type": {"coding": [{"system": V2_0203, "code": "PLAC"}]}}]),
    _obs("o3", "Patient/p1", "8480-6", _qty(120, "mm[Hg]"),
         {"effectivePeriod": {"start": "2023-12-31T00:00:00Z", "end": "2024-01-01T00:00:00Z"}},
         display="Systolic blood pressure",
         component=[{"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                     "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"}}]),
    _obs("o4", "Patient/p3", "271649006", {"valueCodeableConcept": {"coding": [{"system": SCT, "code": "373066001"}]}},
         {"effectiveDateTime": "2023-06"}, display="Smoker"),
    _obs("o5", "Patient/p4", "8867-4", _qty(72.4), {"effectiveDateTime": "2024-01-01T23:30:00-05:00"}),
    {"resourceType": "Encounter", "id": "e1", "status": "finished", "subject": {"reference": "Patient/p1"},
     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
     "serviceProvider": {"reference": "Organization/org1"},
     "period": {"start": "2024-01-01T09:00:00Z", "end": "2024-01-01T11:00:00Z"}},
    {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
     "code": {"coding": [{"system": SCT, "code": "44054006", "display": "Diabetes type 2"}]},
     "onsetDateTime": "2010", "asserter": {"reference": "Practitioner/dr1"}},
    {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p2"},
     "code": {"coding": [{"system": "http://other", "code": "44054006"}]}},
    {"resourceType": "Provenance", "id": "pv1", "target": [{"reference": "Observation/o1"}],
     "recorded": "2024-01-01T10:05:00Z", "agent": [{"who": {"reference": "Organization/org1"}}]},
]


def put(conn: Any, resource: dict[str, Any]) -> Any:
    res = copy.deepcopy(resource)
    current = lock_current(conn, res["resourceType"], res["id"])
    return write_version(conn, res["resourceType"], res["id"], res, method="PUT", current=current)


@pytest.fixture(scope="module")
def loaded(engine):  # noqa: ANN001, ANN201
    with write_tx(engine) as conn:
        for res in FIXTURE:
            put(conn, res)
    return engine


def context(requester=ANONYMOUS, gate: object | None = None) -> RequestContext:  # noqa: ANN001
    return RequestContext(requester=requester, gate=gate)


def run(engine, settings, rtype: str | None, query: list[tuple[str, str]] | str, *,  # noqa: ANN001
        ctx: RequestContext | None = None, lenient: bool = False,
        compartment: tuple[str, str] | None = None) -> dict[str, Any]:
    if isinstance(query, str):
        from urllib.parse import parse_qsl

        query = parse_qsl(query, keep_blank_values=True)
    with read_tx(engine) as conn:
        body = service.search(conn, ctx or context(), settings, resource_type=rtype, params=list(query),
                              compartment=compartment, lenient=lenient, base_url=BASE)
    return orjson.loads(body)


def ids(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode}


def ordered(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


@pytest.fixture(scope="module")
def sx(loaded, settings):  # noqa: ANN001, ANN201
    """Helpers bound to the loaded record: find(type, query) -> ids, fetch(...) -> Bundle."""
    from types import SimpleNamespace

    def fetch(rtype, query, **kw):  # noqa: ANN001, ANN202
        return run(loaded, settings, rtype, query, **kw)

    def find(rtype, query, **kw):  # noqa: ANN001, ANN202
        return ids(fetch(rtype, query, **kw))

    return SimpleNamespace(engine=loaded, settings=settings, fetch=fetch, find=find, ids=ids,
                           ordered=ordered, context=context, put=put, base=BASE)
