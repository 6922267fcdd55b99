"""ConceptMap loading and translation (adapters.codemap)."""

from __future__ import annotations

import json

import pytest

from adapters.codemap import ConceptMapIndex

CM = {
    "resourceType": "ConceptMap",
    "url": "urn:test:cm",
    "status": "active",
    "group": [{
        "source": "urn:local", "target": "http://snomed.info/sct",
        "element": [
            {"code": "BP", "target": [{"code": "75367002", "display": "Blood pressure", "equivalence": "equivalent"}]},
            {"code": "NONE", "target": [{"equivalence": "unmatched"}]},
        ],
    }],
}


def test_translate_adds_target_first_keeps_original_reports_unmapped(tmp_path):
    path = tmp_path / "cm.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "entry": [{"resource": CM}]}))
    index = ConceptMapIndex.load([path])
    obs = {"resourceType": "Observation",
           "code": {"coding": [{"system": "urn:local", "code": "BP"}]},
           "component": [{"code": {"coding": [{"system": "urn:local", "code": "NONE"}]}},
                         {"code": {"coding": [{"system": "http://loinc.org", "code": "1-1"}]}}],
           "category": [{"coding": [{"system": "urn:local", "code": "ZZ"}]}]}
    missing = index.translate(obs)
    assert obs["code"]["coding"][0] == {"system": "http://snomed.info/sct", "code": "75367002", "display": "Blood pressure"}
    assert obs["code"]["coding"][1] == {"system": "urn:local", "code": "BP"}
    assert {(m.system, m.code, m.path) for m in missing} == {
        ("urn:local", "NONE", "component[0].code"), ("urn:local", "ZZ", "category[0]")}
    again = index.translate(obs)  # translating twice adds nothing (re-runs stay unchanged)
    assert len(again) == len(missing)
    assert len(obs["code"]["coding"]) == 2


def test_not_a_concept_map_is_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"resourceType": "ValueSet"}))
    with pytest.raises(ValueError, match="not a ConceptMap"):
        ConceptMapIndex.load([path])
