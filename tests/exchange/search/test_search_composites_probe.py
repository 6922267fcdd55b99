"""Every composite parameter the engine serves matches (R4 search.html#composite), on both
databases, through HTTP.

``test_search_registry_cli.py`` checks that every advertised parameter runs; this file
checks that every advertised *composite* finds the resource it should, and not a near
miss whose values sit in different repeats of the element (the components of one
composite value come from the same ``component`` / ``relatesTo`` entry). A composite the
server starts advertising without a case here fails ``test_every_served_composite_has_a_case``.
"""

from __future__ import annotations

import pytest

from exchange.search.registry import REGISTRY, get_param, supported_params
from exchange.validation import SERVED_TYPES

FHIR = {"content-type": "application/fhir+json"}
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"


def _cc(system: str, code: str) -> dict:
    return {"coding": [{"system": system, "code": code}]}


def _qty(value: float, unit: str = "mmol/L") -> dict:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _obs(oid: str, code: str, **extra) -> dict:  # noqa: ANN003
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": _cc(LOINC, code), **extra}


def _doc(did: str, relates: list[tuple[str, str]]) -> dict:
    doc = {"resourceType": "DocumentReference", "id": did, "status": "current",
           "content": [{"attachment": {"contentType": "text/plain", "url": "http://example.org/doc.txt"}}]}
    if relates:
        doc["relatesTo"] = [{"code": code, "target": {"reference": target}} for code, target in relates]
    return doc


RESOURCES = [
    _obs("cv-concept", "11111-1", valueCodeableConcept=_cc(SCT, "10828004")),
    _obs("cv-concept-miss", "11111-1", valueCodeableConcept=_cc(SCT, "260385009")),
    _obs("cv-date", "22222-2", valueDateTime="2024-05-01T10:00:00Z"),
    _obs("cv-date-miss", "22222-2", valueDateTime="2021-05-01T10:00:00Z"),
    _obs("cv-qty", "33333-3", valueQuantity=_qty(7.2)),
    _obs("cv-qty-miss", "33333-4", valueQuantity=_qty(7.2)),
    _obs("cv-str", "44444-4", valueString="positive"),
    _obs("cv-str-miss", "44444-4", valueString="negative"),
    # components: code A with value 1 and code B with value 2 in one resource; A$2 must not match
    _obs("comp", "55555-5", component=[
        {"code": _cc(LOINC, "8480-6"), "valueQuantity": _qty(120, "mm[Hg]")},
        {"code": _cc(LOINC, "8462-4"), "valueQuantity": _qty(80, "mm[Hg]")},
        {"code": _cc(LOINC, "9999-1"), "valueCodeableConcept": _cc(SCT, "373066001")},
        {"code": _cc(LOINC, "9999-2"), "valueCodeableConcept": _cc(SCT, "373067005")},
    ]),
    _doc("doc-new", [("replaces", "DocumentReference/doc-old"), ("appends", "DocumentReference/doc-other")]),
    _doc("doc-old", []),
    _doc("doc-other", []),
]

#: (type, parameter) -> [(query value, expected ids)], near misses included
CASES: dict[tuple[str, str], list[tuple[str, set[str]]]] = {
    ("Observation", "code-value-concept"): [
        (f"{LOINC}|11111-1${SCT}|10828004", {"cv-concept"}),
        (f"{LOINC}|11111-1${SCT}|999", set()),
    ],
    ("Observation", "code-value-date"): [
        (f"{LOINC}|22222-2$ge2024-01-01", {"cv-date"}),
        (f"{LOINC}|22222-2$2021-05-01", {"cv-date-miss"}),
        (f"{LOINC}|11111-1$ge2000-01-01", set()),
    ],
    ("Observation", "code-value-quantity"): [
        (f"{LOINC}|33333-3$7.2|{UCUM}|mmol/L", {"cv-qty"}),
        (f"{LOINC}|33333-3$gt8", set()),
    ],
    ("Observation", "code-value-string"): [
        (f"{LOINC}|44444-4$pos", {"cv-str"}),
        (f"{LOINC}|44444-4$nothing", set()),
    ],
    ("Observation", "combo-code-value-concept"): [
        (f"{LOINC}|11111-1${SCT}|10828004", {"cv-concept"}),  # the resource's own code and value
        (f"{LOINC}|9999-1${SCT}|373066001", {"comp"}),  # a component's code and value
        (f"{LOINC}|9999-1${SCT}|373067005", set()),  # code of one component, value of another
    ],
    ("Observation", "combo-code-value-quantity"): [
        (f"{LOINC}|33333-3$7.2", {"cv-qty"}),
        (f"{LOINC}|8480-6$120", {"comp"}),
        (f"{LOINC}|8480-6$80", set()),
    ],
    ("Observation", "component-code-value-concept"): [
        (f"{LOINC}|9999-2${SCT}|373067005", {"comp"}),
        (f"{LOINC}|9999-2${SCT}|373066001", set()),
        (f"{LOINC}|11111-1${SCT}|10828004", set()),  # the resource's own code is no component
    ],
    ("Observation", "component-code-value-quantity"): [
        (f"{LOINC}|8462-4$lt90", {"comp"}),
        (f"{LOINC}|8462-4$120", set()),
    ],
    ("DocumentReference", "relationship"): [
        ("DocumentReference/doc-old$replaces", {"doc-new"}),
        ("DocumentReference/doc-other$replaces", set()),  # target of one relatesTo, code of another
        ("DocumentReference/doc-old$appends", set()),  # the other way round
        ("DocumentReference/doc-other$appends", {"doc-new"}),
        ("DocumentReference/doc-old$transforms", set()),
    ],
}

@pytest.fixture(scope="module")
def record(client):  # noqa: ANN001, ANN201
    for res in RESOURCES:
        r = client.put(f"/fhir/{res['resourceType']}/{res['id']}", json=res, headers=FHIR)
        assert r.status_code in (200, 201), r.text


def _served_composites() -> set[tuple[str, str]]:
    return {(t, p["name"]) for t in SERVED_TYPES for p in supported_params(t) if p["type"] == "composite"}


def _ids(client, rtype: str, name: str, value: str) -> set[str]:  # noqa: ANN001
    r = client.get(f"/fhir/{rtype}", params={name: value, "_count": "100"})
    assert r.status_code == 200, (name, value, r.text)
    return {e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"}


def test_every_served_composite_has_a_case():
    assert _served_composites() == set(CASES)


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[0]}-{k[1]}")
def test_composite_matches_and_rejects_near_misses(client, record, key):
    rtype, name = key
    for value, expected in CASES[key]:
        assert _ids(client, rtype, name, value) == expected, (name, value)


def test_documentreference_relationship_pairs_components_as_r4b():
    """The published R4 DocumentReference-relationship pairs its components crosswise
    (relatesto with ``code``, relation with ``target``) so nothing could match; the registry
    serves the R4B/R5 pairing: value ``relatesto$relation`` read from the same relatesTo."""
    sp = get_param("DocumentReference", "relationship")
    assert sp is not None
    assert [(url.rsplit("/", 1)[1], expr) for url, expr in sp.component_defs] == [
        ("DocumentReference-relatesto", "target"), ("DocumentReference-relation", "code")]
    assert [c.type for c in REGISTRY.components_for(sp, "DocumentReference")] == ["reference", "token"]
