"""Which patient a resource is about, from its subject elements (R4 compartmentdefinition-
patient.html: subject / patient / beneficiary / individual, and Appointment participants).

One definition used by the disclosure choke point (patients concerned, for audit), the
write path (patient-confined tokens), the consent facts and the adapters' provenance.
"""

from __future__ import annotations

from typing import Any

PATIENT_FIELDS = ("subject", "patient", "beneficiary", "individual")


def _patient_in(ref: Any) -> str | None:
    r = ref.get("reference") if isinstance(ref, dict) else None
    if isinstance(r, str) and "Patient/" in r:
        return r.split("Patient/", 1)[1].split("/")[0] or None
    return None


def patient_refs(resource: dict[str, Any]) -> list[str]:
    """Every patient id the resource's subject elements name (a Patient names itself)."""
    out = [resource["id"]] if resource.get("resourceType") == "Patient" and resource.get("id") else []
    out.extend(p for key in PATIENT_FIELDS if (p := _patient_in(resource.get(key))))
    if resource.get("resourceType") == "Appointment":
        out.extend(p for part in resource.get("participant") or [] if (p := _patient_in((part or {}).get("actor"))))
    return out


def patient_id_of(resource: dict[str, Any]) -> str | None:
    """The (first) patient the resource is about, or None."""
    refs = patient_refs(resource)
    return refs[0] if refs else None
