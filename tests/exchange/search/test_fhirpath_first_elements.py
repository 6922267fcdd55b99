"""Which top-level elements a search parameter's expression starts from
(``fhirpath.first_elements``), used by the indexer to skip parameters that cannot
select anything from a resource. The claim is checked for every parameter of every
served type: with none of those elements present the expression selects nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from exchange.search import indexer
from exchange.search.fhirpath import compile_for_type, element_names, first_elements
from exchange.search.registry import REGISTRY, SERVED_TYPES

ROOT = Path(__file__).resolve().parents[3]


def test_element_names_of_choice_keys() -> None:
    assert element_names("code") == ("code",)
    assert element_names("effectivePeriod") == ("effectivePeriod", "effective")
    # both readings of a key that ends in two type names (_child matches either)
    assert set(element_names("valueDateTime")) == {"valueDateTime", "value", "valueDate"}
    assert element_names("resourceType") == ("resourceType",)


@pytest.mark.parametrize(("text", "rtype", "expected"), [
    ("Observation.code", "Observation", {"code"}),
    ("Observation.code | Observation.component.code", "Observation", {"code", "component"}),
    ("(Observation.value as Quantity) | (Observation.value as SampledData)", "Observation", {"value"}),
    ("Observation.subject.where(resolve() is Patient)", "Observation", {"subject"}),
    ("Condition.code | Observation.code", "Condition", {"code"}),
    ("Resource.meta.tag", "Patient", {"meta"}),
    ("Patient.extension('http://x').value", "Patient", {"extension"}),
    ("Patient.name[0].family", "Patient", {"name"}),
    ("Patient.name.first()", "Patient", {"name"}),
])
def test_first_elements_of_paths(text: str, rtype: str, expected: set[str]) -> None:
    assert first_elements(text, rtype) == frozenset(expected)


@pytest.mark.parametrize(("text", "rtype"), [
    ("Patient.deceased.exists() and Patient.deceased != false", "Patient"),  # a value from nothing
    ("Patient.active.empty()", "Patient"),
    ("Patient.active.not()", "Patient"),
    ("Patient.hasExtension('http://x')", "Patient"),
    ("Observation | Observation.component", "Observation"),  # the resource itself
    ("'x'", "Patient"),
    ("Patient.name.exists()", "Patient"),
])
def test_expressions_that_select_from_nothing_are_never_skipped(text: str, rtype: str) -> None:
    assert first_elements(text, rtype) is None


def _samples() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((ROOT / "adapters" / "gp_connect" / "samples").glob("*.json")):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        out.extend(e["resource"] for e in bundle.get("entry") or [] if isinstance(e.get("resource"), dict))
    from bench.population import patient_bundle

    out.extend(e["resource"] for e in patient_bundle(5, size=30)["entry"])
    out.append({"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "c"},
                "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2026-01-01", "valueBoolean": True,
                "dataAbsentReason": {"text": "x"}, "hasMember": [{"reference": "Observation/m"}],
                "component": [{"code": {"text": "k"}, "valueQuantity": {"value": 1}}],
                "meta": {"tag": [{"code": "t"}], "security": [{"code": "R"}], "profile": ["http://p"]},
                "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/observation-geneticsGene",
                               "valueCodeableConcept": {"text": "g"}}]})
    out.append({"resourceType": "Patient", "id": "p", "active": False, "deceasedBoolean": False,
                "name": [{"family": "F"}], "telecom": [{"system": "phone", "value": "1"}],
                "communication": [{"language": {"text": "en"}}],
                "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
                               "valueString": "M"}]})
    return [r for r in out if r["resourceType"] in SERVED_TYPES]


def test_without_its_first_elements_no_parameter_selects_anything() -> None:
    checked = 0
    for res in _samples():
        rtype = res["resourceType"]
        for sp in REGISTRY.params_for(rtype):
            fn = sp.fn_for(rtype)
            if fn is None or not sp.expression:
                continue
            needs = first_elements(sp.expression, rtype)
            if needs is None:
                continue
            stripped = {k: v for k, v in res.items() if needs.isdisjoint(element_names(k))}
            assert fn(stripped) == [], (rtype, sp.code, sp.expression)
            checked += 1
    assert checked > 500


def test_the_indexer_skips_without_changing_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows with the skipping equal rows with every parameter evaluated."""
    samples = _samples()
    fast = [indexer.extract(r["resourceType"], r) for r in samples]
    monkeypatch.setattr(indexer, "_needs", lambda expression, resource_type: None)
    monkeypatch.setattr(indexer, "_plans", {})
    full = [indexer.extract(r["resourceType"], r) for r in samples]
    assert any(rows for by_type in full for rows in by_type.values())
    assert fast == full


def test_compile_for_type_and_first_elements_agree_on_branches() -> None:
    text = "Condition.code | Observation.code | Observation.component.code"
    assert first_elements(text, "Condition") == frozenset({"code"})
    fn = compile_for_type(text, "Condition")
    assert fn is not None and fn({"resourceType": "Condition", "component": [{"code": {"text": "x"}}]}) == []
