"""eol_register.csv (the EPaCCS palliative care register) -> care preference resources.

FHIR R4 flag.html, careplan.html, observation.html, relatedperson.html; codes as in
exchange/operations/eol_codes.yaml. One register row can yield (local keys in
brackets, RECORD_ID = R):

* register status: Flag 526631000000108 On end of life care register [R-register]
* CPR decision: Flag 450476008 (DNACPR) / 450475007 (For CPR), period start = decision
  date, end = review date, author = the decided-by text as a Practitioner display [R-cpr]
* ReSPECT form held: CarePlan category 1382601000000107 with the care priority scale
  (1 = sustain life ... 10 = comfort) as an extension and an activity [R-respect]
* ADRT held: Flag 816301000000100, the detail in code.text [R-adrt]
* LPA for health and welfare: RelatedPerson (HPOWATT) + Flag 816361000000101 whose
  flag-detail extension points to the attorney [R-lpa]
* preferred place of care / of death: Observations (care-preference kind
  ``place-of-care``; SNOMED 395091006), value a SNOMED environment where known [R-ppc, R-ppd]

STATUS Active -> Flag active / CarePlan active / Observation final. Cancelled and
Superseded -> Flag inactive / CarePlan revoked / Observation cancelled, and the
``register-entry-status`` extension says which (the decision was revoked, not recorded
in error, so not entered-in-error). Field by field: docs/adapters/community.md.
"""

from __future__ import annotations

from typing import Any

from adapters.base import MappingContext, MappingError
from adapters.community import terms
from adapters.csvkit.fields import SNOMED, iso_date, local_datetime, yes_no

CPR = {"dnacpr": terms.NOT_FOR_CPR, "for cpr": terms.FOR_CPR}


def _status_ext(status: str) -> list[dict[str, Any]]:
    return [
        {
            "url": terms.REGISTER_STATUS_URL,
            "valueCoding": {
                "system": terms.REGISTER_STATUS_SYSTEM,
                "code": status,
                "display": status.capitalize(),
            },
        }
    ]


def _coded(code: tuple[str, str], text: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [{"system": SNOMED, "code": code[0], "display": code[1]}]}
    if text:
        concept["text"] = text
    return concept


def _place(text: str) -> dict[str, Any]:
    known = terms.PLACES.get(text.lower())
    concept: dict[str, Any] = {"text": text}
    if known:
        concept["coding"] = [{"system": SNOMED, "code": known[0], "display": known[1]}]
    return concept


