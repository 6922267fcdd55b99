"""Small readers of FHIR R4 datatypes used by the care-preference code (datatypes.html).

CodeableConcept text, Reference (reference, display) and the text of a ``value[x]``.
"""

from __future__ import annotations

from typing import Any


def concept_text(concept: Any) -> str:
    """The human text of a CodeableConcept (text, else first display, else first code)."""
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for c in concept.get("coding") or []:
        if isinstance(c, dict) and (c.get("display") or c.get("code")):
            return str(c.get("display") or c.get("code"))
    return ""


def ref_of(value: Any) -> tuple[str | None, str | None]:
    """(reference, display) of a Reference."""
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, dict):
        return None, None
    ref = value.get("reference")
    return (ref if isinstance(ref, str) else None), value.get("display")


def value_text(obj: dict[str, Any]) -> str:
    """The text of an element's ``value[x]`` (Observation, component, answer)."""
    for key in ("valueCodeableConcept", "valueString", "valueBoolean", "valueInteger",
                "valueDateTime", "valueDate", "valueQuantity", "valueCoding", "valueReference"):
        if key in obj:
            v = obj[key]
            if key == "valueCodeableConcept":
                return concept_text(v)
            if key == "valueCoding":
                return str(v.get("display") or v.get("code") or "")
            if key == "valueQuantity":
                return f"{v.get('value', '')} {v.get('unit', '')}".strip()
            if key == "valueReference":
                return str(v.get("display") or v.get("reference") or "")
            if key == "valueBoolean":
                return "yes" if v else "no"
            return str(v)
    return ""
