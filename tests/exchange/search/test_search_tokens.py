"""Token search (R4 search.html#token): code, system|code, |code, system|, :not, :text,
:of-type, :missing; identifiers, codings, booleans, ContactPoints."""

from __future__ import annotations

import pytest

NHS = "https://fhir.nhs.uk/Id/nhs-number"


@pytest.mark.parametrize(("query", "expected"), [
    ("gender=male", {"p1"}),
    ("gender=male,female", {"p1", "p2"}),
    (f"identifier={NHS}|9000000009", {"p1"}),
    ("identifier=9000000009", {"p1", "p3"}),
    ("identifier=|9000000009", set()),
    (f"identifier={NHS}|", {"p1", "p2"}),
    ("gender:not=male", {"p2", "p3", "p4"}),
    ("gender:missing=true", {"p4"}),
    ("gender:missing=false", {"p1", "p2", "p3"}),
    ("active=true", {"p1"}),
    ("active=false", {"p2"}),
    ("email=a@x.org", {"p1"}),
    ("phone=a@x.org", set()),
    ("_tag=http://tags|t1", {"p1"}),
    ("_id=p1,p3", {"p1", "p3"}),
    ("gender=male&gender=female", set()),
])
def test_patient_tokens(sx, query, expected):
    assert sx.find("Patient", query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("code=http://loinc.org|8867-4", {"o1", "o2", "o5"}),
    ("code=http://loinc.org|8867-4,http://loinc.org|8480-6", {"o1", "o2", "o3", "o5"}),
    ("code=http://snomed.info/sct|8867-4", set()),
    ("code:text=heart", {"o1", "o2", "o5"}),
    ("code:text=blood", {"o3"}),
    ("code:text=pressure", {"o3"}),
    ("identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|X1", {"o1"}),
    ("identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|X2", set()),
    ("status=final", {"o1", "o3", "o4", "o5"}),
    ("category=vital-signs", {"o1"}),
    ("value-concept=http://snomed.info/sct|373066001", {"o4"}),
])
def test_observation_tokens(sx, query, expected):
    assert sx.find("Observation", query) == expected


def test_condition_code_system_matters(sx):
    assert sx.find("Condition", "code=http://snomed.info/sct|44054006") == {"c1"}
    assert sx.find("Condition", "code=44054006") == {"c1", "c2"}
