"""Recognise care preferences in parsed FHIR R4 resources (issue 6; docs/care-preferences.md).

Pure functions over resource dicts. Recognised (codes in ``eol_codes.yaml``):

* CPR status: Flag (flag.html) or GP Observation coded with a CPR code; a Consent
  (consent.html) with scope ``adr`` and category ``dnr``.
* ReSPECT / end of life care plans: CarePlan (careplan.html) by category or kind tag;
  QuestionnaireResponse (questionnaireresponse.html) by questionnaire or kind tag.
* ADRT (Flag, or Consent scope ``adr`` category ``acd``), LPA (Flag; the attorney is a
  RelatedPerson with a power-of-attorney RoleCode), preferred place of care and death
  (Observation), mental capacity (Observation / Flag / ClinicalImpression), end of life
  register (Flag / Observation).
"""

from __future__ import annotations

from typing import Any

from exchange.operations.eol_codes import CodeBook, CodeEntry, codebook
from exchange.operations.eol_elements import concept_text, ref_of, value_text
from exchange.operations.eol_model import (
    NOT_FOR_CPR,
    UNKNOWN_SOURCE,
    Attorney,
    FhirDate,
    Preference,
    parse_fhir_date,
)

FLAG_DETAIL_EXT = "http://hl7.org/fhir/StructureDefinition/flag-detail"
MAX_DETAILS = 25

# record status -> normalised status (per resource type's R4 status value set)
_STATUS = {
    "Flag": {"active": "active", "inactive": "cancelled", "entered-in-error": "entered-in-error"},
    "Observation": {
        "final": "active", "amended": "active", "corrected": "active",
        "cancelled": "cancelled", "entered-in-error": "entered-in-error",
        "registered": "draft", "preliminary": "draft", "unknown": "draft",
    },
    "Consent": {
        "active": "active", "rejected": "cancelled", "inactive": "cancelled",
        "entered-in-error": "entered-in-error", "draft": "draft", "proposed": "draft",
    },
    "CarePlan": {
        "active": "active", "on-hold": "active", "revoked": "cancelled", "completed": "cancelled",
        "entered-in-error": "entered-in-error", "draft": "draft", "unknown": "draft",
    },
    "QuestionnaireResponse": {
        "completed": "active", "amended": "active", "stopped": "cancelled",
        "entered-in-error": "entered-in-error", "in-progress": "draft",
    },
    "ClinicalImpression": {
        "completed": "active", "in-progress": "draft", "entered-in-error": "entered-in-error",
    },
}

CANDIDATE_TYPES = ("Flag", "Observation", "Consent", "CarePlan", "QuestionnaireResponse",
                   "ClinicalImpression", "RelatedPerson")


def source_of(res: dict[str, Any], book: CodeBook) -> tuple[str, str]:
    """(identity, label) of the source system: a source-system meta.tag (its system and
    code; label = display or code), else meta.source, else unknown."""
    meta = res.get("meta") or {}
    tags = [t for t in meta.get("tag") or [] if isinstance(t, dict) and t.get("code")]
    chosen = next((t for wanted in book.source_tag_systems for t in tags if t.get("system") == wanted), None)
    chosen = chosen or next((t for t in tags if str(t.get("system", "")).endswith("source-system")), None)
    if chosen is not None:
        return f"{chosen.get('system')}|{chosen['code']}", str(chosen.get("display") or chosen["code"])
    if meta.get("source"):
        return str(meta["source"]), str(meta["source"])
    return UNKNOWN_SOURCE, UNKNOWN_SOURCE


def _kind_tag(res: dict[str, Any], book: CodeBook) -> CodeEntry | None:
    for t in (res.get("meta") or {}).get("tag") or []:
        if isinstance(t, dict):
            hit = book.lookup(t)
            if hit and hit.system == book.kind_system:
                return hit
    return None


def _period(p: Any) -> tuple[FhirDate | None, FhirDate | None]:
    if not isinstance(p, dict):
        return None, None
    return parse_fhir_date(p.get("start")), parse_fhir_date(p.get("end"))


