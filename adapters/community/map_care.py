"""patients, referrals, contacts, activities, observations -> FHIR R4 resources.

FHIR R4 patient.html, servicerequest.html, episodeofcare.html, encounter.html,
procedure.html, observation.html. Field by field: docs/adapters/community.md.

* Patient.generalPractitioner names the registered practice by ODS identifier (the GP
  relationship the consent layer uses).
* A referral is a ServiceRequest (what was asked of which service, by whom) and the
  EpisodeOfCare the service runs for it (open / discharged).
* A contact is an Encounter whose serviceProvider is the community trust (the care
  relationship); local times become dateTimes with the Europe/London offset.
* An activity is a Procedure coded in SNOMED CT (the code's Verhoeff check digit is
  verified); an observation keeps SNOMED codes as given and LOCAL codes under the
  local system for the pipeline's ConceptMap translation.
"""

from __future__ import annotations

from typing import Any

from adapters.base import MappingContext, MappingError
from adapters.community import terms
from adapters.csvkit.fields import (
    ODS_SYSTEM,
    SNOMED,
    decimal_value,
    fhir_number,
    iso_date,
    local_datetime,
    snomed_id_is_valid,
    yes_no,
)
from adapters.social_care.map_person import nhs_identifier

GENDER = {"M": "male", "F": "female", "U": "unknown"}


def _name_case(text: str) -> str:
    """WHITFIELD -> Whitfield, O'HARE -> O'Hare, SMITH-JONES -> Smith-Jones."""
    out, upper_next = [], True
    for ch in text.lower():
        out.append(ch.upper() if upper_next else ch)
        upper_next = not ch.isalpha()
    return "".join(out)


def _patient_ref(row: dict[str, str]) -> dict[str, str]:
    if not row.get("PATIENT_ID"):
        raise MappingError("PATIENT_ID is empty: the record names nobody", "PATIENT_ID")
    return {"reference": f"Patient/{row['PATIENT_ID']}"}


def _trust(ctx: MappingContext) -> dict[str, Any]:
    return terms.org_ref(ctx.source_system, terms.TRUST_NAME)


def map_patient(row: dict[str, str], ctx: MappingContext) -> list[dict[str, Any]]:
    pid = row["PATIENT_ID"]
    identifiers = nhs_identifier(row.get("NHS_NUMBER", ""), "NHS_NUMBER", ctx)
    identifiers.append({"system": terms.local_system(ctx.source_system, "patient-id"), "value": pid})
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "meta": terms.meta(),
        "identifier": identifiers,
    }
    name: dict[str, Any] = {"use": "official"}
    if row.get("SURNAME"):
        name["family"] = _name_case(row["SURNAME"])
    if row.get("FORENAMES"):
        name["given"] = row["FORENAMES"].split()
    if len(name) > 1:
        patient["name"] = [name]
    sex = row.get("SEX", "").upper()
    if sex:
        if sex not in GENDER:
            raise MappingError(f"SEX {row['SEX']!r} is not M, F or U", "SEX")
        patient["gender"] = GENDER[sex]
    birth = iso_date(row.get("DOB", ""), "DOB")
    if birth:
        patient["birthDate"] = birth
    if row.get("POSTCODE"):
        patient["address"] = [{"use": "home", "postalCode": row["POSTCODE"].upper()}]
    gp = row.get("GP_PRACTICE_CODE", "").upper()
    if gp:
        patient["generalPractitioner"] = [
            {"type": "Organization", "identifier": {"system": ODS_SYSTEM, "value": gp}}
        ]
    return [patient]


REFERRAL_STATUS = {"open": ("active", "active"), "discharged": ("completed", "finished")}


