"""STU3 (CareConnect / GP Connect 1.x) -> R4 conversions, one function per resource type.

Follows the official R3 <-> R4 conversion maps (hl7.org/fhir/R4/<type>-version-maps.html)
for the elements GP Connect Access Record: Structured uses. Elements with no R4 home
are reported through ``warn`` (never dropped silently). References are left as they are
here; the adapter rewrites them afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Warn = Callable[[str], None]
Json = dict[str, Any]

TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"
SYSTEM_RENAMES = {
    "http://hl7.org/fhir/condition-category": TERMINOLOGY + "condition-category",
    "http://hl7.org/fhir/observation-category": TERMINOLOGY + "observation-category",
    "http://hl7.org/fhir/v2/0074": TERMINOLOGY + "v2-0074",
    "http://hl7.org/fhir/v2/0078": TERMINOLOGY + "v3-ObservationInterpretation",
    "http://hl7.org/fhir/data-absent-reason": TERMINOLOGY + "data-absent-reason",
    "http://hl7.org/fhir/medication-statement-category":
        TERMINOLOGY + "medication-statement-category",
    "http://hl7.org/fhir/medication-request-category":
        TERMINOLOGY + "medicationrequest-category",
    "http://hl7.org/fhir/list-empty-reason": TERMINOLOGY + "list-empty-reason",
    "http://hl7.org/fhir/v3/ActCode": TERMINOLOGY + "v3-ActCode",
}
SNOMED = "http://snomed.info/sct"
DMD = "https://dmd.nhs.uk"
COMMON = ("id", "identifier", "extension", "modifierExtension", "text", "language")


def _cc(system: str, code: str) -> Json:
    return {"coding": [{"system": TERMINOLOGY + system, "code": code}]}


def _copy(src: Json, *names: str) -> Json:
    return {k: src[k] for k in (*COMMON, *names) if k in src}


def _rename_systems(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _rename_systems(v) for k, v in node.items()}
        if isinstance(out.get("system"), str) and out["system"] in SYSTEM_RENAMES:
            out["system"] = SYSTEM_RENAMES[out["system"]]
        return out
    if isinstance(node, list):
        return [_rename_systems(v) for v in node]
    return node


def _drop(src: Json, warn: Warn, *names: str) -> None:
    for name in names:
        if name in src:
            warn(f"{src['resourceType']}.{name} has no R4 equivalent; not mapped")


def _encounter_ref(ref: Json | None, warn: Warn, element: str) -> Json | None:
    if not ref:
        return None
    if str(ref.get("reference", "")).startswith("Encounter/"):
        return ref
    warn(f"{element} refers to something other than an Encounter; not mapped")
    return None


def dosage(d: Json) -> Json:
    """STU3 Dosage dose[x] / rate[x] -> R4 Dosage.doseAndRate."""
    out = {k: v for k, v in d.items() if not k.startswith(("dose", "rate"))}
    dr: Json = {}
    for k, v in d.items():
        if k.startswith(("dose", "rate")):
            dr[k] = v
    if dr:
        out["doseAndRate"] = [dr]
    return out


def dmd_codings(concept: Json | None) -> Json | None:
    """Add a dm+d coding beside each SNOMED code from the UK drug extension (1000001)."""
    if not concept:
        return concept
    codings = list(concept.get("coding") or [])
    for c in list(codings):
        code = str(c.get("code", ""))
        if c.get("system") == SNOMED and len(code) > 10 and code[-10:-3] == "1000001":
            extra = {"system": DMD, "code": code, **({"display": c["display"]} if "display" in c else {})}
            if extra not in codings:
                codings.append(extra)
    return {**concept, "coding": codings}


def patient(src: Json, warn: Warn) -> Json:
    out = _copy(src, "active", "name", "telecom", "gender", "birthDate", "deceasedBoolean",
                "deceasedDateTime", "address", "maritalStatus", "multipleBirthBoolean",
                "multipleBirthInteger", "photo", "contact", "communication",
                "generalPractitioner", "managingOrganization", "link")
    _drop(src, warn, "animal")
    out["resourceType"] = "Patient"
    return out


def organization(src: Json, warn: Warn) -> Json:
    out = _copy(src, "active", "type", "name", "alias", "telecom", "address", "partOf",
                "contact", "endpoint")
    out["resourceType"] = "Organization"
    return out


def practitioner(src: Json, warn: Warn) -> Json:
    out = _copy(src, "active", "name", "telecom", "address", "gender", "birthDate", "photo",
                "qualification", "communication")
    out["resourceType"] = "Practitioner"
    return out


def practitioner_role(src: Json, warn: Warn) -> Json:
    out = _copy(src, "active", "period", "practitioner", "organization", "code", "specialty",
                "location", "healthcareService", "telecom", "availableTime", "notAvailable",
                "availabilityExceptions", "endpoint")
    out["resourceType"] = "PractitionerRole"
    return out


def allergy(src: Json, warn: Warn) -> Json:
    out = _copy(src, "type", "category", "criticality", "code", "patient", "onsetDateTime",
                "onsetAge", "onsetPeriod", "onsetRange", "onsetString", "recorder", "asserter",
                "lastOccurrence", "note", "reaction")
    out["resourceType"] = "AllergyIntolerance"
    verification = src.get("verificationStatus")
    if verification:
        out["verificationStatus"] = _cc("allergyintolerance-verification", verification)
    clinical = src.get("clinicalStatus")
    if clinical and verification != "entered-in-error":
        out["clinicalStatus"] = _cc("allergyintolerance-clinical", clinical)
    if "assertedDate" in src:
        out["recordedDate"] = src["assertedDate"]
    return out


def condition(src: Json, warn: Warn) -> Json:
    out = _copy(src, "severity", "code", "bodySite", "subject", "onsetDateTime", "onsetAge",
                "onsetPeriod", "onsetRange", "onsetString", "abatementDateTime", "abatementAge",
                "abatementPeriod", "abatementRange", "abatementString", "asserter", "stage",
                "evidence", "note", "category")
    out["resourceType"] = "Condition"
    verification = src.get("verificationStatus")
    if verification and verification != "unknown":
        out["verificationStatus"] = _cc("condition-ver-status", verification)
    if src.get("clinicalStatus") and verification != "entered-in-error":
        out["clinicalStatus"] = _cc("condition-clinical", src["clinicalStatus"])
    if "assertedDate" in src:
        out["recordedDate"] = src["assertedDate"]
    if "abatementBoolean" in src:
        warn("Condition.abatementBoolean has no R4 equivalent (clinicalStatus carries it)")
    enc = _encounter_ref(src.get("context"), warn, "Condition.context")
    if enc:
        out["encounter"] = enc
    return out


def medication(src: Json, warn: Warn) -> Json:
    out = _copy(src, "manufacturer", "form")
    out["resourceType"] = "Medication"
    if "code" in src:
        out["code"] = dmd_codings(src["code"])
    if "status" in src:
        out["status"] = src["status"]
    ingredients = []
    for ing in src.get("ingredient") or []:
        new = {k: v for k, v in ing.items() if k in ("itemCodeableConcept", "itemReference",
                                                     "isActive", "extension")}
        if "amount" in ing:
            new["strength"] = ing["amount"]
        ingredients.append(new)
    if ingredients:
        out["ingredient"] = ingredients
    _drop(src, warn, "isBrand", "isOverTheCounter", "package", "image")
    return out


def medication_statement(src: Json, warn: Warn) -> Json:
    out = _copy(src, "basedOn", "partOf", "status", "category", "medicationCodeableConcept",
                "medicationReference", "effectiveDateTime", "effectivePeriod", "dateAsserted",
                "informationSource", "subject", "derivedFrom", "reasonCode", "reasonReference",
                "note", "context")
    out["resourceType"] = "MedicationStatement"
    if "medicationCodeableConcept" in out:
        out["medicationCodeableConcept"] = dmd_codings(out["medicationCodeableConcept"])
    if src.get("taken") == "n":
        out["status"] = "not-taken"  # R4 folds STU3 taken=n into the status
    if "reasonNotTaken" in src:
        out["statusReason"] = src["reasonNotTaken"]
    out["dosage"] = [dosage(d) for d in src.get("dosage") or []] or None
    if out["dosage"] is None:
        del out["dosage"]
    return out


def medication_request(src: Json, warn: Warn, practice_ref: str | None) -> Json:
    out = _copy(src, "basedOn", "groupIdentifier", "status", "intent", "priority",
                "medicationCodeableConcept", "medicationReference", "subject",
                "supportingInformation", "authoredOn", "recorder", "reasonCode",
                "reasonReference", "note", "dispenseRequest", "priorPrescription",
                "detectedIssue", "eventHistory")
    out["resourceType"] = "MedicationRequest"
    if "medicationCodeableConcept" in out:
        out["medicationCodeableConcept"] = dmd_codings(out["medicationCodeableConcept"])
    if "category" in src:
        out["category"] = [src["category"]]
    requester = src.get("requester") or {}
    if requester.get("agent"):
        out["requester"] = requester["agent"]
    behalf = (requester.get("onBehalfOf") or {}).get("reference")
    if behalf and behalf != practice_ref:
        warn(f"MedicationRequest.requester.onBehalfOf {behalf} has no R4 equivalent")
    enc = _encounter_ref(src.get("context"), warn, "MedicationRequest.context")
    if enc:
        out["encounter"] = enc
    if src.get("dosageInstruction"):
        out["dosageInstruction"] = [dosage(d) for d in src["dosageInstruction"]]
    sub = src.get("substitution")
    if sub and "allowed" in sub:
        out["substitution"] = {"allowedBoolean": sub["allowed"],
                               **({"reason": sub["reason"]} if "reason" in sub else {})}
    _drop(src, warn, "definition")
    return out


def immunization(src: Json, warn: Warn) -> Json:
    out = _copy(src, "vaccineCode", "patient", "encounter", "primarySource", "reportOrigin",
                "location", "manufacturer", "lotNumber", "expirationDate", "site", "route",
                "doseQuantity", "note", "reaction")
    out["resourceType"] = "Immunization"
    status = src.get("status", "completed")
    out["status"] = "not-done" if src.get("notGiven") and status != "entered-in-error" else status
    if "date" in src:
        out["occurrenceDateTime"] = src["date"]
    else:
        out["occurrenceString"] = "date not recorded"
        warn("Immunization.date is absent; occurrence recorded as 'date not recorded'")
    explanation = src.get("explanation") or {}
    if explanation.get("reason"):
        out["reasonCode"] = explanation["reason"]
    if explanation.get("reasonNotGiven"):
        out["statusReason"] = explanation["reasonNotGiven"][0]
    performers = [{"actor": p["actor"], **({"function": p["role"]} if "role" in p else {})}
                  for p in src.get("practitioner") or [] if p.get("actor")]
    if performers:
        out["performer"] = performers
    protocols = []
    for p in src.get("vaccinationProtocol") or []:
        new: Json = {}
        if "series" in p:
            new["series"] = p["series"]
        if "authority" in p:
            new["authority"] = p["authority"]
        if "targetDisease" in p:
            new["targetDisease"] = p["targetDisease"]
        if "doseSequence" in p:
            new["doseNumberPositiveInt"] = p["doseSequence"]
        else:
            new["doseNumberString"] = "unknown"
        if "seriesDoses" in p:
            new["seriesDosesPositiveInt"] = p["seriesDoses"]
        protocols.append(new)
    if protocols:
        out["protocolApplied"] = protocols
    return out


def encounter(src: Json, warn: Warn, practice: Json | None) -> Json:
    out = _copy(src, "status", "statusHistory", "classHistory", "type", "priority", "subject",
                "episodeOfCare", "participant", "period", "length", "account",
                "hospitalization", "location", "serviceProvider", "partOf")
    out["resourceType"] = "Encounter"
    # R4 makes class mandatory; a GP consultation without one is ambulatory care
    out["class"] = src.get("class") or {"system": TERMINOLOGY + "v3-ActCode", "code": "AMB",
                                        "display": "ambulatory"}
    if src.get("incomingReferral"):
        out["basedOn"] = src["incomingReferral"]
    if src.get("appointment"):
        out["appointment"] = [src["appointment"]]
    if src.get("reason"):
        out["reasonCode"] = src["reason"]
    if src.get("diagnosis"):
        out["diagnosis"] = [{**{k: v for k, v in d.items() if k != "role"},
                             **({"use": d["role"]} if "role" in d else {})}
                            for d in src["diagnosis"]]
    if "serviceProvider" not in out and practice:
        out["serviceProvider"] = practice
    return out


def observation(src: Json, warn: Warn) -> Json:
    out = _copy(src, "basedOn", "status", "category", "code", "subject", "effectiveDateTime",
                "effectivePeriod", "issued", "performer", "valueQuantity",
                "valueCodeableConcept", "valueString", "valueBoolean", "valueRange",
                "valueRatio", "valueSampledData", "valueTime", "valueDateTime", "valuePeriod",
                "dataAbsentReason", "bodySite", "method", "specimen", "device",
                "referenceRange", "component")
    out["resourceType"] = "Observation"
    if src.get("interpretation"):
        out["interpretation"] = [src["interpretation"]]
    if src.get("comment"):
        out["note"] = [{"text": src["comment"]}]
    enc = _encounter_ref(src.get("context"), warn, "Observation.context")
    if enc:
        out["encounter"] = enc
    for comp in out.get("component") or []:
        if "interpretation" in comp and isinstance(comp["interpretation"], dict):
            comp["interpretation"] = [comp["interpretation"]]
    for rel in src.get("related") or []:
        kind = rel.get("type", "has-member")
        if kind == "has-member":
            out.setdefault("hasMember", []).append(rel["target"])
        elif kind == "derived-from":
            out.setdefault("derivedFrom", []).append(rel["target"])
        else:
            warn(f"Observation.related type {kind} has no R4 equivalent; not mapped")
    _drop(src, warn, "valueAttachment")
    return out


def diagnostic_report(src: Json, warn: Warn) -> Json:
    out = _copy(src, "status", "code", "subject", "effectiveDateTime", "effectivePeriod",
                "issued", "specimen", "result", "imagingStudy", "conclusion", "presentedForm")
    out["resourceType"] = "DiagnosticReport"
    if src.get("category"):
        out["category"] = [src["category"]]
    if src.get("basedOn"):
        out["basedOn"] = src["basedOn"]
    performers = [p["actor"] for p in src.get("performer") or [] if p.get("actor")]
    if performers:
        out["performer"] = performers
    if src.get("codedDiagnosis"):
        out["conclusionCode"] = src["codedDiagnosis"]
    enc = _encounter_ref(src.get("context"), warn, "DiagnosticReport.context")
    if enc:
        out["encounter"] = enc
    _drop(src, warn, "image")
    return out


REFERRAL_STATUS = {"suspended": "on-hold", "cancelled": "revoked"}


def referral(src: Json, warn: Warn) -> Json:
    """STU3 ReferralRequest -> R4 ServiceRequest (category: SNOMED 3457005 Patient referral)."""
    out = _copy(src, "basedOn", "replaces", "requisition", "subject", "occurrenceDateTime",
                "occurrencePeriod", "authoredOn", "reasonCode", "reasonReference",
                "supportingInfo", "note", "relevantHistory", "priority")
    out["resourceType"] = "ServiceRequest"
    if "groupIdentifier" in src:
        out["requisition"] = src["groupIdentifier"]
    out["status"] = REFERRAL_STATUS.get(src.get("status", "unknown"), src.get("status", "unknown"))
    out["intent"] = src.get("intent", "order")
    category = [{"coding": [{"system": SNOMED, "code": "3457005", "display": "Patient referral"}]}]
    if src.get("type"):
        category.append(src["type"])
    out["category"] = category
    services = src.get("serviceRequested") or []
    if services:
        out["code"] = services[0]
        if len(services) > 1:
            out["orderDetail"] = services[1:]
    requester = src.get("requester") or {}
    if requester.get("agent"):
        out["requester"] = requester["agent"]
    if src.get("recipient"):
        out["performer"] = src["recipient"]
    if src.get("specialty"):
        out["performerType"] = src["specialty"]
    enc = _encounter_ref(src.get("context"), warn, "ReferralRequest.context")
    if enc:
        out["encounter"] = enc
    if src.get("description"):
        out.setdefault("note", []).append({"text": src["description"]})
    _drop(src, warn, "definition")
    return out


def list_(src: Json, warn: Warn) -> Json:
    out = _copy(src, "status", "mode", "title", "code", "subject", "encounter", "date",
                "source", "orderedBy", "note", "entry", "emptyReason")
    out["resourceType"] = "List"
    return out


def finish(resource: Json) -> Json:
    """Terminology renames (STU3 -> R4 code system URIs) applied to a converted resource."""
    return _rename_systems(resource)