def _qr_details(items: list[Any], out: list[str], prefix: str = "") -> None:
    for item in items or []:
        if not isinstance(item, dict) or len(out) >= MAX_DETAILS:
            continue
        text = item.get("text") or item.get("linkId") or ""
        answers = [value_text(a) for a in item.get("answer") or [] if isinstance(a, dict)]
        answers = [a for a in answers if a]
        if answers:
            out.append(f"{prefix}{text}: {'; '.join(answers)}")
        _qr_details(item.get("item") or [], out, prefix=f"{prefix}{text} / " if text and not answers else prefix)
        for a in item.get("answer") or []:
            if isinstance(a, dict):
                _qr_details(a.get("item") or [], out, prefix)


def _base(res: dict[str, Any], kind: str, label: str, book: CodeBook, status: str) -> Preference:
    source_id, source = source_of(res, book)
    return Preference(
        kind=kind,
        resource_type=res["resourceType"],
        resource_id=str(res.get("id", "")),
        label=label,
        record_status=status,
        source=source,
        source_id=source_id,
        last_updated=(res.get("meta") or {}).get("lastUpdated"),
    )


def _status(res: dict[str, Any]) -> str:
    return _STATUS.get(res["resourceType"], {}).get(str(res.get("status", "")), "draft")


def classify(res: dict[str, Any], book: CodeBook | None = None) -> Preference | None:
    """The care preference ``res`` records, or None when it is not one."""
    book = book or codebook()
    rtype = res.get("resourceType")
    handler = _HANDLERS.get(rtype)  # type: ignore[arg-type]
    if handler is None:
        return None
    pref = handler(res, book)
    if pref is None:
        return None
    if pref.record_status == "cancelled" and _declared_superseded(res):
        pref.record_status = "superseded"
    if not pref.source_org:
        pref.source_org = pref.author_display if (pref.author_ref or "").startswith("Organization/") else None
    pref.details = [d for d in pref.details if d][:MAX_DETAILS]
    return pref


def _declared_superseded(res: dict[str, Any]) -> bool:
    """True when the source says (in an ``...entry-status`` extension) the record was superseded."""
    for ext in res.get("extension") or []:
        if isinstance(ext, dict) and str(ext.get("url", "")).endswith("entry-status"):
            coding = ext.get("valueCoding") or {}
            if str(coding.get("code", "")).lower() == "superseded":
                return True
    return False


def _flag(res: dict[str, Any], book: CodeBook) -> Preference | None:
    hit = book.lookup_concept(res.get("code")) or _kind_tag(res, book)
    if hit is None:
        return None
    p = _base(res, hit.kind, hit.display, book, _status(res))
    p.cpr = hit.cpr
    p.decided, p.review = _period(res.get("period"))
    p.author_ref, p.author_display = ref_of(res.get("author"))
    text = concept_text(res.get("code"))
    if text and text != hit.display:
        p.details.append(text)
    for ext in res.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == FLAG_DETAIL_EXT:
            ref, disp = ref_of(ext.get("valueReference"))
            if ref:
                p.linked.append(ref)
            if (ref is None and disp) or (ref and ref.startswith("DocumentReference/")):
                p.document = disp or ref  # where the signed form / full document is
            elif ref or disp:
                p.details.append(f"See {disp or ref}")
    if hit.kind == "mental_capacity":
        p.topic = text.lower()
    return p


