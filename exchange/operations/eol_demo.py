"""Demo data: one patient whose GP, hospital and community records carry care
preferences, with one cross-source conflict (issue 6, "Done means").

:func:`demo_bundle` returns a FHIR R4 ``transaction`` Bundle (http.html#transaction) of
conditional-free PUTs with deterministic ids, so loading it twice changes nothing; post
it through the normal write path (``exchange.interactions.bundle.process_bundle`` or
``POST /fhir``). :func:`demo_examples` returns the commands ``make demo`` prints.

The story: the GP recorded a DNACPR in March (review in a year) with an LPA and an
attorney; the hospital recorded "for CPR" in May (the conflict); community services
hold the ReSPECT plan, the preferred places of care and death, the end of life register
entry and an earlier DNACPR they cancelled; an ADRT at the GP is past its review date.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

SCT = "http://snomed.info/sct"
SOURCE_SYSTEM = "https://exchange.example.nhs.uk/source-system"
KIND = "https://exchange.example.nhs.uk/fhir/CodeSystem/care-preference-kind"
GP, HOSPITAL, COMMUNITY = ("A81001", "GP practice"), ("RXX", "City Hospital"), ("RW4", "Community services")


def _meta(source: tuple[str, str]) -> dict[str, Any]:
    return {"source": f"urn:exchange:source:{source[0]}#demo",
            "tag": [{"system": SOURCE_SYSTEM, "code": source[0], "display": source[1]}]}


def _coded(code: str, display: str, system: str = SCT) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def demo_resources(patient_id: str, *, today: date | None = None) -> list[dict[str, Any]]:
    """The demo patient's care-preference resources (dates relative to ``today``)."""
    today = today or datetime.now(UTC).date()

    def ago(days: int) -> str:
        return (today - timedelta(days=days)).isoformat()

    def ahead(days: int) -> str:
        return (today + timedelta(days=days)).isoformat()

    subject = {"reference": f"Patient/{patient_id}"}
    p = patient_id
    return [
        {"resourceType": "Organization", "id": f"{p}-org-gp", "meta": _meta(GP), "name": "Riverside Medical Practice",
         "identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": GP[0]}]},
        {"resourceType": "Practitioner", "id": f"{p}-dr-patel", "meta": _meta(GP),
         "name": [{"text": "Dr Asha Patel", "family": "Patel", "given": ["Asha"]}]},
        {"resourceType": "PractitionerRole", "id": f"{p}-dr-patel-role", "meta": _meta(GP),
         "practitioner": {"reference": f"Practitioner/{p}-dr-patel", "display": "Dr Asha Patel"},
         "organization": {"reference": f"Organization/{p}-org-gp", "display": "Riverside Medical Practice"}},
        {"resourceType": "Flag", "id": f"{p}-gp-dnacpr", "meta": _meta(GP), "status": "active",
         "code": _coded("450476008", "Not for attempted cardiopulmonary resuscitation"), "subject": subject,
         "period": {"start": ago(80), "end": ahead(285)},
         "author": {"reference": f"PractitionerRole/{p}-dr-patel-role"},
         "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/flag-detail",
                        "valueReference": {"display": "Signed DNACPR form kept in the kitchen drawer at home"}}]},
        {"resourceType": "Flag", "id": f"{p}-h-forcpr", "meta": _meta(HOSPITAL), "status": "active",
         "code": _coded("450475007", "For attempted cardiopulmonary resuscitation"), "subject": subject,
         "period": {"start": ago(20)}, "author": {"display": "Dr Tom Jones, Acute Medicine, City Hospital"}},
        {"resourceType": "Flag", "id": f"{p}-c-dnacpr-old", "meta": _meta(COMMUNITY), "status": "inactive",
         "code": _coded("450476008", "Not for attempted cardiopulmonary resuscitation"), "subject": subject,
         "period": {"start": ago(400)}, "author": {"display": "Nurse Jane Brown"}},
        {"resourceType": "Flag", "id": f"{p}-gp-adrt", "meta": _meta(GP), "status": "active",
         "code": {**_coded("816301000000100", "Has advance decision to refuse treatment (Mental Capacity Act 2005)"),
                  "text": "Refuses mechanical ventilation and artificial nutrition"},
         "subject": subject, "period": {"start": ago(800), "end": ago(70)},
         "author": {"reference": f"Practitioner/{p}-dr-patel"}},
        {"resourceType": "Flag", "id": f"{p}-gp-lpa", "meta": _meta(GP), "status": "active",
         "code": _coded("816361000000101", "Has appointed person with personal welfare lasting power of attorney "
                                           "(Mental Capacity Act 2005)"),
         "subject": subject, "period": {"start": ago(300)}, "author": {"reference": f"Practitioner/{p}-dr-patel"},
         "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/flag-detail",
                        "valueReference": {"reference": f"RelatedPerson/{p}-attorney", "display": "Mary Evans"}}]},
        {"resourceType": "RelatedPerson", "id": f"{p}-attorney", "meta": _meta(GP), "active": True,
         "patient": subject, "name": [{"text": "Mary Evans"}],
         "relationship": [_coded("HPOWATT", "healthcare power of attorney",
                                 "http://terminology.hl7.org/CodeSystem/v3-RoleCode")],
         "telecom": [{"system": "phone", "value": "07700 900456"}],
         "address": [{"text": "12 Mill Lane, Riverside"}]},
        {"resourceType": "CarePlan", "id": f"{p}-c-respect", "meta": _meta(COMMUNITY), "status": "active",
         "intent": "plan", "title": "ReSPECT recommendations", "subject": subject,
         "category": [_coded("1382601000000107", "ReSPECT (Recommended Summary Plan for Emergency Care and "
                                                 "Treatment) form")],
         "period": {"start": ago(60)}, "author": {"display": "Dr Lina Hart, Palliative Care"},
         "activity": [{"detail": {"status": "not-started",
                                  "description": "Care priority 8 of 10: prioritise comfort. Avoid hospital "
                                                 "admission unless symptoms cannot be controlled at home."}}]},
        {"resourceType": "Observation", "id": f"{p}-c-ppc", "meta": _meta(COMMUNITY), "status": "final",
         "code": _coded("place-of-care", "Preferred place of care", KIND), "subject": subject,
         "effectiveDateTime": ago(60), "valueCodeableConcept": _coded("264362003", "Home")},
        {"resourceType": "Observation", "id": f"{p}-c-ppd", "meta": _meta(COMMUNITY), "status": "final",
         "code": _coded("395091006", "Preferred place of death"), "subject": subject,
         "effectiveDateTime": ago(60), "valueCodeableConcept": _coded("264362003", "Home")},
        {"resourceType": "Observation", "id": f"{p}-h-capacity", "meta": _meta(HOSPITAL), "status": "final",
         "code": {**_coded("mental-capacity", "Mental capacity assessment (Mental Capacity Act 2005)", KIND),
                  "text": "Capacity to make decisions about CPR"},
         "subject": subject, "effectiveDateTime": ago(20), "valueString": "Has capacity",
         "performer": [{"display": "Dr Tom Jones"}]},
        {"resourceType": "Flag", "id": f"{p}-c-register", "meta": _meta(COMMUNITY), "status": "active",
         "code": _coded("526631000000108", "On end of life care register"), "subject": subject,
         "period": {"start": ago(90)}, "author": {"display": "Community services"}},
    ]


def demo_bundle(patient_id: str, *, today: date | None = None) -> dict[str, Any]:
    """A transaction Bundle that PUTs :func:`demo_resources` (idempotent)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in demo_resources(patient_id, today=today)
        ],
    }


def demo_examples(base_url: str, patient_id: str) -> list[str]:
    """Commands ``make demo`` prints to show the preferences and the conflict."""
    fhir = base_url.rstrip("/")
    root = fhir.rsplit("/fhir", 1)[0]
    hook = ('{"hook":"patient-view","hookInstance":"demo-1",'
            f'"context":{{"patientId":"{patient_id}"}}}}')
    return [
        f'curl -H "Authorization: Bearer $TOKEN" "{fhir}/Patient/{patient_id}/\\$care-preferences"',
        f"curl {root}/cds-services",
        f"curl -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
        f"-d '{hook}' {root}/cds-services/care-preferences-patient-view",
    ]
