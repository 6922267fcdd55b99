"""ADT (patient administration) messages -> Patient, Encounter and clinical extras.

HL7 v2.5.1 Chapter 3 (events A01-A40) and the v2-to-FHIR IG (PV1 -> Encounter).
Every ADT message carries the *current* state of the visit in PV1, so each message
maps to the full Encounter (a PUT), with the status set by the event:

=====  ==================================  =========================================
event  meaning                             Encounter
=====  ==================================  =========================================
A01    admit                               in-progress, period.start PV1-44
A02    transfer                            in-progress, PV1-3 active, PV1-6 completed
A03    discharge                           finished, period.end PV1-45
A04    register (outpatient / ED)          in-progress (arrived if no start)
A05    pre-admit                           planned
A06    outpatient -> inpatient             in-progress, class IMP
A07    inpatient -> outpatient             in-progress, class AMB
A08    update patient information          status from PV1 (finished if PV1-45)
A09    patient departing (tracking)        in-progress
A10    patient arriving (tracking)         in-progress
A11    cancel admit / visit                retracted (entered-in-error)
A12    cancel transfer                     in-progress, back at PV1-3 (PV1-6 dropped)
A13    cancel discharge                    in-progress, period.end removed
A28    add person                          Patient only
A31    update person                       Patient only
A34    merge patient information           Patient + Patient.link (see merges)
A40    merge patient identifier list       Patient + Patient.link (see merges)
=====  ==================================  =========================================

Merges (A34/A40): the surviving person (PID) is mapped and the pipeline is asked to
merge the person named in MRG-1 into it (``ctx.request_merge``); the pipeline links the
shared Patients (FHIR R4 patient.html#links: replaces / replaced-by) and moves
references. A11 asks the pipeline to retract the Encounter (``ctx.retract``), which
makes it entered-in-error; its clinical segments are not applied.

Out of order (``MessageBuilder.visit_state`` False, set by the MLLP inbox for a state
event older than one already applied to the same visit): the Encounter is not mapped
(nor an A11's retraction), everything else is - PID, AL1, DG1, OBX and the CPR Flags,
referring to the same visit - with a warning that the visit state was superseded.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from adapters.base import MappingError
from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.builder import MessageBuilder, safe_key
from adapters.hl7v2.observations import map_obx
from adapters.hl7v2.parser import Field, Segment

PATIENT_ONLY = {"A28", "A31"}
MERGES = {"A34", "A40"}
ENCOUNTER_EVENTS = {"A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A09", "A10",
                    "A11", "A12", "A13"}
SUPPORTED = PATIENT_ONLY | MERGES | ENCOUNTER_EVENTS
MAPPED_SEGMENTS = {"MSH", "EVN", "PID", "PD1", "PV1", "PV2", "OBX", "AL1", "DG1", "MRG", "SFT",
                   "NTE"}

CLASS = {"I": "IMP", "O": "AMB", "E": "EMER", "P": "PRENC", "R": "AMB", "B": "IMP",
         "C": "AMB", "N": "AMB"}
CLASS_DISPLAY = {"IMP": "inpatient encounter", "AMB": "ambulatory", "EMER": "emergency",
                 "PRENC": "pre-admission"}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ALLERGY_CATEGORY = {"DA": "medication", "MA": "medication", "FA": "food",
                    "EA": "environment", "AA": "environment", "PA": "environment",
                    "LA": "environment", "PLA": "environment"}


def map_adt(b: MessageBuilder) -> None:
    event = b.msg.trigger_event
    if event not in SUPPORTED:
        raise MappingError(
            f"ADT^{event} is not supported (supported: {', '.join(sorted(SUPPORTED))})",
            "MSH-9")
    patient = b.patient()
    b.organisation()
    if event in MERGES:
        _merge(b, patient)
    elif event in ENCOUNTER_EVENTS and not b.visit_state:
        if not _superseded_visit(b, event):
            return
    elif event == "A11":
        _cancel_admit(b)
        return
    elif event in ENCOUNTER_EVENTS:
        _encounter(b, event)
    scope = b.encounter_ref["reference"].split("/")[1] if b.encounter_ref else b.patient_key
    last: dict[str, Any] | None = None
    for i, seg in enumerate(b.msg.segments):
        if seg.name == "OBX":
            last = map_obx(b, seg, f"{scope}-{seg.get(3) or i}-{seg.get(14) or i}")
        elif seg.name == "NTE" and last is not None:
            text = "\n".join(f.get(1) for f in seg.repetitions(3) if f.get(1)).strip()
            if text:
                last.setdefault("note", []).append({"text": text})
    for al1 in b.msg.all("AL1"):
        _allergy(b, al1)
    for dg1 in b.msg.all("DG1"):
        _diagnosis(b, dg1)
    skipped = sorted({s.name for s in b.msg.segments} - MAPPED_SEGMENTS)
    if skipped:
        b.warn(f"segments not mapped (no clinical content for the shared record): "
               f"{', '.join(skipped)}")


def _merge(b: MessageBuilder, survivor: dict[str, Any]) -> None:
    mrg = b.msg.first("MRG")
    if mrg is None:
        raise MappingError(f"ADT^{b.msg.trigger_event} without an MRG segment", "MRG")
    merged = b.merged_patient(mrg)
    if merged["id"] == survivor["id"]:
        raise MappingError("MRG-1 names the same patient as PID-3", "MRG-1")
    b.ctx.request_merge(survivor=survivor["id"], merged=merged["id"])


def _superseded_visit(b: MessageBuilder, event: str) -> bool:
    """A state event older than one already applied to the same visit (the inbox's
    out-of-order rule): the visit's state (the Encounter, an A11's retraction) is not
    touched, but the clinical segments are still applied against the same visit, so a
    late message never loses an allergy, a diagnosis or a resuscitation decision.
    Returns False when nothing after the patient is to be mapped (A11)."""
    pv1 = b.msg.first("PV1")
    visit = pv1.get(19) if pv1 is not None else ""
    if event == "A11":
        b.warn("visit state superseded by a newer message for the same visit: "
               "the cancellation was not applied")
        extra = sorted({s.name for s in b.msg.segments} & {"OBX", "AL1", "DG1"})
        if extra:
            b.warn(f"cancel admit: {', '.join(extra)} of the cancelled visit not applied")
        return False
    if visit:
        b.encounter_ref = {"reference": f"Encounter/{safe_key('enc', visit)}"}
    b.warn(f"visit state superseded by a newer message for visit {visit or '(none)'}: "
           f"Encounter not changed; patient and clinical segments applied")
    return True


def _cancel_admit(b: MessageBuilder) -> None:
    """A11: the admission / visit did not happen; retract the Encounter it created."""
    pv1 = b.msg.first("PV1")
    if pv1 is None or not pv1.get(19):
        raise MappingError("ADT^A11 needs the visit number (PV1-19) of the visit it cancels",
                           "PV1-19")
    # the Encounter is also sent as entered-in-error, so the cancellation says what it
    # means on its own; the pipeline's retraction then applies to it in source order
    _encounter(b, "A11")
    b.ctx.retract("Encounter", safe_key("enc", pv1.get(19)))
    extra = sorted({s.name for s in b.msg.segments} & {"OBX", "AL1", "DG1"})
    if extra:
        b.warn(f"cancel admit: {', '.join(extra)} of the cancelled visit not applied")


def _location(f: Field, status: str) -> dict[str, Any] | None:
    """PL: point of care^room^bed^facility^status^type^building^floor -> display reference."""
    parts = [f.get(1), f.get(2), f.get(3)]
    parts = [p for p in parts if p]
    if not parts:
        return None
    label = ", ".join(parts)
    if f.get(4):
        label += f" ({f.get(4)})"
    return {"location": {"display": label}, "status": status}


def _encounter(b: MessageBuilder, event: str) -> None:
    pv1 = b.msg.first("PV1")
    if pv1 is None and event == "A08":
        b.warn("ADT^A08 without PV1: patient details updated, no visit")
        return
    if pv1 is None:
        raise MappingError(f"ADT^{event} without a PV1 segment", "PV1")
    visit = pv1.field(19)
    start = b.when(pv1.get(44), pv1, "PV1-44 admit date") if pv1.get(44) else None
    end = b.when(pv1.get(45), pv1, "PV1-45 discharge date") if pv1.get(45) else None
    if visit.get(1):
        key = safe_key("enc", visit.get(1))
    elif start:
        key = safe_key("enc", b.patient_key, pv1.get(44))
        b.warn("PV1-19 (visit number) is empty; encounter keyed by patient and admit time",
               pv1)
    else:
        b.warn("PV1 has neither a visit number (PV1-19) nor an admit time (PV1-44); "
               "no Encounter created", pv1)
        return
    evn = b.msg.first("EVN")
    event_time = None
    if evn is not None:
        raw = evn.get(6) or evn.get(2)
        event_time = b.when(raw, evn, "EVN-2/EVN-6 event time") if raw else None
    klass = CLASS.get(pv1.get(2).upper(), "AMB" if event in ("A04", "A07") else "IMP")
    if event == "A06":
        klass = "IMP"
    elif event == "A07":
        klass = "AMB"
    status = "in-progress"
    if event == "A05":
        status = "planned"
    elif event == "A11":
        status = "entered-in-error"
    elif event == "A03":
        status = "finished"
        end = end or event_time
    elif event == "A08" and end:
        status = "finished"
    elif event == "A13":
        end = None
    if event in ("A01", "A04", "A06") and not start:
        start = event_time
    enc: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": key,
        "status": status,
        "class": {"system": ACT_CODE, "code": klass, "display": CLASS_DISPLAY.get(klass, klass)},
        "subject": b.patient_ref,
        "serviceProvider": b.organisation(),
    }
    ident = dt.identifier(visit)
    if ident:
        enc["identifier"] = [ident]
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if _before(period.get("end"), period.get("start")):
        b.warn("PV1-45 discharge is before PV1-44 admit; end not mapped", pv1)
        period.pop("end")
    if period:
        enc["period"] = period
    participants = []
    for n, code in ((7, "ATND"), (8, "REF"), (9, "CON"), (17, "ADM")):
        ref = b.practitioner(pv1, n)
        if ref:
            participants.append({"type": [{"coding": [{"system": PARTICIPATION, "code": code}]}],
                                 "individual": ref})
    if participants:
        enc["participant"] = participants
    locations = []
    current = _location(pv1.field(3), "completed" if status == "finished" else "active")
    if current:
        locations.append(current)
    prior = _location(pv1.field(6), "completed")
    # A02: PV1-6 is where the patient was before the transfer. A12 (v2.5.1 section
    # 3.3.12): PV1-3 is the location restored and PV1-6 the location of the cancelled
    # transfer, where the patient never (validly) was: it is not listed at all
    if prior and event == "A02":
        locations.append(prior)
    if locations:
        enc["location"] = locations
    hosp: dict[str, Any] = {}
    if pv1.get(14):
        hosp["admitSource"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v2-0023", "code": pv1.get(14)}]}
    if pv1.get(36):
        hosp["dischargeDisposition"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v2-0112", "code": pv1.get(36)}]}
    if hosp:
        enc["hospitalization"] = hosp
    pv2 = b.msg.first("PV2")
    if pv2 is not None:
        reason = dt.codeable_concept(pv2.field(3))
        if reason:
            enc["reasonCode"] = [reason]
    b.add(enc)
    b.encounter_ref = {"reference": f"Encounter/{key}"}


def _before(a: str | None, b: str | None) -> bool:
    """True when FHIR dateTime ``a`` is strictly earlier than ``b`` (both with times)."""
    if not a or not b or "T" not in a or "T" not in b:
        return False
    return datetime.fromisoformat(a) < datetime.fromisoformat(b)


def _allergy(b: MessageBuilder, al1: Segment) -> None:
    code = dt.codeable_concept(al1.field(3))
    if code is None:
        b.warn("AL1-3 (allergen) is empty; segment not mapped", al1)
        return
    allergy: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": safe_key("alg", b.patient_key, al1.get(3) or al1.get(3, 2)),
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
            "code": "active"}]},
        "code": code,
        "patient": b.patient_ref,
    }
    category = ALLERGY_CATEGORY.get(al1.get(2).upper())
    if category:
        allergy["category"] = [category]
    criticality = {"SV": "high", "MO": "low", "MI": "low", "U": "unable-to-assess"}.get(
        al1.get(4).upper())
    if criticality:
        allergy["criticality"] = criticality
    reactions = [r.get(1) for r in al1.repetitions(5) if r.get(1)]
    if reactions:
        allergy["reaction"] = [{"manifestation": [{"text": r} for r in reactions]}]
    if al1.get(6):
        onset = b.when(al1.get(6), al1, "AL1-6 identification date")
        if onset:
            allergy["recordedDate"] = onset
    b.add(allergy)


def _diagnosis(b: MessageBuilder, dg1: Segment) -> None:
    code = dt.codeable_concept(dg1.field(3)) or (
        {"text": dg1.get(4)} if dg1.get(4) else None)
    if code is None:
        b.warn("DG1-3/DG1-4 (diagnosis) is empty; segment not mapped", dg1)
        return
    scope = b.encounter_ref["reference"].split("/")[1] if b.encounter_ref else b.patient_key
    kind = dg1.get(6).upper()
    cond: dict[str, Any] = {
        "resourceType": "Condition",
        "id": safe_key("dx", scope, dg1.get(3) or dg1.get(4)),
        "clinicalStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "code": "active"}]},
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "code": "confirmed" if kind == "F" else "provisional"}]},
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
            "code": "encounter-diagnosis"}]}],
        "code": code,
        "subject": b.patient_ref,
    }
    if b.encounter_ref:
        cond["encounter"] = b.encounter_ref
    if dg1.get(5):
        when = b.when(dg1.get(5), dg1, "DG1-5 diagnosis date")
        if when:
            cond["recordedDate"] = when
    b.add(cond)