def map_referral(row: dict[str, str], ctx: MappingContext) -> list[dict[str, Any]]:
    rid = row["REFERRAL_ID"]
    status = row.get("STATUS", "").lower()
    if status not in REFERRAL_STATUS:
        raise MappingError(f"STATUS {row.get('STATUS')!r} is not Open or Discharged", "STATUS")
    sr_status, eoc_status = REFERRAL_STATUS[status]
    priority = row.get("PRIORITY", "").lower()
    if priority and priority not in {"routine", "urgent"}:
        raise MappingError(f"PRIORITY {row['PRIORITY']!r} is not Routine or Urgent", "PRIORITY")
    received = iso_date(row.get("RECEIVED_DATE", ""), "RECEIVED_DATE")
    discharged = iso_date(row.get("DISCHARGED_DATE", ""), "DISCHARGED_DATE")
    if received and discharged and discharged < received:
        raise MappingError("DISCHARGED_DATE is before RECEIVED_DATE", "DISCHARGED_DATE")
    if status == "discharged" and not discharged:
        ctx.warnings.append("STATUS Discharged without a DISCHARGED_DATE")
    service = row.get("SERVICE", "")
    if not service:
        raise MappingError("SERVICE is empty", "SERVICE")
    service_concept = {
        "coding": [
            {
                "system": terms.code_system(ctx.source_system, "service"),
                "code": terms.slug(service),
                "display": service,
            }
        ],
        "text": service,
    }
    patient = _patient_ref(row)
    identifier = [{"system": terms.local_system(ctx.source_system, "referral-id"), "value": rid}]
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": rid,
        "meta": terms.meta(),
        "identifier": identifier,
        "status": sr_status,
        "intent": "order",
        "category": [{"coding": [{"system": SNOMED, "code": terms.PATIENT_REFERRAL[0],
                                  "display": terms.PATIENT_REFERRAL[1]}]}],
        "code": service_concept,
        "subject": patient,
        "performer": [_trust(ctx)],
    }
    if priority:
        request["priority"] = priority
    if received:
        request["authoredOn"] = received
    if row.get("REFERRAL_SOURCE"):
        request["requester"] = {"display": row["REFERRAL_SOURCE"]}
    episode: dict[str, Any] = {
        "resourceType": "EpisodeOfCare",
        "id": rid,
        "meta": terms.meta(),
        "identifier": identifier,
        "status": eoc_status,
        "type": [service_concept],
        "patient": patient,
        "managingOrganization": _trust(ctx),
        "referralRequest": [{"reference": f"ServiceRequest/{rid}"}],
    }
    period = {k: v for k, v in (("start", received), ("end", discharged)) if v}
    if period:
        episode["period"] = period
    return [request, episode]


def map_contact(row: dict[str, str], ctx: MappingContext) -> list[dict[str, Any]]:
    cid = row["CONTACT_ID"]
    when = local_datetime(row.get("CONTACT_DATETIME", ""), "CONTACT_DATETIME", ctx.warnings)
    if not when:
        raise MappingError("CONTACT_DATETIME is empty", "CONTACT_DATETIME")
    attended = yes_no(row.get("ATTENDED", ""), "ATTENDED")
    place = row.get("LOCATION", "")
    cls = terms.ENCOUNTER_CLASS.get(place.lower(), ("HH", "home health"))
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": cid,
        "meta": terms.meta(),
        "identifier": [{"system": terms.local_system(ctx.source_system, "contact-id"), "value": cid}],
        "status": "cancelled" if attended is False else "finished",
        "class": {"system": terms.ACT_CODE, "code": cls[0], "display": cls[1]},
        "subject": _patient_ref(row),
        "period": {"start": when},
        "serviceProvider": _trust(ctx),
    }
    if row.get("REFERRAL_ID"):
        encounter["episodeOfCare"] = [{"reference": f"EpisodeOfCare/{row['REFERRAL_ID']}"}]
        encounter["basedOn"] = [{"reference": f"ServiceRequest/{row['REFERRAL_ID']}"}]
    if row.get("CLINICIAN_NAME"):
        participant: dict[str, Any] = {"individual": {"type": "Practitioner", "display": row["CLINICIAN_NAME"]}}
        if row.get("CLINICIAN_ROLE"):
            participant["type"] = [{"text": row["CLINICIAN_ROLE"]}]
        encounter["participant"] = [participant]
    if place:
        encounter["location"] = [{"location": {"display": place}}]
    if row.get("OUTCOME"):
        encounter["extension"] = [{"url": terms.ENCOUNTER_OUTCOME_URL, "valueString": row["OUTCOME"]}]
    if attended is False:
        encounter.setdefault("extension", []).append(
            {"url": terms.ENCOUNTER_OUTCOME_URL, "valueString": "Did not attend"}
        )
    return [encounter]


