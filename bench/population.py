"""A synthetic population loaded through the real write path (validation, security
labels, search indexing, versioning) as transaction Bundles.

Each ordinary patient has a realistic mix (encounters, conditions, observations,
medications, a care plan, flags, social care and community records); one patient in
``complex_every`` is complex, with ``complex_size`` resources (mostly observations), so
the long tail of the record is represented. Ids are deterministic, so reloading is a
no-op.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
PRACTICES = ("N82001", "N82002", "N82003", "N82004", "N82005")
FAMILIES = ("Whitfield", "Nolan", "OHare", "Dubois", "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson",
            "Evans", "Thomas", "Roberts", "Walker", "Wright", "Hughes", "Green", "Hall", "Wood", "Clarke")
GIVEN = ("Joan", "Peter", "Dennis", "Renee", "Mary", "John", "Susan", "David", "Linda", "James")
OBS = (("8867-4", "Heart rate", "/min", 60, 100), ("8480-6", "Systolic blood pressure", "mm[Hg]", 100, 160),
       ("8462-4", "Diastolic blood pressure", "mm[Hg]", 60, 95), ("29463-7", "Body weight", "kg", 45, 110),
       ("2339-0", "Glucose", "mmol/L", 4, 11))
CONDITIONS = (("44054006", "Diabetes mellitus type 2"), ("38341003", "Hypertensive disorder"),
              ("195967001", "Asthma"), ("13645005", "Chronic obstructive lung disease"),
              ("84114007", "Heart failure"))


def nhs_number(i: int) -> str:
    """A valid Modulus 11 test-range NHS number (999 prefix), unique per ``i`` < 500,000.

    The nine-digit base is 999 followed by 2i (or 2i+1 when 2i has no valid check digit:
    changing the last base digit by one changes the weighted sum by 2, so at most one of
    the pair is invalid).
    """
    for base_n in (2 * i, 2 * i + 1):
        base = f"999{base_n:06d}"
        total = sum(int(d) * w for d, w in zip(base, range(10, 1, -1), strict=True))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check != 10:
            return base + str(check)
    raise AssertionError("unreachable: one of two neighbours always has a check digit")


def patient_id(i: int) -> str:
    return f"bp{i}"


def _ref(rtype: str, rid: str) -> dict[str, str]:
    return {"reference": f"{rtype}/{rid}"}


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def organisations() -> dict[str, Any]:
    entries = [
        _put({"resourceType": "Organization", "id": f"org-{code}", "identifier": [{"system": ODS, "value": code}],
              "name": f"Practice {code}"}) for code in PRACTICES
    ]
    entries.append(_put({"resourceType": "Organization", "id": "org-REM", "identifier": [{"system": ODS, "value": "REM"}],
                         "name": "Liverpool University Hospitals NHS Foundation Trust"}))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def patient_bundle(i: int, *, size: int | None = None, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed * 1_000_003 + i)
    pid = patient_id(i)
    practice = PRACTICES[i % len(PRACTICES)]
    today = date(2026, 11, 30)
    res: list[dict[str, Any]] = [{
        "resourceType": "Patient", "id": pid,
        "identifier": [{"system": NHS, "value": nhs_number(i)}],
        "name": [{"family": FAMILIES[i % len(FAMILIES)] + ("" if i < len(FAMILIES) else str(i % 997)),
                  "given": [GIVEN[i % len(GIVEN)]]}],
        "gender": "female" if i % 2 else "male",
        "birthDate": (date(1930, 1, 1) + timedelta(days=rng.randrange(0, 30000))).isoformat(),
        "address": [{"line": [f"{i % 300} Breck Road"], "city": "Liverpool", "postalCode": f"L{i % 30} 6PX"}],
        "generalPractitioner": [_ref("Organization", f"org-{practice}")],
    }]
    subj = _ref("Patient", pid)
    n_enc = 3
    for e in range(n_enc):
        start = today - timedelta(days=rng.randrange(1, 700))
        res.append({"resourceType": "Encounter", "id": f"{pid}-enc{e}", "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                    "subject": subj, "serviceProvider": _ref("Organization", "org-REM" if e == 0 else f"org-{practice}"),
                    "period": {"start": start.isoformat(), "end": (start + timedelta(days=1)).isoformat()}})
    for c in range(3):
        code, display = CONDITIONS[(i + c) % len(CONDITIONS)]
        res.append({"resourceType": "Condition", "id": f"{pid}-cond{c}", "subject": subj,
                    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                    "code": {"coding": [{"system": SCT, "code": code, "display": display}]},
                    "recordedDate": (today - timedelta(days=rng.randrange(1, 3000))).isoformat()})
    for m in range(2):
        res.append({"resourceType": "MedicationStatement", "id": f"{pid}-med{m}", "status": "active", "subject": subj,
                    "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": f"3{m}2{i % 9}7011000001100",
                                                              "display": "Metformin 500mg tablets" if m == 0 else "Ramipril 5mg capsules"}]}})
    res.append({"resourceType": "AllergyIntolerance", "id": f"{pid}-alg", "patient": subj,
                "code": {"coding": [{"system": SCT, "code": "91936005", "display": "Allergy to penicillin"}]}})
    res.append({"resourceType": "CarePlan", "id": f"{pid}-cp", "status": "active", "intent": "plan", "subject": subj,
                "title": "Community nursing plan"})
    res.append({"resourceType": "EpisodeOfCare", "id": f"{pid}-eoc", "status": "active", "patient": subj,
                "managingOrganization": _ref("Organization", f"org-{practice}"),
                "type": [{"text": "Adult social care: home care"}]})
    if i % 5 == 0:
        res.append({"resourceType": "Flag", "id": f"{pid}-dnacpr", "status": "active", "subject": subj,
                    "code": {"coding": [{"system": SCT, "code": "450476008", "display": "Not for cardiopulmonary resuscitation"}]},
                    "period": {"start": (today - timedelta(days=60)).isoformat(), "end": (today + timedelta(days=120)).isoformat()}})
    target = size if size is not None else 23
    j = 0
    while len(res) < target:
        code, display, unit, lo, hi = OBS[j % len(OBS)]
        when = today - timedelta(days=rng.randrange(0, 1500), minutes=rng.randrange(0, 1440))
        res.append({"resourceType": "Observation", "id": f"{pid}-obs{j}", "status": "final", "subject": subj,
                    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                    "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
                    "effectiveDateTime": when.isoformat(),
                    "valueQuantity": {"value": round(rng.uniform(lo, hi), 1), "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})
        j += 1
    return {"resourceType": "Bundle", "type": "transaction", "entry": [_put(r) for r in res]}


def population(n: int, *, complex_every: int = 200, complex_size: int = 500, huge: int = 1, huge_size: int = 2000) -> Iterator[tuple[int, dict[str, Any]]]:
    """(patient index, transaction Bundle) for ``n`` patients; patient 0..huge-1 are huge."""
    for i in range(n):
        if i < huge:
            size = huge_size
        elif complex_every and i % complex_every == 1:
            size = complex_size
        else:
            size = None
        yield i, patient_bundle(i, size=size)
