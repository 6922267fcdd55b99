"""services.csv and assessments.csv -> EpisodeOfCare, ServiceRequest, Procedure, Observation.

FHIR R4 episodeofcare.html, servicerequest.html, procedure.html, observation.html.
Field by field: docs/adapters/social-care.md.

* A service (care package) is an EpisodeOfCare managed by the council (its status and
  period) plus the ServiceRequest it fulfils (what was commissioned, from which
  provider, how many hours a week).
* An assessment is a Procedure (the assessment activity, its worker and outcome). A
  Mental Capacity Assessment is also an Observation coded with the care-preference
  kind ``mental-capacity`` (exchange/operations/eol_codes.yaml) whose value is the
  outcome, tagged as a care preference.
"""

from __future__ import annotations

from typing import Any

from adapters.base import MappingContext, MappingError
from adapters.csvkit.fields import UCUM, decimal_value, fhir_number, uk_date
from adapters.social_care import terms

# CLD (Client Level Data) service type codes as the export gives them.
CLD_SERVICE_TYPES = {
    "HC": "Home care",
    "RC": "Residential care",
    "NC": "Nursing care",
    "DC": "Day care",
    "DP": "Direct payment",
    "RB": "Reablement",
    "EQ": "Equipment",
}
# STATUS -> (EpisodeOfCare.status, ServiceRequest.status)
SERVICE_STATUS = {
    "active": ("active", "active"),
    "suspended": ("onhold", "on-hold"),
    "ended": ("finished", "completed"),
}
ASSESSMENT_TYPES = {
    "care act assessment",
    "carers assessment",
    "review",
    "mental capacity assessment",
    "safeguarding enquiry",
}


def patient_ref(row: dict[str, str]) -> dict[str, str]:
    if not row.get("PERSON_ID"):
        raise MappingError("PERSON_ID is empty: the record names nobody", "PERSON_ID")
    return {"reference": f"Patient/{row['PERSON_ID']}"}


def period_of(row: dict[str, str], start: str, end: str) -> dict[str, str]:
    period = {}
    s = uk_date(row.get(start, ""), start)
    e = uk_date(row.get(end, ""), end)
    if s:
        period["start"] = s
    if e:
        period["end"] = e
    if s and e and e < s:
        raise MappingError(f"{end} {row[end]!r} is before {start} {row[start]!r}", end)
    return period


def map_service(row: dict[str, str], ctx: MappingContext) -> list[dict[str, Any]]:
    sid = row["SERVICE_ID"]
    status_cell = row.get("STATUS", "")
    if status_cell.lower() not in SERVICE_STATUS:
        raise MappingError(f"STATUS {status_cell!r} is not Active, Suspended or Ended", "STATUS")
    eoc_status, sr_status = SERVICE_STATUS[status_cell.lower()]
    cld = row.get("CLD_SERVICE_TYPE", "").upper()
    coding = []
    if cld:
        if cld not in CLD_SERVICE_TYPES:
            raise MappingError(f"CLD_SERVICE_TYPE {cld!r} is not a CLD service type", "CLD_SERVICE_TYPE")
        coding.append(
            {
                "system": terms.code_system(ctx.source_system, "cld-service-type"),
                "code": cld,
                "display": CLD_SERVICE_TYPES[cld],
            }
        )
    service_type: dict[str, Any] = {"coding": coding} if coding else {}
    if row.get("SERVICE_TYPE"):
        service_type["text"] = row["SERVICE_TYPE"]
    if not service_type:
        raise MappingError("neither SERVICE_TYPE nor CLD_SERVICE_TYPE is recorded", "SERVICE_TYPE")
    period = period_of(row, "START_DATE", "END_DATE")
    patient = patient_ref(row)
    identifier = [{"system": terms.local_system(ctx.source_system, "service-id"), "value": sid}]
    council = terms.org_ref(ctx.source_system, terms.COUNCIL_NAME)

    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": sid,
        "meta": terms.meta(),
        "identifier": identifier,
        "status": sr_status,
        "intent": "order",
        "category": [
            {"coding": [{"system": terms.RECORD_CATEGORY, "code": "social-care", "display": "Social care"}]}
        ],
        "code": service_type,
        "subject": patient,
        "requester": council,
    }
    if period:
        request["occurrencePeriod"] = period
    hours = decimal_value(row.get("PLANNED_HOURS_PER_WEEK", ""), "PLANNED_HOURS_PER_WEEK")
    if hours is not None:
        if hours < 0:
            raise MappingError("PLANNED_HOURS_PER_WEEK is negative", "PLANNED_HOURS_PER_WEEK")
        request["quantityRatio"] = {
            "numerator": {"value": fhir_number(hours), "unit": "h", "system": UCUM, "code": "h"},
            "denominator": {"value": 1, "unit": "wk", "system": UCUM, "code": "wk"},
        }
    if row.get("PROVIDER_NAME") or row.get("PROVIDER_CQC_ID"):
        provider: dict[str, Any] = {"type": "Organization"}
        if row.get("PROVIDER_CQC_ID"):
            provider["identifier"] = {"system": terms.CQC_LOCATION, "value": row["PROVIDER_CQC_ID"]}
        if row.get("PROVIDER_NAME"):
            provider["display"] = row["PROVIDER_NAME"]
        request["performer"] = [provider]

    episode: dict[str, Any] = {
        "resourceType": "EpisodeOfCare",
        "id": sid,
        "meta": terms.meta(),
        "identifier": identifier,
        "status": eoc_status,
        "type": [service_type],
        "patient": patient,
        "managingOrganization": council,
        "referralRequest": [{"reference": f"ServiceRequest/{sid}"}],
    }
    if period:
        episode["period"] = period
    return [request, episode]


