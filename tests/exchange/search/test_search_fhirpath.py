"""The FHIRPath subset evaluator (exchange.search.fhirpath) against fhirpathpy as an oracle,
over every R4 SearchParameter expression of the served types that fhirpathpy can run."""

from __future__ import annotations

import re

import orjson
import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

from exchange.search.fhirpath import FhirPathError, compile_for_type, parse
from exchange.search.registry import REGISTRY

SAMPLES = [
    {"resourceType": "Patient", "id": "p", "active": True, "gender": "female", "birthDate": "1980-02",
     "deceasedDateTime": "2020-01-01T10:00:00Z", "name": [{"family": "Ng", "given": ["A", "B"]}],
     "telecom": [{"system": "email", "value": "a@b"}, {"system": "phone", "value": "1"}],
     "address": [{"city": "Leeds", "line": ["1 Road"]}], "identifier": [{"system": "s", "value": "v"}],
     "generalPractitioner": [{"reference": "Organization/o"}], "link": [{"other": {"reference": "Patient/q"}}],
     "meta": {"tag": [{"code": "t"}], "profile": ["http://p"], "source": "http://src"}},
    {"resourceType": "Observation", "id": "o", "status": "final", "code": {"coding": [{"code": "c"}], "text": "T"},
     "subject": {"reference": "Patient/p"}, "valueCodeableConcept": {"coding": [{"code": "v"}]},
     "effectivePeriod": {"start": "2020"}, "component": [
         {"code": {"coding": [{"code": "k"}]}, "valueQuantity": {"value": 3, "code": "mg"}},
         {"code": {"coding": [{"code": "k2"}]}, "valueCodeableConcept": {"text": "x"}}],
     "performer": [{"reference": "Practitioner/d"}], "basedOn": [{"reference": "ServiceRequest/s"}]},
    {"resourceType": "Condition", "id": "c", "onsetAge": {"value": 40, "code": "a"}, "abatementString": "gone",
     "subject": {"reference": "Patient/p"}, "code": {"coding": [{"system": "x", "code": "y"}]},
     "category": [{"text": "problem"}], "recordedDate": "2021-03-04"},
    {"resourceType": "Goal", "id": "g", "startDate": "2020-01-01", "target": [{"dueDate": "2021-01-01"}],
     "subject": {"reference": "Patient/p"}, "lifecycleStatus": "active"},
    {"resourceType": "MedicationRequest", "id": "m", "status": "active", "intent": "order",
     "medicationCodeableConcept": {"coding": [{"code": "med"}]}, "subject": {"reference": "Patient/p"},
     "authoredOn": "2020-05-05", "requester": {"reference": "Practitioner/d"}},
    {"resourceType": "Composition", "id": "k", "status": "final", "type": {"text": "t"}, "date": "2020",
     "relatesTo": [{"code": "replaces", "targetIdentifier": {"value": "old"}},
                   {"code": "appends", "targetReference": {"reference": "Composition/z"}}],
     "subject": {"reference": "Patient/p"}, "author": [{"reference": "Practitioner/d"}], "title": "x"},
]


def _norm(values):
    return sorted(orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in values)


def _cases():
    for res in SAMPLES:
        rtype = res["resourceType"]
        for sp in REGISTRY.params_for(rtype):
            if sp.type == "composite" or any(f in sp.expression for f in ("resolve()", "extension(")):
                continue
            yield pytest.param(res, sp.expression, id=f"{rtype}-{sp.code}")


@pytest.mark.parametrize(("resource", "expression"), list(_cases()))
def test_matches_fhirpathpy(resource, expression):
    fn = compile_for_type(expression, resource["resourceType"])
    assert fn is not None
    mine = fn(resource)
    # fhirpathpy is stricter than servers: "as" wants a singleton (use ofType, which filters
    # collections) and "Resource." does not match a concrete type.
    oracle_expr = re.sub(r"\((\S+) as (\w+)\)", r"\1.ofType(\2)", expression)
    oracle_expr = oracle_expr.replace("Resource.", resource["resourceType"] + ".")
    oracle = evaluate(resource, oracle_expr, {}, models["r4"])
    assert _norm(mine) == _norm(oracle)


def test_resolve_is_decided_from_the_reference_text():
    fn = compile_for_type("Observation.subject.where(resolve() is Patient) | Observation.performer", "Observation")
    obs = {"resourceType": "Observation", "subject": {"reference": "http://x/fhir/Patient/1/_history/2"},
           "performer": [{"reference": "Practitioner/2"}]}
    assert fn(obs) == [obs["subject"], obs["performer"][0]]
    obs["subject"] = {"reference": "Group/1"}
    assert fn(obs) == [obs["performer"][0]]


def test_extension_and_branch_pruning():
    expr = "Patient.extension('http://e') | Practitioner.name"
    pat = {"resourceType": "Patient", "extension": [{"url": "http://e", "valueString": "x"}, {"url": "http://f"}]}
    assert compile_for_type(expr, "Patient")(pat) == [{"url": "http://e", "valueString": "x"}]
    assert compile_for_type("Practitioner.name", "Patient") is None


def test_unsupported_syntax_is_reported():
    with pytest.raises(FhirPathError):
        compile_for_type("Patient.name.aggregate($this)", "Patient")
    with pytest.raises(FhirPathError):
        parse("Patient.name[")
