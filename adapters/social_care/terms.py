"""Code systems, identifier systems and labels used by the social care adapter.

Documented field by field in docs/adapters/social-care.md. The record-category tag and
the care-preference tag are the ones the consent layer reads
(consent/data/policy.yaml, consent/data/care_preferences.yaml); SNOMED CT codes for
care preferences are those of exchange/operations/eol_codes.yaml. FHIR R4
security-labels.html describes meta.security (confidentiality + compartment).
"""

from __future__ import annotations

from typing import Any

#: the council's adult social care service: a synthetic ODS-style code (local authority
#: codes are 3 characters in ODS; "LA1" is not allocated). Override with --source-system.
COUNCIL_ODS = "LA1"
COUNCIL_NAME = "City Council Adult Social Care"

LOCAL_BASE = "https://exchange.example.nhs.uk"
RECORD_CATEGORY = f"{LOCAL_BASE}/record-category"
COMPARTMENT = f"{LOCAL_BASE}/security-compartment"
KIND = "https://exchange.example.nhs.uk/fhir/CodeSystem/care-preference-kind"  # eol_codes.yaml systems.kind
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
CQC_LOCATION = "https://www.cqc.org.uk/location"

SOCIAL_CARE_TAG = {"system": RECORD_CATEGORY, "code": "social-care", "display": "Social care data"}
CARE_PREFERENCE_TAG = {
    "system": RECORD_CATEGORY,
    "code": "care-preference",
    "display": "Care preference",
}
RESTRICTED = {"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}
SOCIAL_CARE_COMPARTMENT = {
    "system": COMPARTMENT,
    "code": "social-care",
    "display": "Social care compartment: shared outside social care only by policy or break-glass",
}


def local_system(source_system: str, kind: str) -> str:
    """The identifier / code system of one kind of local id or code of a source system."""
    return f"{LOCAL_BASE}/Id/{source_system}/{kind}"


def code_system(source_system: str, kind: str) -> str:
    """A local CodeSystem URI of a source system (codes that have no standard code)."""
    return f"{LOCAL_BASE}/CodeSystem/{source_system}/{kind}"


def org_ref(ods: str, display: str | None = None) -> dict[str, Any]:
    """A logical reference to an organisation by its ODS code."""
    ref: dict[str, Any] = {
        "type": "Organization",
        "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods},
    }
    if display:
        ref["display"] = display
    return ref


def meta(*, confidential: bool = False, care_preference: bool = False) -> dict[str, Any]:
    """meta for a social care resource: always the social-care tag, labels when needed."""
    tags = [dict(SOCIAL_CARE_TAG)]
    if care_preference:
        tags.append(dict(CARE_PREFERENCE_TAG))
    out: dict[str, Any] = {"tag": tags}
    if confidential:
        out["security"] = [dict(RESTRICTED), dict(SOCIAL_CARE_COMPARTMENT)]
    return out


def slug(text: str) -> str:
    """A local code from free text: lower case, words joined by hyphens."""
    out = []
    for ch in text.lower():
        out.append(ch if ch.isalnum() else "-")
    return "-".join(p for p in "".join(out).split("-") if p)


# Relationship words as the council records them -> HL7 v3 RoleCode (personal relationship).
RELATIONSHIPS = {
    "wife": ("WIFE", "wife"),
    "husband": ("HUSB", "husband"),
    "spouse": ("SPS", "spouse"),
    "partner": ("SIGOTHR", "significant other"),
    "civil partner": ("DOMPART", "domestic partner"),
    "daughter": ("DAUC", "daughter"),
    "son": ("SONC", "son"),
    "mother": ("MTH", "mother"),
    "father": ("FTH", "father"),
    "sister": ("SIS", "sister"),
    "brother": ("BRO", "brother"),
    "niece": ("NIECE", "niece"),
    "nephew": ("NEPHEW", "nephew"),
    "granddaughter": ("GRNDDAU", "granddaughter"),
    "grandson": ("GRNDSON", "grandson"),
    "daughter-in-law": ("DAUINLAW", "daughter in-law"),
    "son-in-law": ("SONINLAW", "son in-law"),
    "friend": ("FRND", "unrelated friend"),
    "neighbour": ("NBOR", "neighbor"),
}
