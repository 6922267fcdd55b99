"""Codes and systems of the community services adapter (docs/adapters/community.md).

Every SNOMED CT code here was checked against a published artefact (references in
docs/adapters/community.md, "Codes"); end-of-life codes are the canonical ones of
exchange/operations/eol_codes.yaml. Local observation codes (CODE_SYSTEM = LOCAL) keep
the system :data:`LOCAL_OBSERVATION_SYSTEM`; the pipeline translates them through
adapters/conceptmaps/community-observations.json (FHIR R4 conceptmap.html).
"""

from __future__ import annotations

from adapters.social_care.terms import (
    CARE_PREFERENCE_TAG,
    FLAG_CATEGORY,
    KIND,
    LOCAL_BASE,
    RECORD_CATEGORY,
    ROLE_CODE,
    code_system,
    local_system,
    org_ref,
    slug,
)

#: Mersey Care NHS Foundation Trust, which runs the city's community health services.
#: Override with --source-system for another trust.
TRUST_ODS = "RW4"
TRUST_NAME = "Community Health Services NHS Trust"

LOCAL_OBSERVATION_SYSTEM = f"{LOCAL_BASE}/CodeSystem/community/observation-code"
REGISTER_STATUS_URL = f"{LOCAL_BASE}/StructureDefinition/register-entry-status"
REGISTER_STATUS_SYSTEM = f"{LOCAL_BASE}/CodeSystem/register-entry-status"
RESPECT_PRIORITY_URL = f"{LOCAL_BASE}/StructureDefinition/respect-care-priority"
ENCOUNTER_OUTCOME_URL = f"{LOCAL_BASE}/StructureDefinition/encounter-outcome"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"

COMMUNITY_TAG = {"system": RECORD_CATEGORY, "code": "community", "display": "Community health services data"}

# SNOMED CT concepts (code, display)
NOT_FOR_CPR = ("450476008", "Not for attempted cardiopulmonary resuscitation")
FOR_CPR = ("450475007", "For attempted cardiopulmonary resuscitation")
RESPECT_FORM = (
    "1382601000000107",
    "ReSPECT (Recommended Summary Plan for Emergency Care and Treatment) form",
)
ADRT = ("816301000000100", "Has advance decision to refuse treatment (Mental Capacity Act 2005)")
LPA = (
    "816361000000101",
    "Has appointed person with personal welfare lasting power of attorney (Mental Capacity Act 2005)",
)
PLACE_OF_DEATH = ("395091006", "Preferred place of death")
EOL_REGISTER = ("526631000000108", "On end of life care register")
PATIENT_REFERRAL = ("3457005", "Patient referral")
# Places as the register records them -> SNOMED CT environment concepts
PLACES = {
    "home": ("264362003", "Home"),
    "hospice": ("284546000", "Hospice"),
    "hospital": ("22232009", "Hospital"),
    "nursing home": ("42665001", "Nursing home"),
}
# CONTACTS.LOCATION -> Encounter.class (v3 ActCode)
ENCOUNTER_CLASS = {
    "home": ("HH", "home health"),
    "care home": ("HH", "home health"),
    "clinic": ("AMB", "ambulatory"),
}
# eol_register STATUS -> (Flag.status, CarePlan.status, Observation.status)
REGISTER_STATUS = {
    "active": ("active", "active", "final"),
    "cancelled": ("inactive", "revoked", "cancelled"),
    "superseded": ("inactive", "revoked", "cancelled"),
}

__all__ = [
    "CARE_PREFERENCE_TAG", "FLAG_CATEGORY", "KIND", "ROLE_CODE", "code_system",
    "local_system", "org_ref", "slug",
]


def meta(*, care_preference: bool = False) -> dict:
    """meta of a community resource: the community record-category tag (+ care preference)."""
    tags = [dict(COMMUNITY_TAG)]
    if care_preference:
        tags.append(dict(CARE_PREFERENCE_TAG))
    return {"tag": tags}
