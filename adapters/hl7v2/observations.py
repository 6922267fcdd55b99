"""OBX -> Observation, and coded resuscitation decisions -> Flag.

HL7 v2.5.1 section 7.4.2 (OBX) and the v2-to-FHIR IG OBX -> Observation map: OBX-2
value type selects ``value[x]``, OBX-3 -> code, OBX-6 -> unit (UCUM when coded so),
OBX-7 -> referenceRange, OBX-8 -> interpretation, OBX-11 -> status, OBX-14 ->
effective, OBX-16 -> performer.

A resuscitation decision (SNOMED 450475007 "For attempted cardiopulmonary resuscitation",
450476008 "Not for attempted cardiopulmonary resuscitation", 304252001 "For
resuscitation", 304253006 "Not for resuscitation") in OBX-3 or OBX-5 also becomes a
Flag with that code, ``period.start`` = the decision date (OBX-14) and ``author`` = the
deciding clinician (OBX-16), which is what the end-of-life engine reads
(docs/care-preferences.md; codes as in exchange/operations/eol_codes.yaml).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.builder import MessageBuilder, safe_key
from adapters.hl7v2.parser import Field, Segment

CPR_CODES = {
    "450475007": "For attempted cardiopulmonary resuscitation",
    "450476008": "Not for attempted cardiopulmonary resuscitation",
    "304252001": "For resuscitation",
    "304253006": "Not for resuscitation",
}

STATUS = {
    "F": "final", "C": "corrected", "A": "amended", "P": "preliminary", "R": "preliminary",
    "S": "preliminary", "I": "registered", "D": "entered-in-error",
    "W": "entered-in-error", "X": "cancelled", "N": "cancelled", "U": "final",
}
INTERPRETATION_CODES = {
    "L", "H", "LL", "HH", "N", "A", "AA", "<", ">", "S", "R", "I", "U", "D", "B", "W",
    "IND", "NEG", "POS", "LU", "HU", "CAR", "E", "EX", "HX", "LX", "NS", "RR", "SDD",
    "SYN-R", "SYN-S", "TOX", "VS", "WR",
}
INTERP_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def _quantity(num: float | int, unit: Field) -> dict[str, Any]:
    q: dict[str, Any] = {"value": num}
    code, text, system = unit.get(1), unit.get(2), unit.get(3).upper()
    if code or text:
        q["unit"] = text or code
    if code and system in ("UCUM", "ISO+", "ANS+"):
        q["system"] = dt.UCUM
        q["code"] = code
    return q


def _structured_numeric(f: Field, unit: Field) -> tuple[str, Any] | None:
    """SN: comparator^num1^separator/suffix^num2."""
    comparator, n1, sep, n2 = f.get(1), dt.numeric(f.get(2)), f.get(3), dt.numeric(f.get(4))
    if n1 is None:
        return None
    if sep in ("-",) and n2 is not None:
        return "valueRange", {"low": _quantity(n1, unit), "high": _quantity(n2, unit)}
    if sep in (":", "/") and n2 is not None:
        return "valueRatio", {"numerator": {"value": n1}, "denominator": {"value": n2}}
    q = _quantity(n1, unit)
    if comparator in ("<", "<=", ">=", ">"):
        q["comparator"] = comparator
    return "valueQuantity", q


def obx_value(b: MessageBuilder, obx: Segment) -> tuple[str, Any] | None:
    """The ``value[x]`` of an OBX, or None if it has no value; warns on lossy cases."""
    vtype = obx.get(2).upper()
    reps = obx.repetitions(5)
    if not reps:
        return None
    unit = obx.field(6)
    first = reps[0]
    if vtype in ("NM",) and len(reps) == 1:
        num = dt.numeric(first.get(1))
        if num is not None:
            return "valueQuantity", _quantity(num, unit)
        b.warn(f"OBX-5 {first.get(1)!r} is not numeric; kept as text", obx)
        return "valueString", first.get(1)
    if vtype == "SN":
        sn = _structured_numeric(first, unit)
        if sn:
            return sn
    if vtype in ("CE", "CWE", "CNE", "CF"):
        cc = dt.codeable_concept(first)
        if len(reps) > 1:
            b.warn("OBX-5 repeats; only the first coded value is the Observation value", obx)
        return ("valueCodeableConcept", cc) if cc else None
    if vtype in ("DT", "TS", "DTM"):
        when = b.when(first.get(1), obx, "OBX-5")
        return ("valueDateTime", when) if when else None
    if vtype == "ED":
        return None  # encapsulated documents are attachments, handled by the caller
    text = "\n".join(
        " ".join(c for c in (r.get(i) for i in range(1, len(r.components) + 1)) if c)
        for r in reps
    ).strip()
    if vtype == "NM":
        b.warn("OBX-5 numeric value repeats; kept as text", obx)
    return ("valueString", text) if text else None


def ed_attachment(f: Field) -> dict[str, Any] | None:
    """ED: source application^type of data^data subtype^encoding^data -> Attachment."""
    kind, subtype, encoding, data = f.get(2), f.get(3), f.get(4).upper(), f.get(5)
    if not data:
        return None
    mime = f"{kind}/{subtype}".lower() if kind and subtype and "/" not in subtype else (
        subtype or "application/octet-stream").lower()
    if kind.upper() in ("TEXT", "TX") and subtype.upper() in ("", "RTF", "PLAIN"):
        mime = "text/rtf" if subtype.upper() == "RTF" else "text/plain"
    if encoding in ("BASE64", "B64"):
        try:
            raw = base64.b64decode(re.sub(r"\s+", "", data), validate=True)
        except ValueError:
            return None
    elif encoding == "HEX":
        try:
            raw = bytes.fromhex(data)
        except ValueError:
            return None
    else:
        raw = data.encode("utf-8")
    return {"contentType": mime, "data": base64.b64encode(raw).decode("ascii")}


def reference_range(text: str, unit: Field) -> dict[str, Any] | None:
    text = text.strip()
    if not text:
        return None
    m = re.fullmatch(r"([+-]?\d+\.?\d*)\s*-\s*([+-]?\d+\.?\d*)", text)
    if m:
        low, high = dt.numeric(m.group(1)), dt.numeric(m.group(2))
        if low is not None and high is not None:
            return {"low": _quantity(low, unit), "high": _quantity(high, unit)}
    m = re.fullmatch(r"([<>])=?\s*([+-]?\d+\.?\d*)", text)
    if m and dt.numeric(m.group(2)) is not None:
        side = "high" if m.group(1) == "<" else "low"
        return {side: _quantity(dt.numeric(m.group(2)), unit), "text": text}
    return {"text": text}


def cpr_code(obx: Segment) -> tuple[str, str] | None:
    """The SNOMED resuscitation code carried by OBX-3 or OBX-5, if any."""
    for f in [obx.field(3), *obx.repetitions(5)]:
        for code_c, sys_c, text_c in ((1, 3, 2), (4, 6, 5)):
            code = f.get(code_c)
            if code in CPR_CODES and dt.coding_system(f.get(sys_c)) in (dt.SNOMED, None):
                return code, f.get(text_c) or CPR_CODES[code]
    return None


def map_obx(b: MessageBuilder, obx: Segment, key: str, *,
            effective: str | None = None) -> dict[str, Any] | None:
    """One OBX -> an Observation (and a Flag for a resuscitation decision)."""
    code = dt.codeable_concept(obx.field(3))
    if code is None:
        b.warn("OBX-3 (observation identifier) is empty; segment not mapped", obx)
        return None
    status = STATUS.get(obx.get(11).upper(), "unknown")
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": safe_key("obs", key),
        "status": status,
        "code": code,
        "subject": b.patient_ref,
    }
    if b.encounter_ref:
        obs["encounter"] = b.encounter_ref
    when = b.when(obx.get(14), obx, "OBX-14") if obx.get(14) else effective
    if when:
        obs["effectiveDateTime"] = when
    value = obx_value(b, obx)
    if value:
        obs[value[0]] = value[1]
    rr = reference_range(obx.get(7), obx.field(6))
    if rr:
        obs["referenceRange"] = [rr]
    interp = []
    for f in obx.repetitions(8):
        flag = f.get(1)
        if flag:
            interp.append({"coding": [{"system": INTERP_SYSTEM, "code": flag}]}
                          if flag.upper() in INTERPRETATION_CODES else {"text": flag})
    if interp:
        obs["interpretation"] = interp
    performers = [r for r in (b.practitioner(obx, 16, i)
                              for i in range(len(obx.repetitions(16)))) if r]
    if performers:
        obs["performer"] = performers
    b.add(obs)
    cpr = cpr_code(obx)
    if cpr:
        _cpr_flag(b, obx, obs, cpr)
    return obs


def _cpr_flag(b: MessageBuilder, obx: Segment, obs: dict[str, Any],
              cpr: tuple[str, str]) -> None:
    code, display = cpr
    status = {"entered-in-error": "entered-in-error", "cancelled": "inactive"}.get(
        obs["status"], "active")
    flag: dict[str, Any] = {
        "resourceType": "Flag",
        "id": obs["id"],
        "status": status,
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/flag-category",
            "code": "clinical", "display": "Clinical"}]}],
        "code": {"coding": [{"system": dt.SNOMED, "code": code, "display": display}],
                 "text": display},
        "subject": b.patient_ref,
    }
    if obs.get("effectiveDateTime"):
        flag["period"] = {"start": obs["effectiveDateTime"]}
    else:
        b.warn("resuscitation decision has no decision date (OBX-14)", obx)
    if obs.get("performer"):
        flag["author"] = obs["performer"][0]
    else:
        b.warn("resuscitation decision has no deciding clinician (OBX-16)", obx)
    if b.encounter_ref:
        flag["encounter"] = b.encounter_ref
    b.add(flag)
