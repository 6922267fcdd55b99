"""ORU^R01 (unsolicited observation results) -> DiagnosticReport + Observations.

HL7 v2.5.1 Chapter 7 (ORU_R01: PID, PV1, {ORC, OBR, NTE*, {OBX, NTE*}*}*) and the
v2-to-FHIR IG (OBR -> DiagnosticReport, OBX -> Observation). One DiagnosticReport per
OBR, keyed by the filler order number (OBR-3, else placer OBR-2); its Observations are
keyed by report + position so a corrected re-send updates them in place. OBX segments
before any OBR (v2.8 patient-level observations) become stand-alone Observations.
An ED value (an encapsulated report, e.g. a PDF) becomes ``presentedForm``.
"""

from __future__ import annotations

from typing import Any

from adapters.base import MappingError
from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.builder import MessageBuilder, safe_key
from adapters.hl7v2.observations import ed_attachment, map_obx
from adapters.hl7v2.parser import Segment

REPORT_STATUS = {
    "O": "registered", "I": "registered", "S": "registered", "A": "partial",
    "P": "preliminary", "R": "preliminary", "N": "preliminary", "C": "corrected",
    "M": "amended", "F": "final", "X": "cancelled", "D": "entered-in-error", "Y": "final",
    "Z": "final",
}
SERVICE_SECTION = "http://terminology.hl7.org/CodeSystem/v2-0074"
MAPPED = {"MSH", "SFT", "PID", "PD1", "PV1", "PV2", "ORC", "OBR", "OBX", "NTE", "EVN"}


def map_oru(b: MessageBuilder) -> None:
    if b.msg.trigger_event not in ("R01", "R30", "R31", "R32"):
        raise MappingError(f"ORU^{b.msg.trigger_event} is not supported (ORU^R01 is)",
                           "MSH-9")
    b.patient()
    b.organisation()
    pv1 = b.msg.first("PV1")
    if pv1 is not None and pv1.get(19):
        b.encounter_ref = {"reference": f"Encounter/{safe_key('enc', pv1.get(19))}"}
    report: dict[str, Any] | None = None
    report_key = ""
    position = 0
    last: dict[str, Any] | None = None
    reports = 0
    for seg in b.msg.segments:
        if seg.name == "OBR":
            report, report_key = _report(b, seg)
            position = 0
            last = report
            reports += 1
        elif seg.name == "OBX":
            position += 1
            if report is None:
                key = f"{b.patient_key}-{seg.get(3) or 'obx'}-{seg.get(14) or position}"
                last = map_obx(b, seg, key)
                continue
            if seg.get(2).upper() == "ED":
                att = ed_attachment(seg.field(5))
                if att is None:
                    b.warn("OBX-5 encapsulated data is empty or not decodable; not mapped",
                           seg)
                else:
                    att["title"] = seg.get(3, 2) or "report"
                    report.setdefault("presentedForm", []).append(att)
                continue
            obs = map_obx(b, seg, f"{report_key}-{position}",
                          effective=report.get("effectiveDateTime"))
            if obs is not None:
                report.setdefault("result", []).append(
                    {"reference": f"Observation/{obs['id']}"})
            last = obs
        elif seg.name == "NTE":
            _note(b, seg, last)
    if reports == 0 and not any(s.name == "OBX" for s in b.msg.segments):
        raise MappingError("ORU message has no OBR or OBX segment: no result to record", "OBR")
    skipped = sorted({s.name for s in b.msg.segments} - MAPPED)
    if skipped:
        b.warn(f"segments not mapped: {', '.join(skipped)}")


def _report(b: MessageBuilder, obr: Segment) -> tuple[dict[str, Any], str]:
    code = dt.codeable_concept(obr.field(4))
    if code is None:
        raise MappingError(f"OBR-4 (universal service identifier) is empty at line {obr.line}",
                           "OBR-4")
    filler, placer = obr.get(3), obr.get(2)
    if not (filler or placer):
        raise MappingError(f"OBR at line {obr.line} has no filler (OBR-3) or placer "
                           "(OBR-2) order number", "OBR-3")
    key = safe_key("rep", filler or placer)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": key,
        "identifier": [
            {"system": f"{dt.LOCAL_ID_BASE}/{kind}-order", "value": value}
            for kind, value in (("filler", filler), ("placer", placer)) if value
        ],
        "status": REPORT_STATUS.get(obr.get(25).upper(), "unknown"),
        "code": code,
        "subject": b.patient_ref,
        "performer": [b.organisation()],
    }
    if obr.get(24):
        report["category"] = [{"coding": [{"system": SERVICE_SECTION, "code": obr.get(24)}]}]
    if b.encounter_ref:
        report["encounter"] = b.encounter_ref
    if obr.get(7):
        when = b.when(obr.get(7), obr, "OBR-7 observation date")
        if when:
            report["effectiveDateTime"] = when
    if obr.get(22):
        issued = b.when(obr.get(22), obr, "OBR-22 results reported")
        if issued and "T" in issued:
            report["issued"] = issued
    interpreter = b.practitioner(obr, 16)
    if interpreter:
        report["resultsInterpreter"] = [interpreter]
    b.add(report)
    return report, key.removeprefix("rep-")


def _note(b: MessageBuilder, nte: Segment, target: dict[str, Any] | None) -> None:
    text = "\n".join(f.get(1) for f in nte.repetitions(3) if f.get(1)).strip()
    if not text:
        return
    if target is None:
        b.warn("NTE before any OBR/OBX; comment not mapped", nte)
    elif target["resourceType"] == "Observation":
        target.setdefault("note", []).append({"text": text})
    else:
        existing = target.get("conclusion")
        target["conclusion"] = f"{existing}\n{text}" if existing else text