def _observation(res: dict[str, Any], book: CodeBook) -> Preference | None:
    hit = book.lookup_concept(res.get("code")) or _kind_tag(res, book)
    value_hit = book.lookup_concept(res.get("valueCodeableConcept"))
    if hit is None and value_hit is not None and value_hit.kind == "cpr":
        hit = value_hit  # e.g. code "resuscitation status", value "Not for resuscitation"
    if hit is None:
        return None
    cpr = hit.cpr or (value_hit.cpr if value_hit else None)
    p = _base(res, hit.kind, hit.display, book, _status(res))
    p.cpr = cpr
    eff = res.get("effectivePeriod")
    if isinstance(eff, dict):
        p.decided, p.review = _period(eff)
    else:
        p.decided = parse_fhir_date(res.get("effectiveDateTime") or res.get("issued"))
    p.author_ref, p.author_display = ref_of(res.get("performer"))
    value = value_text(res)
    if hit.kind in ("place_of_care", "place_of_death", "mental_capacity") and value:
        p.label = f"{hit.display}: {value}"
    elif value and value != hit.display:
        p.details.append(value)
    if hit.kind == "mental_capacity":
        _, focus = ref_of(res.get("focus"))
        p.topic = str((res.get("code") or {}).get("text") or focus or "").lower()
    for comp in res.get("component") or []:
        if isinstance(comp, dict):
            p.details.append(f"{concept_text(comp.get('code'))}: {value_text(comp)}")
    p.details.extend(str(n.get("text")) for n in res.get("note") or [] if isinstance(n, dict))
    return p


def _consent(res: dict[str, Any], book: CodeBook) -> Preference | None:
    scopes = {c.get("code") for c in (res.get("scope") or {}).get("coding") or [] if isinstance(c, dict)}
    cats = {c.get("code") for cat in res.get("category") or [] if isinstance(cat, dict)
            for c in cat.get("coding") or [] if isinstance(c, dict)}
    rule = next(((k, cpr) for (scope, cat), (k, cpr) in book.consent_rules.items()
                 if scope in scopes and cat in cats), None)
    provision = res.get("provision") or {}
    codes = [c for c in provision.get("code") or [] if isinstance(c, dict)]
    for sub in provision.get("provision") or []:
        if isinstance(sub, dict):
            codes.extend(c for c in sub.get("code") or [] if isinstance(c, dict))
    coded = next((h for h in (book.lookup_concept(c) for c in codes) if h), None)
    if rule is None and coded is None:
        return None
    kind = coded.kind if coded else rule[0]  # type: ignore[index]
    cpr = coded.cpr if coded and coded.cpr else (rule[1] if rule else None)
    if kind == "cpr" and cpr is None:
        cpr = NOT_FOR_CPR
    label = coded.display if coded else book.titles[kind]
    if kind == "cpr" and not coded:
        label = "Do not attempt CPR (DNR consent)" if cpr == NOT_FOR_CPR else "For CPR"
    p = _base(res, kind, label, book, _status(res))
    p.cpr = cpr if kind == "cpr" else None
    start, end = _period(provision.get("period"))
    p.decided = parse_fhir_date(res.get("dateTime")) or start
    p.review = end
    p.author_ref, p.author_display = ref_of(res.get("performer"))
    org_ref, org_disp = ref_of(res.get("organization"))
    p.source_org = org_disp or org_ref
    if provision.get("type"):
        p.details.append(f"Provision: {provision['type']}")
    p.details.extend(concept_text(c) for c in codes if concept_text(c) != label)
    att = res.get("sourceAttachment") or {}
    sref, sdisp = ref_of(res.get("sourceReference"))
    if isinstance(att, dict) and (att.get("title") or att.get("url")):
        p.document = " ".join(x for x in (att.get("title"), att.get("url")) if x)
    elif sref or sdisp:
        p.document = sdisp or sref
    return p


def _careplan(res: dict[str, Any], book: CodeBook) -> Preference | None:
    hit = next((h for h in (book.lookup_concept(c) for c in res.get("category") or []) if h), None)
    hit = hit or _kind_tag(res, book)
    if hit is None:
        for act in res.get("activity") or []:
            detail = (act or {}).get("detail") or {}
            hit = book.lookup_concept(detail.get("code"))
            if hit:
                break
    if hit is None:
        return None
    label = res.get("title") or hit.display
    p = _base(res, hit.kind, str(label), book, _status(res))
    p.decided, p.review = _period(res.get("period"))
    p.decided = p.decided or parse_fhir_date(res.get("created"))
    p.author_ref, p.author_display = ref_of(res.get("author") or res.get("contributor"))
    if res.get("description"):
        p.details.append(str(res["description"]))
    for act in res.get("activity") or []:
        detail = (act or {}).get("detail") or {}
        text = detail.get("description") or concept_text(detail.get("code"))
        if text:
            p.details.append(str(text))
    p.details.extend(str(n.get("text")) for n in res.get("note") or [] if isinstance(n, dict))
    return p


