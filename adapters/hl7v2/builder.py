"""Shared state for mapping one HL7 v2 message: the resources built so far, local keys,
the Patient (PID/PD1), the trust Organization (MSH-4) and the Encounter (PV1).

HL7 v2.5.1 Chapter 3 (PID, PD1, PV1, MRG) and the v2-to-FHIR IG segment maps
(PID -> Patient, PV1 -> Encounter). Local keys follow adapters/base.py: unique within
the source system and resource type, stable across re-sends of the same message.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from adapters.base import MappingContext, MappingError
from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.parser import Message, Segment

ODS_PATTERN = re.compile(r"^[A-Z0-9]{3,6}$")
#: names for trust ODS codes that send only the code in MSH-4 (documented in docs)
KNOWN_ORGANISATIONS = {
    "REM": "Liverpool University Hospitals NHS Foundation Trust",
    "RBQ": "Liverpool Heart and Chest Hospital NHS Foundation Trust",
    "REP": "Liverpool Women's NHS Foundation Trust",
}


def safe_key(*parts: str) -> str:
    """A FHIR-id-safe local key (``[A-Za-z0-9.-]{1,64}``) from the given parts."""
    raw = "-".join(p for p in parts if p)
    key = re.sub(r"[^A-Za-z0-9.-]+", "-", raw).strip("-") or "x"
    if len(key) > 64:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
        key = key[:47] + "-" + digest
    return key


class MessageBuilder:
    """Collects the FHIR resources of one message, first occurrence of each id wins."""

    def __init__(self, msg: Message, ctx: MappingContext, *, visit_state: bool = True) -> None:
        self.msg = msg
        self.ctx = ctx
        #: False for an ADT whose visit state is superseded by a newer message for the
        #: same visit (adapters/hl7v2/inbox.py): everything but the Encounter is mapped
        self.visit_state = visit_state
        self._resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.patient_ref: dict[str, Any] | None = None
        self.patient_key: str = ""
        self.org_ref: dict[str, Any] | None = None
        self.encounter_ref: dict[str, Any] | None = None

    # -- bookkeeping --------------------------------------------------------------
    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        key = (resource["resourceType"], resource["id"])
        if key not in self._resources:
            self._resources[key] = resource
        return self._resources[key]

    def resources(self) -> list[dict[str, Any]]:
        # references are shared dicts while building: hand out independent copies
        return [orjson.loads(orjson.dumps(r)) for r in self._resources.values()]

    def warn(self, text: str, seg: Segment | None = None) -> None:
        where = f" (line {seg.line}, {seg.name})" if seg is not None else ""
        self.ctx.warnings.append(f"message {self.msg.control_id}{where}: {text}")

    def when(self, value: str, seg: Segment, element: str, *, date_only: bool = False) -> str | None:
        try:
            return dt.ts_to_fhir(value, date_only=date_only)
        except dt.DataTypeError as exc:
            self.warn(f"{element} not mapped: {exc}", seg)
            return None

    def practitioner(self, seg: Segment, n: int, rep: int = 0) -> dict[str, Any] | None:
        resource, ref = dt.practitioner(seg.field(n, rep))
        if resource is not None:
            self.add(resource)
        return ref

    # -- the trust -----------------------------------------------------------------
    def organisation(self) -> dict[str, Any]:
        """The sending trust (MSH-4) as an Organization; its ODS code when it has one."""
        if self.org_ref is not None:
            return self.org_ref
        hd = self.msg.msh.field(4)
        code = hd.get(1).strip() or self.ctx.source_system
        if not code:
            raise MappingError("MSH-4 (sending facility) is empty", "MSH-4")
        is_ods = bool(ODS_PATTERN.match(code)) or hd.get(3).upper() == "ODS"
        system = dt.ODS_SYSTEM if is_ods else f"{dt.LOCAL_ID_BASE}/facility"
        name = KNOWN_ORGANISATIONS.get(code) or (
            hd.get(2) if hd.get(2) and hd.get(3).upper() == "ODS" else code
        )
        key = safe_key("org", code)
        self.add({
            "resourceType": "Organization",
            "id": key,
            "identifier": [{"system": system, "value": code}],
            "active": True,
            "name": name,
        })
        self.org_ref = {
            "reference": f"Organization/{key}",
            "identifier": {"system": system, "value": code},
            "display": name,
        }
        return self.org_ref

    # -- the patient ----------------------------------------------------------------
    def patient(self) -> dict[str, Any]:
        """PID (+PD1) -> Patient; sets ``patient_ref``. Raises if no usable identifier."""
        pid = self.msg.first("PID")
        if pid is None:
            raise MappingError("no PID segment", "PID")
        identifiers: list[dict[str, Any]] = []
        local: str = ""
        nhs: str = ""
        for n in (3, 2, 4):  # PID-3 patient identifier list; PID-2/4 (v2.3 external/alt)
            for f in pid.repetitions(n):
                ident = dt.identifier(f)
                if ident is None or ident in identifiers:
                    continue
                identifiers.append(ident)
                if ident["system"] == dt.NHS_SYSTEM:
                    nhs = nhs or ident["value"]
                elif not local and n == 3:
                    local = ident["value"]
        if not identifiers:
            raise MappingError("PID-3 has no patient identifier", "PID-3")
        self.patient_key = safe_key("pat", local or nhs or identifiers[0]["value"])
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "id": self.patient_key,
            "identifier": identifiers,
            "active": True,
        }
        names = [n for n in (dt.human_name(f) for f in pid.repetitions(5)) if n]
        if names:
            patient["name"] = names
        gender = {"M": "male", "F": "female", "O": "other", "A": "other", "U": "unknown",
                  "N": "unknown"}.get(pid.get(8).upper())
        if gender:
            patient["gender"] = gender
        if pid.get(7):
            birth = self.when(pid.get(7), pid, "PID-7 birth date", date_only=True)
            if birth:
                patient["birthDate"] = birth
        addresses = [a for a in (dt.address(f) for f in pid.repetitions(11)) if a]
        if addresses:
            patient["address"] = addresses
        telecom = [c for c in (dt.contact_point(f, "home") for f in pid.repetitions(13)) if c]
        telecom += [c for c in (dt.contact_point(f, "work") for f in pid.repetitions(14)) if c]
        if telecom:
            patient["telecom"] = telecom
        self._deceased(pid, patient)
        marital = pid.get(16).upper()
        if marital:
            patient["maritalStatus"] = {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                "code": marital}]} if marital in set("ADILMPSTUW") else {"text": marital}
        self._registered_gp(patient)
        self.add(patient)
        self.patient_ref = {"reference": f"Patient/{self.patient_key}"}
        return patient

    def _deceased(self, pid: Segment, patient: dict[str, Any]) -> None:
        if pid.get(29):
            when = self.when(pid.get(29), pid, "PID-29 death date")
            if when:
                patient["deceasedDateTime"] = when
                return
        if pid.get(30).upper() in ("Y", "N"):
            patient["deceasedBoolean"] = pid.get(30).upper() == "Y"

    def _registered_gp(self, patient: dict[str, Any]) -> None:
        """PD1-3 (registered practice, XON) and PD1-4 (registered GP, XCN)."""
        pd1 = self.msg.first("PD1")
        if pd1 is None:
            return
        refs: list[dict[str, Any]] = []
        practice = pd1.field(3)
        code = practice.get(10) or practice.get(3)
        name = practice.get(1)
        if code and ODS_PATTERN.match(code):
            key = safe_key("org", code)
            org: dict[str, Any] = {"resourceType": "Organization", "id": key, "active": True,
                                   "identifier": [{"system": dt.ODS_SYSTEM, "value": code}]}
            if name:
                org["name"] = name
            self.add(org)
            refs.append({"reference": f"Organization/{key}",
                         "identifier": {"system": dt.ODS_SYSTEM, "value": code},
                         **({"display": name} if name else {})})
        elif name:
            self.warn(f"PD1-3 practice {name!r} has no ODS code; kept as display only", pd1)
            refs.append({"display": name})
        gp = self.practitioner(pd1, 4)
        if gp:
            refs.append(gp)
        if refs:
            patient["generalPractitioner"] = refs

    def merged_patient(self, mrg: Segment) -> dict[str, Any]:
        """MRG-1 (prior patient identifier list) -> the Patient being merged away."""
        identifiers = [i for i in (dt.identifier(f) for f in mrg.repetitions(1)) if i]
        if not identifiers:
            raise MappingError("MRG-1 (prior patient identifier) is empty", "MRG-1")
        local = next((i["value"] for i in identifiers if i["system"] != dt.NHS_SYSTEM), "")
        key = safe_key("pat", local or identifiers[0]["value"])
        return {"resourceType": "Patient", "id": key, "identifier": identifiers,
                "active": False}