def map_assessment(row: dict[str, str], ctx: MappingContext) -> list[dict[str, Any]]:
    aid = row["ASSESSMENT_ID"]
    kind = row.get("ASSESSMENT_TYPE", "")
    if not kind:
        raise MappingError("ASSESSMENT_TYPE is empty", "ASSESSMENT_TYPE")
    if kind.lower() not in ASSESSMENT_TYPES:
        ctx.warnings.append(f"ASSESSMENT_TYPE {kind!r} is not a known type; kept as a local code")
    patient = patient_ref(row)
    period = period_of(row, "START_DATE", "COMPLETED_DATE")
    completed = "end" in period
    code = {
        "coding": [
            {
                "system": terms.code_system(ctx.source_system, "assessment-type"),
                "code": terms.slug(kind),
                "display": kind,
            }
        ],
        "text": kind,
    }
    worker = row.get("WORKER_ID", "")
    performer_ref: dict[str, Any] | None = None
    if worker:
        performer_ref = {"reference": f"Practitioner/{worker}"}
        name = (row.get("_worker") or {}).get("NAME")
        if name:
            performer_ref["display"] = name
    identifier = [{"system": terms.local_system(ctx.source_system, "assessment-id"), "value": aid}]
    procedure: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": aid,
        "meta": terms.meta(),
        "identifier": identifier,
        "status": "completed" if completed else "in-progress",
        "category": {
            "coding": [{"system": terms.RECORD_CATEGORY, "code": "social-care", "display": "Social care"}],
            "text": "Social care assessment",
        },
        "code": code,
        "subject": patient,
    }
    if period:
        procedure["performedPeriod"] = period
    if performer_ref:
        procedure["performer"] = [
            {
                "actor": performer_ref,
                "onBehalfOf": terms.org_ref(ctx.source_system, terms.COUNCIL_NAME),
            }
        ]
    if row.get("OUTCOME"):
        procedure["outcome"] = {"text": row["OUTCOME"]}
    out = [procedure]
    if kind.lower() == "mental capacity assessment":
        out.append(_capacity_observation(row, procedure, performer_ref, ctx))
    return out


def _capacity_observation(
    row: dict[str, str],
    procedure: dict[str, Any],
    performer: dict[str, Any] | None,
    ctx: MappingContext,
) -> dict[str, Any]:
    aid = row["ASSESSMENT_ID"]
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"{aid}-capacity",
        "meta": terms.meta(care_preference=True),
        "identifier": procedure["identifier"],
        "status": "final" if procedure["status"] == "completed" else "registered",
        "category": [procedure["category"]],
        "code": {
            "coding": [
                {
                    "system": terms.KIND,
                    "code": "mental-capacity",
                    "display": "Mental capacity assessment (Mental Capacity Act 2005)",
                },
                procedure["code"]["coding"][0],
            ],
            "text": row["ASSESSMENT_TYPE"],
        },
        "subject": procedure["subject"],
        "partOf": [{"reference": f"Procedure/{aid}"}],
    }
    period = procedure.get("performedPeriod", {})
    if period.get("end"):
        obs["effectiveDateTime"] = period["end"]
    elif period.get("start"):
        obs["effectiveDateTime"] = period["start"]
    if performer:
        obs["performer"] = [performer]
    if row.get("OUTCOME"):
        obs["valueString"] = row["OUTCOME"]
    elif obs["status"] == "final":
        obs["dataAbsentReason"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "code": "unknown",
                }
            ]
        }
    return obs
