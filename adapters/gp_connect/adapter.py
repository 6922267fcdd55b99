"""``gp-connect``: GP Connect Access Record: Structured (FHIR STU3 Bundle) -> FHIR R4.

GP Connect Access Record: Structured 1.x (nhsconnect/gpconnect, CareConnect profiles).
``read`` parses each response Bundle (one file per patient), finds the patient, the
registered practice (Patient.managingOrganization, ODS code) and yields one record per
entry, Patient first. ``map`` validates the entry against the STU3 model
(``fhir.resources.STU3``), converts it (convert.py), rewrites references to local keys
and, for a coded resuscitation entry recorded as an Observation, also emits a Flag
(docs/adapters/gp-connect.md, "Resuscitation").

Local keys: Patient = NHS number, Organization = ODS code, Practitioner = SDS user id,
clinical entries = their GP-system identifier value (else ``<NHS number>-<entry id>``),
so the same record from a later extract updates in place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fhir.resources.STU3 import get_fhir_model_class
from pydantic import ValidationError

from adapters.base import (
    MappingContext,
    MappingError,
    RecordError,
    SourceAdapter,
    SourceLocation,
    SourceRecord,
)
from adapters.gp_connect import convert

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
SDS_USER = "https://fhir.nhs.uk/Id/sds-user-id"
CPR_CODES = {"450475007", "450476008", "304252001", "304253006"}
RENAMED_TYPES = {"ReferralRequest": "ServiceRequest"}
CONVERTERS: dict[str, Any] = {
    "Patient": convert.patient,
    "Organization": convert.organization,
    "Practitioner": convert.practitioner,
    "PractitionerRole": convert.practitioner_role,
    "AllergyIntolerance": convert.allergy,
    "Condition": convert.condition,
    "Medication": convert.medication,
    "MedicationStatement": convert.medication_statement,
    "Observation": convert.observation,
    "DiagnosticReport": convert.diagnostic_report,
    "ReferralRequest": convert.referral,
    "Immunization": convert.immunization,
    "List": convert.list_,
    "MedicationRequest": convert.medication_request,
    "Encounter": convert.encounter,
}


@dataclass
class BundleContext:
    """What every entry of one response needs: keys, the patient and the practice."""

    file: str
    nhs_number: str
    practice_ods: str | None
    keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # "Type/id" -> (R4 type, key)
    practice_key: str | None = None
    problem_ids: set[str] = field(default_factory=set)
    displays: dict[str, str] = field(default_factory=dict)  # "Type/id" -> name of the target
    practice_name: str | None = None

    @property
    def rewritten(self) -> set[str]:
        return {f"{t}/{k}" for t, k in self.keys.values()}


@dataclass
class Entry:
    resource: dict[str, Any]
    bundle: BundleContext
    index: int


def _first_identifier(res: dict[str, Any], system: str | None = None) -> str | None:
    for ident in res.get("identifier") or []:
        if ident.get("value") and (system is None or ident.get("system") == system):
            return str(ident["value"])
    return None


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")[:64] or "x"


def local_key(res: dict[str, Any], nhs: str) -> str:
    rtype = res.get("resourceType")
    if rtype == "Patient":
        return nhs
    if rtype == "Organization":
        ods = _first_identifier(res, ODS_SYSTEM)
        if ods:
            return _key(ods)
    if rtype == "Practitioner":
        sds = _first_identifier(res, SDS_USER)
        if sds:
            return _key(sds)
    if rtype not in ("Organization", "Practitioner"):
        ident = _first_identifier(res)
        if ident:
            return _key(ident)
    return _key(f"{nhs}-{res.get('id', '')}")


def bundle_context(bundle: dict[str, Any], file: str) -> BundleContext:
    resources = [e.get("resource") or {} for e in bundle.get("entry") or []]
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    if len(patients) != 1:
        raise MappingError(f"the Bundle holds {len(patients)} Patient entries; exactly one "
                           "is expected", "Bundle.entry.resource")
    nhs = _first_identifier(patients[0], NHS_SYSTEM)
    if not nhs:
        raise MappingError("the Patient has no NHS number identifier", "Patient.identifier")
    ctx = BundleContext(file=file, nhs_number=re.sub(r"\s", "", nhs), practice_ods=None)
    for entry, res in zip(bundle.get("entry") or [], resources, strict=True):
        rtype, rid = res.get("resourceType"), res.get("id")
        if not rtype or not rid:
            continue
        target = (RENAMED_TYPES.get(rtype, rtype), local_key(res, ctx.nhs_number))
        ctx.keys[f"{rtype}/{rid}"] = target
        if entry.get("fullUrl"):
            ctx.keys[entry["fullUrl"]] = target
        name = _display_name(res)
        if name:
            ctx.displays[f"{rtype}/{rid}"] = name
            if entry.get("fullUrl"):
                ctx.displays[entry["fullUrl"]] = name
    org_ref = (patients[0].get("managingOrganization") or {}).get("reference")
    for res in resources:
        if res.get("resourceType") == "Organization" and f"Organization/{res.get('id')}" == org_ref:
            ctx.practice_ods = _first_identifier(res, ODS_SYSTEM)
            ctx.practice_key = ctx.keys[org_ref][1]
            ctx.practice_name = res.get("name")
        if res.get("resourceType") == "List" and _is_problem_list(res):
            for item in res.get("entry") or []:
                ctx.problem_ids.add(str((item.get("item") or {}).get("reference")))
    return ctx


def _display_name(res: dict[str, Any]) -> str | None:
    """A practitioner's or organisation's name, for ``display`` on references to it."""
    if res.get("resourceType") == "Organization":
        return res.get("name")
    if res.get("resourceType") == "Practitioner":
        for name in res.get("name") or []:
            parts = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family")]
            text = " ".join(p for p in parts if p) or name.get("text")
            if text:
                return text
    return None


def _is_problem_list(res: dict[str, Any]) -> bool:
    codes = {c.get("code") for c in (res.get("code") or {}).get("coding") or []}
    return bool(codes & {"717711000000103", "1102481000000101"}) or "problem" in str(
        res.get("title", "")).lower()


class GpConnectAdapter(SourceAdapter):
    name = "gp-connect"
    version = "1.0"
    description = "GP Connect Access Record: Structured (STU3 Bundle) from GP practice systems"
    default_source_system = "gp-connect"
    source_kind = "gp"

    def read(self, paths: Sequence[Path]) -> Iterator[SourceRecord | RecordError]:
        for path in _files(paths):
            file = str(path)
            try:
                bundle = orjson.loads(path.read_bytes())
            except OSError as exc:
                yield RecordError(SourceLocation(file), f"cannot read file: {exc}")
                continue
            except orjson.JSONDecodeError as exc:
                yield RecordError(SourceLocation(file, getattr(exc, "lineno", None)),
                                  f"not valid JSON: {exc}")
                continue
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                yield RecordError(SourceLocation(file), "not a FHIR Bundle", "resourceType")
                continue
            try:
                bctx = bundle_context(bundle, file)
            except MappingError as exc:
                yield RecordError(SourceLocation(file), exc.reason, exc.element)
                continue
            entries = list(enumerate(bundle.get("entry") or []))
            entries.sort(key=lambda e: (e[1].get("resource") or {}).get("resourceType") != "Patient")
            for i, entry in entries:
                res = entry.get("resource") or {}
                where = SourceLocation(file, None, None,
                                       f"Bundle.entry[{i}] {res.get('resourceType')}/{res.get('id')}")
                if not res.get("resourceType") or not res.get("id"):
                    yield RecordError(where, "entry without resourceType and id", "resource")
                    continue
                rtype = res["resourceType"]
                key = local_key(res, bctx.nhs_number)
                yield SourceRecord(f"{bctx.practice_ods}|{rtype}|{key}", rtype,
                                   Entry(res, bctx, i), where)

    def map(self, record: SourceRecord, ctx: MappingContext) -> list[dict[str, Any]]:
        entry: Entry = record.data
        src, bctx = entry.resource, entry.bundle
        ss = ctx.source_system
        if bctx.practice_ods and re.fullmatch(r"[A-Z]\d{5}", ss or "") and ss != bctx.practice_ods:
            raise MappingError(f"record from practice {bctx.practice_ods} but the source system "
                               f"is {ss}", "Patient.managingOrganization")
        rtype = src["resourceType"]
        converter = CONVERTERS.get(rtype)
        if converter is None:
            raise MappingError(f"{rtype} is not mapped by the gp-connect adapter "
                               f"(mapped: {', '.join(sorted(CONVERTERS))})", "resourceType")
        _validate_stu3(src)

        def warn(text: str) -> None:
            ctx.warnings.append(f"{record.location}: {text}")

        practice = self._practice_ref(bctx)
        if rtype == "MedicationRequest":
            out = convert.medication_request(src, warn, _source_ref(src, bctx))
        elif rtype == "Encounter":
            out = converter(src, warn, practice)
        else:
            out = converter(src, warn)
        out = convert.finish(out)
        out["id"] = bctx.keys[f"{rtype}/{src['id']}"][1]
        if rtype == "Patient":
            refs = [r for r in out.get("generalPractitioner") or []
                    if not str(r.get("reference", "")).startswith("Organization/")]
            out["generalPractitioner"] = ([practice] if practice else []) + refs
            if practice is None:
                warn("no registered practice (Patient.managingOrganization with an ODS "
                     "code): the GP care relationship cannot be established")
            if not out["generalPractitioner"]:
                del out["generalPractitioner"]
        if rtype == "Condition" and f"Condition/{src['id']}" in bctx.problem_ids:
            cats = out.setdefault("category", [])
            if not any(c.get("code") == "problem-list-item"
                       for cc in cats for c in cc.get("coding") or []):
                cats.append({"coding": [{"system": convert.TERMINOLOGY + "condition-category",
                                         "code": "problem-list-item"}]})
        _rewrite(out, bctx, warn)
        resources = [out]
        if rtype == "Observation":
            flag = _cpr_flag(out)
            if flag:
                resources.append(flag)
        # no dict shared between resources: the pipeline rewrites references in place
        return [orjson.loads(orjson.dumps(r)) for r in resources]

    def _practice_ref(self, bctx: BundleContext) -> dict[str, Any] | None:
        if not bctx.practice_key:
            return None
        ref: dict[str, Any] = {"reference": f"Organization/{bctx.practice_key}"}
        if bctx.practice_ods:
            ref["identifier"] = {"system": ODS_SYSTEM, "value": bctx.practice_ods}
        if bctx.practice_name:
            ref["display"] = bctx.practice_name
        return ref


def _source_ref(src: dict[str, Any], bctx: BundleContext) -> str | None:
    behalf = ((src.get("requester") or {}).get("onBehalfOf") or {}).get("reference")
    if behalf and behalf in bctx.keys and bctx.keys[behalf][1] == bctx.practice_key:
        return behalf
    return None


def _validate_stu3(src: dict[str, Any]) -> None:
    try:
        get_fhir_model_class(src["resourceType"]).model_validate(src)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        raise MappingError(f"invalid STU3 {src['resourceType']}: {err.get('msg')}",
                           f"{src['resourceType']}.{path}" if path else src["resourceType"]) from None


def _rewrite(node: Any, bctx: BundleContext, warn: Any) -> None:
    """Bundle-relative references -> local keys; unknown targets kept as display only."""
    if isinstance(node, dict):
        for k, v in list(node.items()):
            if k == "reference" and isinstance(v, str):
                target = bctx.keys.get(v)
                if target is not None:
                    node[k] = f"{target[0]}/{target[1]}"
                    if v in bctx.displays and "display" not in node:
                        node["display"] = bctx.displays[v]
                elif v not in bctx.rewritten:
                    # (a reference this adapter built already points at a local key)
                    warn(f"reference {v} is not in the Bundle; kept as display text only")
                    del node[k]
                    node.setdefault("display", v)
            elif isinstance(v, dict | list):
                _rewrite(v, bctx, warn)
    elif isinstance(node, list):
        for item in node:
            _rewrite(item, bctx, warn)


def _cpr_flag(obs: dict[str, Any]) -> dict[str, Any] | None:
    """A coded resuscitation Observation also becomes a Flag the EoL engine reads."""
    codings = [c for c in (obs.get("code") or {}).get("coding") or []
               if c.get("system") == convert.SNOMED and c.get("code") in CPR_CODES]
    if not codings:
        return None
    status = {"entered-in-error": "entered-in-error", "cancelled": "inactive"}.get(
        obs.get("status", ""), "active")
    flag: dict[str, Any] = {
        "resourceType": "Flag",
        "id": obs["id"],
        "status": status,
        "category": [{"coding": [{"system": convert.TERMINOLOGY + "flag-category",
                                  "code": "clinical", "display": "Clinical"}]}],
        "code": {"coding": [codings[0]],
                 **({"text": codings[0]["display"]} if codings[0].get("display") else {})},
        "subject": obs["subject"],
    }
    start = obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("start")
    if start:
        flag["period"] = {"start": start}
    if obs.get("performer"):
        flag["author"] = obs["performer"][0]
    if obs.get("encounter"):
        flag["encounter"] = obs["encounter"]
    return flag


def _files(paths: Sequence[Path]) -> Iterator[Path]:
    for p in paths:
        p = Path(p)
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*.json") if f.is_file())
        else:
            yield p
