"""Resource builders for the care-preference tests (plain FHIR R4 dicts)."""

from __future__ import annotations

from typing import Any

SCT = "http://snomed.info/sct"
SRC = "https://exchange.example.nhs.uk/fhir/CodeSystem/source-system"
KIND = "https://exchange.example.nhs.uk/fhir/CodeSystem/care-preference-kind"


def meta(source: str) -> dict[str, Any]:
    return {"tag": [{"system": SRC, "code": source, "display": source}]}


def flag(fid: str, code: str, *, source: str = "GP", status: str = "active", start: str | None = "2025-03-01",
         end: str | None = None, author: str | None = "Dr Patel", author_ref: str | None = None,
         patient: str = "p1", text: str | None = None, ext: list | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Flag", "id": fid, "meta": meta(source), "status": status,
        "code": {"coding": [{"system": SCT, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
    }
    if text:
        res["code"]["text"] = text
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        res["period"] = period
    if author or author_ref:
        res["author"] = {k: v for k, v in (("display", author), ("reference", author_ref)) if v}
    if ext:
        res["extension"] = ext
    return res


def observation(oid: str, code: str | None, *, system: str = SCT, source: str = "GP", status: str = "final",
                value: Any = None, when: str = "2025-01-10", patient: str = "p1",
                code_text: str | None = None, performer: str | None = "Dr Patel") -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "meta": meta(source), "status": status,
        "code": {"coding": [{"system": system, "code": code}]} if code else {"text": code_text or ""},
        "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when,
    }
    if code_text and code:
        res["code"]["text"] = code_text
    if performer:
        res["performer"] = [{"display": performer}]
    if isinstance(value, dict):
        res["valueCodeableConcept"] = value
    elif value is not None:
        res["valueString"] = value
    return res


def dnr_consent(cid: str, *, source: str = "Hospital", status: str = "active", when: str = "2025-05-02",
                patient: str = "p1", category: str = "dnr") -> dict[str, Any]:
    return {
        "resourceType": "Consent", "id": cid, "meta": meta(source), "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "adr"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentcategorycodes",
                                  "code": category}]}],
        "patient": {"reference": f"Patient/{patient}"}, "dateTime": when,
        "performer": [{"display": "Dr Jones"}], "organization": [{"display": "City Hospital NHS Trust"}],
        "sourceAttachment": {"title": "Signed form in the red folder"},
        "provision": {"type": "deny"},
    }


def attorney(rid: str, *, patient: str = "p1", source: str = "GP", active: bool = True) -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson", "id": rid, "meta": meta(source), "active": active,
        "patient": {"reference": f"Patient/{patient}"},
        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                                      "code": "HPOWATT", "display": "healthcare power of attorney"}]}],
        "name": [{"given": ["Ann"], "family": "Smith"}],
        "telecom": [{"system": "phone", "value": "07700 900123"}],
    }
