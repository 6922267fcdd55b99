"""HL7 v2 data types to FHIR R4 data types.

Follows the HL7 v2-to-FHIR mapping IG (build.fhir.org/ig/HL7/v2-to-fhir, "Data Type
Maps"): TS/DTM -> dateTime, CX -> Identifier, XPN -> HumanName, XAD -> Address,
XTN -> ContactPoint, CE/CWE/CNE -> CodeableConcept, XCN -> a Practitioner reference.
UK conventions: the NHS number is a CX with assigning authority ``NHS`` and/or
identifier type ``NH``; consultants are identified by their GMC number.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from adapters.hl7v2.parser import Field

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
GMC_SYSTEM = "https://fhir.hl7.org.uk/Id/gmc-number"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
LOCAL_ID_BASE = "https://exchange.example.nhs.uk/Id/hl7v2"
LONDON = ZoneInfo("Europe/London")

# HL7 table 0396 coding-system names -> FHIR system URIs
CODE_SYSTEMS = {
    "SCT": SNOMED,
    "SNM": SNOMED,
    "SNOMED": SNOMED,
    "SNOMEDCT": SNOMED,
    "LN": LOINC,
    "LNC": LOINC,
    "LOINC": LOINC,
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9M": "http://hl7.org/fhir/sid/icd-9-cm",
    "UCUM": UCUM,
    "ISO+": UCUM,
    "READ": "http://read.info/readv2",
    "RD2": "http://read.info/readv2",
    "CTV3": "http://read.info/ctv3",
    "DMD": "https://dmd.nhs.uk",
    "OPCS4": "https://fhir.hl7.org.uk/Id/opcs-4",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
}

_TS = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$"
)


class DataTypeError(ValueError):
    """A value that does not conform to its HL7 data type."""


def ts_to_fhir(value: str, *, date_only: bool = False) -> str | None:
    """HL7 TS/DTM/DT (``YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]``) -> FHIR date/dateTime.

    Times without an offset are UK local time (Europe/London, daylight saving included).
    FHIR requires seconds and a zone once a time is given, so both are filled in.
    """
    value = value.strip()
    if not value:
        return None
    m = _TS.match(value)
    if not m:
        raise DataTypeError(f"{value!r} is not an HL7 date/time")
    year, month, day, hour, minute, sec, frac, tz = m.groups()
    try:
        datetime(int(year), int(month or 1), int(day or 1))
    except ValueError as exc:
        raise DataTypeError(f"{value!r} is not a valid date: {exc}") from None
    if date_only or hour is None:
        return "-".join(p for p in (year, month, day) if p)
    if not month or not day:
        raise DataTypeError(f"{value!r} has a time without a full date")
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute or 0),
                         int(sec or 0))
    except ValueError as exc:
        raise DataTypeError(f"{value!r} is not a valid time: {exc}") from None
    if tz:
        sign = tz[0]
        offset = f"{sign}{tz[1:3]}:{tz[3:5]}"
    else:
        off = local.replace(tzinfo=LONDON).utcoffset()
        minutes = int(off.total_seconds() // 60) if off is not None else 0
        sign = "+" if minutes >= 0 else "-"
        minutes = abs(minutes)
        offset = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    stamp = local.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        stamp += frac
    return stamp + offset


def coding_system(name: str) -> str | None:
    """A v2 coding-system name (table 0396) as a FHIR system URI, or a local URI."""
    name = name.strip()
    if not name:
        return None
    known = CODE_SYSTEMS.get(name.upper())
    if known:
        return known
    if name.upper().startswith("HL7") and name[3:].isdigit():
        return f"http://terminology.hl7.org/CodeSystem/v2-{name[3:]}"
    if name.upper() in ("L", "99LOCAL", "LOCAL") or name.upper().startswith("99"):
        return f"{LOCAL_ID_BASE}/codes/local"
    return f"{LOCAL_ID_BASE}/codes/{re.sub(r'[^A-Za-z0-9._-]', '-', name)}"


def codeable_concept(f: Field) -> dict[str, Any] | None:
    """CE / CWE / CNE: identifier^text^system^alt-identifier^alt-text^alt-system^..^..^original text."""
    if f.is_empty():
        return None
    codings: list[dict[str, Any]] = []
    for code_c, text_c, sys_c in ((1, 2, 3), (4, 5, 6)):
        code, text = f.get(code_c), f.get(text_c)
        if code:
            coding: dict[str, Any] = {"code": code}
            system = coding_system(f.get(sys_c))
            if system:
                coding["system"] = system
            if text:
                coding["display"] = text
            codings.append(coding)
    cc: dict[str, Any] = {}
    if codings:
        cc["coding"] = codings
    text = f.get(9) or f.get(2)
    if text:
        cc["text"] = text
    return cc or None


def identifier(f: Field, default_authority: str = "") -> dict[str, Any] | None:
    """CX: id^check digit^check scheme^assigning authority^identifier type code."""
    value = f.get(1).strip()
    if not value:
        return None
    authority = f.get(4) or default_authority
    id_type = f.get(5).upper()
    if is_nhs_identifier(f):
        return {"system": NHS_SYSTEM, "value": re.sub(r"[\s-]", "", value)}
    ident: dict[str, Any] = {"value": value}
    oid = f.component(4)
    if oid.get(3).upper() == "ISO" and oid.get(2):
        ident["system"] = f"urn:oid:{oid.get(2)}"
    else:
        slug = re.sub(r"[^A-Za-z0-9._-]", "-", authority or id_type or "local")
        ident["system"] = f"{LOCAL_ID_BASE}/{slug}"
    if id_type:
        ident["type"] = {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": id_type}
            ]
        }
    if id_type in ("MR", "PI", "PT"):
        ident["use"] = "usual"
    return ident


def is_nhs_identifier(f: Field) -> bool:
    return f.get(4).upper() in ("NHS", "NHSNBR") or f.get(5).upper() in ("NH", "NHS")


def human_name(f: Field) -> dict[str, Any] | None:
    """XPN: family&..^given^middle^suffix^prefix^degree^name type."""
    family = f.get(1, 1)
    given = [g for g in (f.get(2), f.get(3)) if g]
    if not family and not given:
        return None
    name: dict[str, Any] = {}
    if family:
        name["family"] = family
    if given:
        name["given"] = given
    if f.get(5):
        name["prefix"] = [f.get(5)]
    if f.get(4):
        name["suffix"] = [f.get(4)]
    use = {"L": "official", "D": "usual", "M": "maiden", "A": "nickname", "N": "nickname",
           "C": "old", "B": "official"}.get(f.get(7).upper())
    if use:
        name["use"] = use
    return name


def address(f: Field) -> dict[str, Any] | None:
    """XAD: street&..^other^city^state/county^postcode^country^address type."""
    lines = [x for x in (f.get(1, 1), f.get(2)) if x.strip()]
    addr: dict[str, Any] = {}
    if lines:
        addr["line"] = [x.strip() for x in lines]
    for key, comp in (("city", 3), ("district", 4), ("postalCode", 5), ("country", 6)):
        v = f.get(comp).strip()
        if v:
            addr[key] = v
    if not addr:
        return None
    kind = f.get(7).upper()
    use = {"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "billing"}.get(kind)
    if use:
        addr["use"] = use
    if kind in ("M",):
        addr["type"] = "postal"
    return addr


def contact_point(f: Field, default_use: str) -> dict[str, Any] | None:
    """XTN: [number]^use code^equipment^email^country^area^local^ext^..^..^..^unformatted."""
    equipment = f.get(3).upper()
    if equipment in ("INTERNET", "X.400"):
        email = f.get(4) or f.get(1)
        return {"system": "email", "value": email, "use": default_use} if email else None
    number = f.get(1).strip() or f.get(12).strip()
    if not number:
        number = " ".join(p for p in (f.get(6), f.get(7)) if p).strip()
    if not number:
        return None
    system = {"FX": "fax", "BP": "pager"}.get(equipment, "phone")
    use = {"PRN": "home", "WPN": "work", "ORN": "home", "VHN": "home",
           "EMR": "home"}.get(f.get(2).upper(), default_use)
    if equipment == "CP":
        use = "mobile"
    return {"system": system, "value": number, "use": use}


def practitioner_name(f: Field) -> str:
    """XCN display text: prefix given family."""
    parts = [f.get(6), f.get(3), f.get(2, 1)]
    return " ".join(p for p in parts if p).strip()


def practitioner(f: Field) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """XCN -> (Practitioner resource with local key as id, reference) or (None, display ref).

    XCN: id^family&..^given^middle^suffix^prefix^degree^source table^assigning authority.
    The local key is the id number (a GMC/GDC/NMC number or the trust's staff code).
    """
    if f.is_empty():
        return None, None
    code = f.get(1).strip()
    display = practitioner_name(f)
    if not code:
        return None, ({"display": display} if display else None)
    authority = (f.get(9) or f.get(13)).upper()
    system = GMC_SYSTEM if authority in ("GMC", "GMC NUMBER") or re.fullmatch(
        r"[CG]\d{7}", code) else f"{LOCAL_ID_BASE}/practitioner/{re.sub(r'[^A-Za-z0-9._-]', '-', authority or 'local')}"
    key = re.sub(r"[^A-Za-z0-9.-]", "-", code)
    resource: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": f"prac-{key}",
        "identifier": [{"system": system, "value": code}],
    }
    name: dict[str, Any] = {}
    if f.get(2, 1):
        name["family"] = f.get(2, 1)
    given = [g for g in (f.get(3), f.get(4)) if g]
    if given:
        name["given"] = given
    if f.get(6):
        name["prefix"] = [f.get(6)]
    if name:
        resource["name"] = [name]
    ref: dict[str, Any] = {"reference": f"Practitioner/prac-{key}"}
    if display:
        ref["display"] = display
    return resource, ref


def numeric(value: str) -> float | int | None:
    value = value.strip()
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)", value):
        return None
    num = float(value)
    return int(num) if re.fullmatch(r"[+-]?\d+", value) else num
