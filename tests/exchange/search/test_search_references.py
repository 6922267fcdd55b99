"""Reference search (search.html#reference), chaining (#chaining) and _has (#has)."""

from __future__ import annotations

import pytest

from exchange.outcome import FhirError


@pytest.mark.parametrize(("query", "expected"), [
    ("subject=Patient/p1", {"o1", "o3"}),
    ("subject=p1", {"o1", "o3"}),
    ("subject:Patient=p1", {"o1", "o3"}),
    ("subject:Group=p1", set()),
    ("patient=http://testserver/fhir/Patient/p1", {"o1", "o3"}),
    ("subject=http://elsewhere.example/fhir/Patient/p1", set()),
    ("subject=Patient/p1/_history/3", {"o1", "o3"}),
    ("subject=Patient/p1,Patient/p4", {"o1", "o3", "o5"}),
    ("performer=Practitioner/dr1", {"o1"}),
    ("performer:missing=true", {"o2", "o3", "o4", "o5"}),
    ("encounter=e1", {"o1"}),
])
def test_observation_references(sx, query, expected):
    assert sx.find("Observation", query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("subject.name=smith", {"o1", "o2", "o3", "o4"}),
    ("subject:Patient.name=smithers", {"o2"}),
    ("subject:Patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9000000017", {"o2"}),
    ("patient.gender=other", {"o4"}),
    ("subject.general-practitioner.name=leeds", {"o1", "o3"}),
    ("subject.general-practitioner:Organization.identifier=B86001", {"o1", "o3"}),
    ("subject.general-practitioner.name=york", {"o2"}),
    ("subject.birthdate=1970", {"o1", "o2", "o3", "o5"}),
])
def test_chained_parameters(sx, query, expected):
    assert sx.find("Observation", query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("_has:Observation:patient:code=8480-6", {"p1"}),
    ("_has:Observation:subject:code=8867-4", {"p1", "p2", "p4"}),
    ("_has:Observation:subject:status=preliminary", {"p2"}),
    ("_has:Condition:subject:code=http://snomed.info/sct|44054006", {"p1"}),
    ("_has:Observation:subject:_has:Provenance:target:_id=pv1", {"p1"}),
    ("_has:Observation:subject:code=8480-6&gender=female", set()),
])
def test_reverse_chaining(sx, query, expected):
    assert sx.find("Patient", query) == expected


def test_organization_revchain_and_include_targets(sx):
    assert sx.find("Organization", "_has:Patient:general-practitioner:name=smithers") == {"org2"}


def test_unknown_chain_is_rejected(sx):
    with pytest.raises(FhirError) as err:
        sx.find("Observation", "subject.nonsense=1")
    assert err.value.status == 400 and err.value.code == "not-supported"
    with pytest.raises(FhirError):
        sx.find("Patient", "_has:Observation:code:status=final")
