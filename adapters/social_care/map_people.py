"""workers, allocations, alerts, contacts -> Practitioner(Role), CareTeam, Flag, RelatedPerson.

FHIR R4 practitioner.html, practitionerrole.html, careteam.html, flag.html,
relatedperson.html. Field by field: docs/adapters/social-care.md.

* A worker is a Practitioner and a PractitionerRole at the council (role, team phone
  and e-mail); an allocation is a CareTeam (the allocated worker and their team).
* An alert is a Flag. CONFIDENTIAL=Y adds meta.security confidentiality ``R`` and the
  ``social-care`` compartment label: the consent layer shows it outside social care
  only by policy or break-glass.
* A contact is a RelatedPerson. A lasting power of attorney for health and welfare is
  a care preference: the RelatedPerson gets the v3 RoleCode ``HPOWATT`` and a Flag coded
  816361000000101 (exchange/operations/eol_codes.yaml, kind ``lpa``) points to it with
  the flag-detail extension. A property and financial LPA is recorded on the
  RelatedPerson with a local code only: it is not a care preference.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from adapters.base import MappingContext, MappingError
from adapters.csvkit.fields import SNOMED, yes_no
from adapters.social_care import terms
from adapters.social_care.map_services import patient_ref, period_of

LPA_HEALTH_WELFARE = "816361000000101"
LPA_DISPLAY = (
    "Has appointed person with personal welfare lasting power of attorney "
    "(Mental Capacity Act 2005)"
)
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
# ALERT_TYPE (lower case) -> (flag-category code, SNOMED CT code or None, display)
ALERT_TYPES: dict[str, tuple[str, str | None, str | None]] = {
    "risk to staff": ("safety", None, None),
    "safeguarding": ("safety", None, None),
    "key safe": ("admin", None, None),
    "lives alone": ("behavioral", "105529008", "Lives alone"),
}


def map_worker(row: dict[str, str], ctx: MappingContext) -> list[dict[str, Any]]:
    wid = row["WORKER_ID"]
    identifier = [{"system": terms.local_system(ctx.source_system, "worker-id"), "value": wid}]
    practitioner: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": wid,
        "meta": terms.meta(),
        "identifier": identifier,
        "active": True,
    }
    if row.get("NAME"):
        parts = row["NAME"].split()
        name: dict[str, Any] = {"text": row["NAME"], "family": parts[-1]}
        if len(parts) > 1:
            name["given"] = parts[:-1]
        practitioner["name"] = [name]
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": wid,
        "meta": terms.meta(),
        "identifier": identifier,
        "active": True,
        "practitioner": {"reference": f"Practitioner/{wid}"},
        "organization": terms.org_ref(ctx.source_system, terms.COUNCIL_NAME),
    }
    if row.get("ROLE"):
        role["code"] = [
            {
                "coding": [
                    {
                        "system": terms.code_system(ctx.source_system, "worker-role"),
                        "code": terms.slug(row["ROLE"]),
                        "display": row["ROLE"],
                    }
                ],
                "text": row["ROLE"],
            }
        ]
    if row.get("TEAM"):
        role["specialty"] = [{"text": row["TEAM"]}]
    telecom = []
    if row.get("PHONE"):
        telecom.append({"system": "phone", "value": row["PHONE"], "use": "work"})
    if row.get("TEAM_EMAIL"):
        telecom.append({"system": "email", "value": row["TEAM_EMAIL"], "use": "work"})
    if telecom:
        role["telecom"] = telecom
    return [practitioner, role]


def map_allocation(row: dict[str, str], ctx: MappingContext) -> list[dict[str, Any]]:
    alid = row["ALLOCATION_ID"]
    if not row.get("WORKER_ID"):
        raise MappingError("WORKER_ID is empty: an allocation names a worker", "WORKER_ID")
    worker = row.get("_worker") or {}
    period = period_of(row, "START_DATE", "END_DATE")
    ended = bool(period.get("end")) and period["end"] <= date.today().isoformat()
    member: dict[str, Any] = {"reference": f"Practitioner/{row['WORKER_ID']}"}
    if worker.get("NAME"):
        member["display"] = worker["NAME"]
    participant: dict[str, Any] = {
        "role": [{"text": "Allocated worker"}],
        "member": member,
        "onBehalfOf": terms.org_ref(ctx.source_system, terms.COUNCIL_NAME),
    }
    if period:
        participant["period"] = period
    team: dict[str, Any] = {
        "resourceType": "CareTeam",
        "id": alid,
        "meta": terms.meta(),
        "identifier": [
            {"system": terms.local_system(ctx.source_system, "allocation-id"), "value": alid}
        ],
        "status": "inactive" if ended else "active",
        "category": [
            {"coding": [{"system": terms.RECORD_CATEGORY, "code": "social-care", "display": "Social care"}]}
        ],
        "name": worker.get("TEAM") or terms.COUNCIL_NAME,
        "subject": patient_ref(row),
        "participant": [participant],
        "managingOrganization": [terms.org_ref(ctx.source_system, terms.COUNCIL_NAME)],
    }
    if period:
        team["period"] = period
    if worker.get("TEAM_EMAIL"):
        team["telecom"] = [{"system": "email", "value": worker["TEAM_EMAIL"], "use": "work"}]
    if not worker:
        ctx.warnings.append(f"WORKER_ID {row['WORKER_ID']!r} is not in workers.csv")
    return [team]


def map_alert(row: dict[str, str], ctx: MappingContext) -> list[dict[str, Any]]:
    atid = row["ALERT_ID"]
    kind = row.get("ALERT_TYPE", "")
    if not kind:
        raise MappingError("ALERT_TYPE is empty", "ALERT_TYPE")
    confidential = bool(yes_no(row.get("CONFIDENTIAL", ""), "CONFIDENTIAL"))
    category, snomed, display = ALERT_TYPES.get(kind.lower(), ("admin", None, None))
    coding = [
        {
            "system": terms.code_system(ctx.source_system, "alert-type"),
            "code": terms.slug(kind),
            "display": kind,
        }
    ]
    if snomed:
        coding.insert(0, {"system": SNOMED, "code": snomed, "display": display})
    text = f"{kind}: {row['DETAIL']}" if row.get("DETAIL") else kind
    period = period_of(row, "START_DATE", "END_DATE")
    ended = bool(period.get("end")) and period["end"] <= date.today().isoformat()
    flag: dict[str, Any] = {
        "resourceType": "Flag",
        "id": atid,
        "meta": terms.meta(confidential=confidential),
        "identifier": [{"system": terms.local_system(ctx.source_system, "alert-id"), "value": atid}],
        "status": "inactive" if ended else "active",
        "category": [{"coding": [{"system": terms.FLAG_CATEGORY, "code": category}]}],
        "code": {"coding": coding, "text": text},
        "subject": patient_ref(row),
        "author": terms.org_ref(ctx.source_system, terms.COUNCIL_NAME),
    }
    if period:
        flag["period"] = period
    return [flag]


def _relationship(row: dict[str, str], ctx: MappingContext) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    words = row.get("RELATIONSHIP", "")
    if words:
        known = terms.RELATIONSHIPS.get(words.lower())
        concept: dict[str, Any] = {"text": words}
        if known:
            concept["coding"] = [{"system": terms.ROLE_CODE, "code": known[0], "display": known[1]}]
        else:
            ctx.warnings.append(f"RELATIONSHIP {words!r} has no v3 RoleCode; kept as text")
        out.append(concept)
    if yes_no(row.get("IS_CARER", ""), "IS_CARER"):
        out.append({"coding": [{"system": SNOMED, "code": "133932002", "display": "Caregiver"}], "text": "Carer"})
    return out


def map_contact(row: dict[str, str], ctx: MappingContext) -> list[dict[str, Any]]:
    cid = row["CONTACT_ID"]
    lpa = row.get("LPA_TYPE", "").strip().lower()
    if lpa not in {"", "health and welfare", "property and financial"}:
        raise MappingError(f"LPA_TYPE {row['LPA_TYPE']!r} is not a lasting power of attorney type", "LPA_TYPE")
    relationship = _relationship(row, ctx)
    if lpa == "health and welfare":
        relationship.append(
            {
                "coding": [{"system": terms.ROLE_CODE, "code": "HPOWATT", "display": "healthcare power of attorney"}],
                "text": "Lasting power of attorney (health and welfare)",
            }
        )
    elif lpa == "property and financial":
        relationship.append(
            {
                "coding": [
                    {
                        "system": terms.code_system(ctx.source_system, "lpa-type"),
                        "code": "property-and-financial",
                        "display": "Lasting power of attorney (property and financial affairs)",
                    }
                ],
                "text": "Lasting power of attorney (property and financial affairs)",
            }
        )
    person: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "id": cid,
        "meta": terms.meta(care_preference=lpa == "health and welfare"),
        "identifier": [{"system": terms.local_system(ctx.source_system, "contact-id"), "value": cid}],
        "active": True,
        "patient": patient_ref(row),
    }
    if relationship:
        person["relationship"] = relationship
    if row.get("NAME"):
        parts = row["NAME"].split()
        name: dict[str, Any] = {"text": row["NAME"], "family": parts[-1]}
        if len(parts) > 1:
            name["given"] = parts[:-1]
        person["name"] = [name]
    if row.get("PHONE"):
        person["telecom"] = [{"system": "phone", "value": row["PHONE"]}]
    out = [person]
    if lpa == "health and welfare":
        who = ", ".join(v for v in (row.get("NAME"), row.get("PHONE")) if v)
        out.append(
            {
                "resourceType": "Flag",
                "id": f"{cid}-lpa",
                "meta": terms.meta(care_preference=True),
                "identifier": [
                    {"system": terms.local_system(ctx.source_system, "contact-id"), "value": f"{cid}-lpa"}
                ],
                "extension": [{"url": FLAG_DETAIL, "valueReference": {"reference": f"RelatedPerson/{cid}"}}],
                "status": "active",
                "category": [{"coding": [{"system": terms.FLAG_CATEGORY, "code": "advance-directive"}]}],
                "code": {
                    "coding": [{"system": SNOMED, "code": LPA_HEALTH_WELFARE, "display": LPA_DISPLAY}],
                    "text": f"Lasting power of attorney for health and welfare: {who}" if who else LPA_DISPLAY,
                },
                "subject": patient_ref(row),
                "author": terms.org_ref(ctx.source_system, terms.COUNCIL_NAME),
            }
        )
    return out