def _contact_of(row: dict[str, str]) -> dict[str, str]:
    contact = row.get("_contact")
    if not contact:
        raise MappingError(f"CONTACT_ID {row.get('CONTACT_ID')!r} is not in contacts.csv", "CONTACT_ID")
    return contact


def map_activity(row: dict[str, str], ctx: MappingContext) -> list[dict[str, Any]]:
    aid = row["ACTIVITY_ID"]
    contact = _contact_of(row)
    code = row.get("SNOMED_CODE", "")
    if not snomed_id_is_valid(code):
        raise MappingError(f"SNOMED_CODE {code!r} is not a valid SNOMED CT concept id", "SNOMED_CODE")
    coding: dict[str, str] = {"system": SNOMED, "code": code}
    if row.get("DESCRIPTION"):
        coding["display"] = row["DESCRIPTION"]
    procedure: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": aid,
        "meta": terms.meta(),
        "identifier": [{"system": terms.local_system(ctx.source_system, "activity-id"), "value": aid}],
        "status": "completed",
        "code": {"coding": [coding], "text": row.get("DESCRIPTION") or code},
        "subject": {"reference": f"Patient/{contact['PATIENT_ID']}"},
        "encounter": {"reference": f"Encounter/{row['CONTACT_ID']}"},
    }
    when = local_datetime(contact.get("CONTACT_DATETIME", ""), "CONTACT_DATETIME")
    if when:
        procedure["performedDateTime"] = when
    return [procedure]


def map_observation(row: dict[str, str], ctx: MappingContext) -> list[dict[str, Any]]:
    oid = row["OBSERVATION_ID"]
    contact = _contact_of(row)
    system, code = row.get("CODE_SYSTEM", "").upper(), row.get("CODE", "")
    if not code:
        raise MappingError("CODE is empty", "CODE")
    if system == "SNOMED":
        if not snomed_id_is_valid(code):
            raise MappingError(f"CODE {code!r} is not a valid SNOMED CT concept id", "CODE")
        coding = {"system": SNOMED, "code": code}
    elif system == "LOCAL":
        coding = {"system": terms.LOCAL_OBSERVATION_SYSTEM, "code": code}
    else:
        raise MappingError(f"CODE_SYSTEM {row.get('CODE_SYSTEM')!r} is not SNOMED or LOCAL", "CODE_SYSTEM")
    if row.get("DESCRIPTION"):
        coding["display"] = row["DESCRIPTION"]
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "meta": terms.meta(),
        "identifier": [{"system": terms.local_system(ctx.source_system, "observation-id"), "value": oid}],
        "status": "final",
        "code": {"coding": [coding], "text": row.get("DESCRIPTION") or code},
        "subject": {"reference": f"Patient/{contact['PATIENT_ID']}"},
        "encounter": {"reference": f"Encounter/{row['CONTACT_ID']}"},
        "performer": [_trust(ctx)],
    }
    when = local_datetime(contact.get("CONTACT_DATETIME", ""), "CONTACT_DATETIME")
    if when:
        obs["effectiveDateTime"] = when
    unit = row.get("UNIT", "")
    value = row.get("VALUE", "")
    if unit.lower() == "score":
        obs["category"] = [{"coding": [{"system": terms.OBS_CATEGORY, "code": "survey"}]}]
    try:
        number = decimal_value(value, "VALUE")
    except MappingError:
        number = None
    if number is not None:
        quantity: dict[str, Any] = {"value": fhir_number(number)}
        if unit:
            ucum = terms_unit(unit)
            quantity["unit"] = unit
            if ucum:
                quantity.update({"system": "http://unitsofmeasure.org", "code": ucum})
        obs["valueQuantity"] = quantity
    elif value:
        obs["valueString"] = f"{value} {unit}".strip()
    else:
        obs["dataAbsentReason"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown"}]
        }
    return [obs]


def terms_unit(unit: str) -> str | None:
    """The UCUM code of a unit as the extract writes it (None when not a known UCUM unit)."""
    known = {"score": "{score}", "mmhg": "mm[Hg]", "kg": "kg", "cm": "cm", "%": "%", "/min": "/min"}
    return known.get(unit.lower())
