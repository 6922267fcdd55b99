"""Quantity, number, uri and composite search (search.html#quantity #number #uri #composite),
and custom SearchParameters with reindex."""

from __future__ import annotations

import pytest

from exchange.search.indexer import reindex
from exchange.search.registry import register_search_parameter, supported_params


@pytest.mark.parametrize(("query", "expected"), [
    ("value-quantity=72", {"o1", "o5"}),
    ("value-quantity=72.0", {"o1"}),
    ("value-quantity=gt99", {"o2", "o3"}),
    ("value-quantity=lt80|http://unitsofmeasure.org|/min", {"o1", "o5"}),
    ("value-quantity=120||mm[Hg]", {"o3"}),
    ("value-quantity=120|http://unitsofmeasure.org|/min", set()),
    ("value-quantity=ge100", {"o2", "o3"}),
    ("value-quantity=le72", {"o1"}),
    ("value-quantity=ap110", {"o2", "o3"}),
    ("value-quantity=ne72", {"o2", "o3"}),
    ("component-value-quantity=120", {"o3"}),
    ("code-value-quantity=http://loinc.org|8867-4$gt90", {"o2"}),
    ("code-value-quantity=8480-6$120", {"o3"}),
    ("code-value-quantity=8867-4$120", set()),
    ("code-value-quantity=8867-4$72,8480-6$120", {"o1", "o5", "o3"}),
    ("component-code-value-quantity=8480-6$120", {"o3"}),
    ("code-value-concept=271649006$http://snomed.info/sct|373066001", {"o4"}),
    ("code-value-concept=271649006$1", set()),
])
def test_observation_quantities_and_composites(sx, query, expected):
    assert sx.find("Observation", query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("_source=http://gp.example/feeds", {"p2"}),
    ("_source:below=http://gp.example", {"p1", "p2"}),
    ("_source:below=http://gp.example/feeds/", {"p1"}),
    ("_source:above=http://gp.example/feeds/1/extra", {"p1", "p2"}),
    ("_source:above=http://gp.example/other", set()),
])
def test_uri(sx, query, expected):
    assert sx.find("Patient", query) == expected


def test_custom_number_parameter_after_reindex(sx):
    sp = {
        "resourceType": "SearchParameter", "url": "http://example.org/sp/multiple-birth",
        "code": "multiple-birth", "base": ["Patient"], "type": "number",
        "expression": "(Patient.multipleBirth as integer)", "description": "birth order",
    }
    register_search_parameter(sp)
    assert "multiple-birth" in {p["name"] for p in supported_params("Patient")}
    assert reindex(sx.engine, "Patient") == 4
    assert sx.find("Patient", "multiple-birth=2") == {"p2"}
    assert sx.find("Patient", "multiple-birth=gt2") == set()
    assert sx.find("Patient", "multiple-birth=ge1.5") == {"p2"}
    assert sx.find("Patient", "multiple-birth:missing=true") == {"p1", "p3", "p4"}


def test_unsupported_custom_parameter_rejected():
    with pytest.raises(ValueError):
        register_search_parameter({"resourceType": "SearchParameter", "code": "x", "base": ["Patient"],
                                   "type": "special", "expression": "Patient.id"})
    with pytest.raises(ValueError):
        register_search_parameter({"resourceType": "SearchParameter", "code": "y", "base": ["Patient"],
                                   "type": "token", "expression": "Patient.name.aggregate($this)"})
