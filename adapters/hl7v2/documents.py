"""MDM^T02 / T04 / T06 / T08 / T10 (document with content) -> DocumentReference.

HL7 v2.5.1 Chapter 9 (MDM, TXA) and the v2-to-FHIR IG (TXA -> DocumentReference).
The document text is the OBX-5 values in order (TX / FT / ST lines joined by newlines,
kept as a ``text/plain`` attachment); an ED value (e.g. a PDF) is kept as is. TXA-12
(unique document number) is the key, so an edit (T08) or replacement (T10) of the same
document updates it. TXA-2 ``DS`` (discharge summary) is coded SNOMED 373942005.
"""

from __future__ import annotations

import base64
from typing import Any

from adapters.base import MappingError
from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.builder import MessageBuilder, safe_key
from adapters.hl7v2.observations import ed_attachment

WITH_CONTENT = {"T02", "T04", "T06", "T08", "T10"}
DOC_TYPES = {
    "DS": ("373942005", "Discharge summary"),
    "TS": ("371535009", "Transfer summary report"),
    "CN": ("371530004", "Clinical consultation report"),
}
FINAL = {"PA", "AU", "LA"}
MAPPED = {"MSH", "SFT", "EVN", "PID", "PD1", "PV1", "PV2", "TXA", "OBX", "NTE", "ORC", "OBR",
          "TQ1"}


def map_mdm(b: MessageBuilder) -> None:
    event = b.msg.trigger_event
    if event not in WITH_CONTENT:
        raise MappingError(f"MDM^{event} is not supported (documents with content: "
                           f"{', '.join(sorted(WITH_CONTENT))})", "MSH-9")
    txa = b.msg.first("TXA")
    if txa is None:
        raise MappingError("MDM message without a TXA segment", "TXA")
    b.patient()
    org = b.organisation()
    pv1 = b.msg.first("PV1")
    if pv1 is not None and pv1.get(19):
        b.encounter_ref = {"reference": f"Encounter/{safe_key('enc', pv1.get(19))}"}
    content = _content(b)
    if not content:
        raise MappingError("the document has no content (no OBX-5 text or encapsulated data)",
                           "OBX-5")
    number = txa.get(12) or txa.get(13)
    if not number:
        raise MappingError("TXA-12 (unique document number) is empty", "TXA-12")
    doc_type = txa.get(2).upper()
    type_codings: list[dict[str, Any]] = []
    if doc_type in DOC_TYPES:
        code, display = DOC_TYPES[doc_type]
        type_codings.append({"system": dt.SNOMED, "code": code, "display": display})
    if doc_type:
        type_codings.append({"system": "http://terminology.hl7.org/CodeSystem/v2-0270",
                             "code": doc_type})
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": safe_key("doc", number),
        "masterIdentifier": {"system": f"{dt.LOCAL_ID_BASE}/document", "value": number},
        "status": "superseded" if txa.get(19).upper() == "OB" else "current",
        "docStatus": "final" if txa.get(17).upper() in FINAL else "preliminary",
        "subject": b.patient_ref,
        "custodian": org,
        "content": content,
    }
    if type_codings:
        doc["type"] = {"coding": type_codings,
                       **({"text": DOC_TYPES[doc_type][1]} if doc_type in DOC_TYPES else {})}
    date_raw = txa.get(4) or txa.get(6) or b.msg.msh.get(7)
    when = b.when(date_raw, txa, "TXA-4 activity date") if date_raw else None
    if when and "T" in when:
        doc["date"] = when
    authors = [r for r in (b.practitioner(txa, 9, i) for i in range(len(txa.repetitions(9))))
               if r]
    if not authors:
        authors = [r for r in [b.practitioner(txa, 5)] if r]
    authors.append(org)
    doc["author"] = authors
    authenticator = b.practitioner(txa, 22)
    if authenticator and "reference" in authenticator:
        doc["authenticator"] = authenticator
    if b.encounter_ref:
        doc["context"] = {"encounter": [b.encounter_ref]}
    b.add(doc)
    skipped = sorted({s.name for s in b.msg.segments} - MAPPED)
    if skipped:
        b.warn(f"segments not mapped: {', '.join(skipped)}")


def _content(b: MessageBuilder) -> list[dict[str, Any]]:
    lines: list[str] = []
    content: list[dict[str, Any]] = []
    for obx in b.msg.all("OBX"):
        vtype = obx.get(2).upper()
        if vtype in ("TX", "FT", "ST", "CF"):
            for f in obx.repetitions(5):
                lines.append(f.get(1))
        elif vtype == "ED":
            att = ed_attachment(obx.field(5))
            if att is None:
                b.warn("OBX-5 encapsulated data is empty or not decodable; not mapped", obx)
            else:
                content.append({"attachment": att})
        else:
            b.warn(f"OBX value type {vtype or '(none)'} is not document content; "
                   "not mapped", obx)
    text = "\n".join(lines).strip("\n")
    if text:
        content.insert(0, {"attachment": {
            "contentType": "text/plain",
            "language": "en-GB",
            "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
            "title": "Document text",
        }})
    return content