def _questionnaire_response(res: dict[str, Any], book: CodeBook) -> Preference | None:
    hit = _kind_tag(res, book)
    q = str(res.get("questionnaire") or "").lower()
    if hit is None and q and any(m.lower() in q for m in book.questionnaire_markers):
        hit = next(iter(book.codes_for("respect")))
    if hit is None:
        return None
    p = _base(res, hit.kind, "ReSPECT form" if hit.kind == "respect" else hit.display, book, _status(res))
    p.decided = parse_fhir_date(res.get("authored"))
    p.author_ref, p.author_display = ref_of(res.get("author"))
    _qr_details(res.get("item") or [], p.details)
    return p


def _clinical_impression(res: dict[str, Any], book: CodeBook) -> Preference | None:
    hit = book.lookup_concept(res.get("code")) or _kind_tag(res, book)
    if hit is None:
        return None
    p = _base(res, hit.kind, hit.display, book, _status(res))
    p.decided = parse_fhir_date(res.get("effectiveDateTime") or res.get("date"))
    p.author_ref, p.author_display = ref_of(res.get("assessor"))
    p.topic = str(res.get("description") or "").lower() if hit.kind == "mental_capacity" else ""
    for key in ("description", "summary"):
        if res.get(key):
            p.details.append(str(res[key]))
    for f in res.get("finding") or []:
        if isinstance(f, dict):
            p.details.append(concept_text(f.get("itemCodeableConcept")))
    return p


_HANDLERS = {
    "Flag": _flag,
    "Observation": _observation,
    "Consent": _consent,
    "CarePlan": _careplan,
    "QuestionnaireResponse": _questionnaire_response,
    "ClinicalImpression": _clinical_impression,
}


def attorney_of(res: dict[str, Any], book: CodeBook | None = None) -> Attorney | None:
    """A RelatedPerson holding a lasting power of attorney, or None."""
    book = book or codebook()
    if res.get("resourceType") != "RelatedPerson":
        return None
    role = None
    for rel in res.get("relationship") or []:
        for c in (rel or {}).get("coding") or []:
            if isinstance(c, dict) and c.get("code") in book.attorney_roles:
                role = str(c.get("display") or c["code"])
    if role is None:
        return None
    names = res.get("name") or []
    name = ""
    if names and isinstance(names[0], dict):
        n = names[0]
        name = n.get("text") or " ".join([*(n.get("prefix") or []), *(n.get("given") or []), n.get("family") or ""]).strip()
    telecom = [f"{t.get('system', 'contact')}: {t.get('value')}" for t in res.get("telecom") or []
               if isinstance(t, dict) and t.get("value")]
    addr = None
    addresses = res.get("address") or []
    if addresses and isinstance(addresses[0], dict):
        a = addresses[0]
        addr = a.get("text") or ", ".join([*(a.get("line") or []), a.get("city") or "", a.get("postalCode") or ""]).strip(", ")
    return Attorney(
        resource_id=str(res.get("id", "")),
        name=name or "(name not recorded)",
        role=role,
        active=res.get("active", True) is not False,
        telecom=telecom,
        address=addr,
        source=source_of(res, book)[1],
        source_id=source_of(res, book)[0],
    )


def is_care_preference(res: dict[str, Any]) -> bool:
    """True when ``res`` is a care preference or an attorney (for the consent layer's
    "always shared for direct care" rule: one definition for both)."""
    return classify(res) is not None or attorney_of(res) is not None