def map_register(row: dict[str, str], ctx: MappingContext) -> list[dict[str, Any]]:
    rid = row["RECORD_ID"]
    status = row.get("STATUS", "").lower()
    if status not in terms.REGISTER_STATUS:
        raise MappingError(f"STATUS {row.get('STATUS')!r} is not Active, Cancelled or Superseded", "STATUS")
    flag_status, plan_status, obs_status = terms.REGISTER_STATUS[status]
    if not row.get("PATIENT_ID"):
        raise MappingError("PATIENT_ID is empty: the record names nobody", "PATIENT_ID")
    patient = {"reference": f"Patient/{row['PATIENT_ID']}"}
    on_register = iso_date(row.get("ON_REGISTER_DATE", ""), "ON_REGISTER_DATE")
    decided = iso_date(row.get("CPR_DECISION_DATE", ""), "CPR_DECISION_DATE")
    review = iso_date(row.get("CPR_REVIEW_DATE", ""), "CPR_REVIEW_DATE")
    if decided and review and review < decided:
        raise MappingError("CPR_REVIEW_DATE is before CPR_DECISION_DATE", "CPR_REVIEW_DATE")
    updated = local_datetime(row.get("LAST_UPDATED", ""), "LAST_UPDATED", ctx.warnings)
    respect = yes_no(row.get("RESPECT_FORM", ""), "RESPECT_FORM")
    lpa = yes_no(row.get("LPA_HEALTH_WELFARE", ""), "LPA_HEALTH_WELFARE")
    adrt = yes_no(row.get("ADRT", ""), "ADRT")
    priority_cell = row.get("RESPECT_CARE_PRIORITY", "")
    priority = None
    if priority_cell:
        if not priority_cell.isdigit() or not 1 <= int(priority_cell) <= 10:
            raise MappingError(
                f"RESPECT_CARE_PRIORITY {priority_cell!r} is not 1 to 10", "RESPECT_CARE_PRIORITY"
            )
        priority = int(priority_cell)
    author = None
    if row.get("CPR_DECIDED_BY"):
        author = {"type": "Practitioner", "display": row["CPR_DECIDED_BY"]}
    ident_system = terms.local_system(ctx.source_system, "eol-record-id")
    extra = _status_ext(status) if status != "active" else []

    def base(rtype: str, suffix: str, care_preference: bool = True) -> dict[str, Any]:
        res: dict[str, Any] = {
            "resourceType": rtype,
            "id": f"{rid}-{suffix}",
            "meta": terms.meta(care_preference=care_preference),
            "identifier": [{"system": ident_system, "value": f"{rid}-{suffix}"}],
        }
        if extra:
            res["extension"] = [dict(e) for e in extra]
        return res

    out: list[dict[str, Any]] = []
    register = base("Flag", "register")
    register.update(
        status=flag_status,
        category=[{"coding": [{"system": terms.FLAG_CATEGORY, "code": "clinical"}]}],
        code=_coded(terms.EOL_REGISTER),
        subject=patient,
        author=terms.org_ref(ctx.source_system, terms.TRUST_NAME),
    )
    if on_register:
        register["period"] = {"start": on_register}
    out.append(register)

    cpr_cell = row.get("CPR_DECISION", "").lower()
    if cpr_cell:
        if cpr_cell not in CPR:
            raise MappingError(f"CPR_DECISION {row['CPR_DECISION']!r} is not DNACPR or For CPR", "CPR_DECISION")
        if not decided:
            ctx.warnings.append("CPR_DECISION without a CPR_DECISION_DATE")
        flag = base("Flag", "cpr")
        flag.update(
            status=flag_status,
            category=[{"coding": [{"system": terms.FLAG_CATEGORY, "code": "advance-directive"}]}],
            code=_coded(CPR[cpr_cell], row["CPR_DECISION"]),
            subject=patient,
        )
        period = {k: v for k, v in (("start", decided), ("end", review)) if v}
        if period:
            flag["period"] = period
        if author:
            flag["author"] = author
        out.append(flag)
    elif decided or review or row.get("CPR_DECIDED_BY"):
        ctx.warnings.append("CPR decision date, review date or author given without a CPR_DECISION")

    if respect:
        plan = base("CarePlan", "respect")
        plan.update(
            status=plan_status,
            intent="plan",
            category=[_coded(terms.RESPECT_FORM, "ReSPECT")],
            title="ReSPECT recommendations",
            subject=patient,
        )
        start = decided or on_register
        if start:
            plan["period"] = {"start": start}
        if updated:
            plan["created"] = updated
        if author:
            plan["author"] = author
        if priority is not None:
            plan.setdefault("extension", []).append(
                {"url": terms.RESPECT_PRIORITY_URL, "valueInteger": priority}
            )
            plan["activity"] = [
                {
                    "detail": {
                        "status": "not-started" if plan_status == "active" else "cancelled",
                        "description": (
                            f"ReSPECT care priority {priority} on a scale of 1 (prioritise "
                            "sustaining life) to 10 (prioritise comfort)"
                        ),
                    }
                }
            ]
        out.append(plan)
    elif priority is not None:
        ctx.warnings.append("RESPECT_CARE_PRIORITY given but RESPECT_FORM is not Y; priority not loaded")

    if adrt:
        flag = base("Flag", "adrt")
        detail = row.get("ADRT_DETAIL", "")
        flag.update(
            status=flag_status,
            category=[{"coding": [{"system": terms.FLAG_CATEGORY, "code": "advance-directive"}]}],
            code=_coded(terms.ADRT, f"Advance decision to refuse treatment: {detail}" if detail else None),
            subject=patient,
        )
        if on_register:
            flag["period"] = {"start": on_register}
        out.append(flag)
    elif row.get("ADRT_DETAIL"):
        ctx.warnings.append("ADRT_DETAIL given but ADRT is not Y; detail not loaded")

    if lpa:
        out.extend(_lpa(row, base, patient, flag_status))
    elif row.get("LPA_NAME") or row.get("LPA_PHONE"):
        ctx.warnings.append("LPA_NAME/LPA_PHONE given but LPA_HEALTH_WELFARE is not Y; not loaded")

    for column, suffix, code in (
        ("PREFERRED_PLACE_OF_CARE", "ppc", None),
        ("PREFERRED_PLACE_OF_DEATH", "ppd", terms.PLACE_OF_DEATH),
    ):
        if not row.get(column):
            continue
        obs = base("Observation", suffix)
        if code:
            concept = _coded(code, "Preferred place of death")
        else:
            concept = {
                "coding": [{"system": terms.KIND, "code": "place-of-care", "display": "Preferred place of care"}],
                "text": "Preferred place of care",
            }
        obs.update(status=obs_status, code=concept, subject=patient, valueCodeableConcept=_place(row[column]))
        when = decided or on_register
        if when:
            obs["effectiveDateTime"] = when
        if updated:
            obs["issued"] = updated
        out.append(obs)
    return out


def _lpa(row: dict[str, str], base: Any, patient: dict[str, str], flag_status: str) -> list[dict[str, Any]]:
    rid = row["RECORD_ID"]
    person = base("RelatedPerson", "lpa")
    person.update(
        active=flag_status == "active",
        patient=patient,
        relationship=[
            {
                "coding": [{"system": terms.ROLE_CODE, "code": "HPOWATT", "display": "healthcare power of attorney"}],
                "text": "Lasting power of attorney (health and welfare)",
            }
        ],
    )
    if row.get("LPA_NAME"):
        parts = row["LPA_NAME"].split()
        name: dict[str, Any] = {"text": row["LPA_NAME"], "family": parts[-1]}
        if len(parts) > 1:
            name["given"] = parts[:-1]
        person["name"] = [name]
    if row.get("LPA_PHONE"):
        person["telecom"] = [{"system": "phone", "value": row["LPA_PHONE"]}]
    person.pop("extension", None)
    flag = base("Flag", "lpa")
    who = ", ".join(v for v in (row.get("LPA_NAME"), row.get("LPA_PHONE")) if v)
    flag.setdefault("extension", []).append(
        {"url": terms.FLAG_DETAIL, "valueReference": {"reference": f"RelatedPerson/{rid}-lpa"}}
    )
    flag.update(
        status=flag_status,
        category=[{"coding": [{"system": terms.FLAG_CATEGORY, "code": "advance-directive"}]}],
        code=_coded(terms.LPA, f"Lasting power of attorney for health and welfare: {who}" if who else None),
        subject=patient,
    )
    return [person, flag]
