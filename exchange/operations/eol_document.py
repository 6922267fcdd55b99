"""Rendering an assessment as a FHIR R4 document Bundle (documents.html, composition.html).

The Bundle (type ``document``) starts with a Composition whose sections are, in order:
resuscitation status, ReSPECT recommendations, advance decisions, lasting power of
attorney, preferred place of care and death, mental capacity, end of life register, and
conflicts and warnings. Every section entry is an absolute reference to a resource in
the Bundle and carries extensions naming its state, author, date, review date, source
system and source organisation; the section narrative says the same for a human.
Conflicts and warnings are generated DetectedIssue resources (detectedissue.html)
implicating the decisions concerned.
"""

from __future__ import annotations

import html
import uuid
from datetime import datetime
from typing import Any

from exchange.operations.eol_codes import codebook
from exchange.operations.eol_model import (
    CURRENT,
    NOT_FOR_CPR,
    STATE_LABELS,
    Assessment,
    Attorney,
    Preference,
)

CANONICAL_BASE = "https://exchange.example.nhs.uk/fhir"
SECTION_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/care-preference-section"
ISSUE_SYSTEM = f"{CANONICAL_BASE}/CodeSystem/care-preference-issue"
EXT = f"{CANONICAL_BASE}/StructureDefinition/care-preference-"
EXT_STATE, EXT_AUTHOR, EXT_DATE = EXT + "state", EXT + "author", EXT + "date"
EXT_REVIEW, EXT_SOURCE, EXT_SOURCE_ORG = EXT + "review-date", EXT + "source", EXT + "source-organization"
XHTML = "http://www.w3.org/1999/xhtml"

#: (section code, title, kinds shown in it)
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("resuscitation-status", "Resuscitation status", ("cpr",)),
    ("respect", "ReSPECT recommendations and care priorities", ("respect",)),
    ("advance-decisions", "Advance decisions to refuse treatment", ("adrt",)),
    ("lasting-power-of-attorney", "Lasting power of attorney for health and welfare", ("lpa",)),
    ("preferred-place", "Preferred place of care and death", ("place_of_care", "place_of_death")),
    ("mental-capacity", "Mental capacity assessments", ("mental_capacity",)),
    ("end-of-life-register", "End of life care register", ("eol_register",)),
)
CONFLICTS_SECTION = ("conflicts-and-warnings", "Conflicts and warnings")

_SEVERITY = {"conflict": "high", "review-overdue": "moderate", "incomplete": "low", "withheld": "low",
             "notice": "low"}


def instant(ts: datetime) -> str:
    return ts.isoformat(timespec="seconds").replace("+00:00", "Z")


def headline(a: Assessment) -> str:
    """The one thing to know first: conflict, current CPR decision, or none recorded."""
    if a.conflicts:
        return "CONFLICTING resuscitation decisions from different sources: check before acting."
    cpr = a.current("cpr")
    if cpr:
        return "; ".join(f"{p.label} ({p.source})" for p in cpr)
    if any(p.kind == "cpr" for p in a.items):
        return "No current resuscitation decision (earlier decisions are not current; see below)."
    return "No resuscitation decision recorded in the shared record."


def render_document(
    a: Assessment,
    *,
    patient: dict[str, Any],
    resources: list[dict[str, Any]],
    base_url: str,
    now: datetime,
) -> dict[str, Any]:
    """The document Bundle for one patient's assessment (``resources`` = released resources)."""
    base = base_url.rstrip("/")

    def full(ref: str) -> str:
        return f"{base}/{ref}"

    patient_ref = f"Patient/{patient['id']}"
    issues = _issues(a, full(patient_ref), now, full)
    sections = []
    for code, title, kinds in SECTIONS:
        items = [p for p in a.items if p.kind in kinds]
        attorneys = a.attorneys if "lpa" in kinds else []
        sections.append(_section(code, title, items, attorneys, full))
    conflict_rows = [f"<li><b>{_e(i['_label'])}</b>: {_e(i['detail'])}</li>" for i in issues]
    sections.append({
        "title": CONFLICTS_SECTION[1],
        "code": _code(SECTION_SYSTEM, CONFLICTS_SECTION[0], CONFLICTS_SECTION[1]),
        "text": _narrative(
            f"<ul>{''.join(conflict_rows)}</ul>" if conflict_rows else "<p>No conflicts or warnings.</p>"
        ),
        **({"entry": [{"reference": i["_fullUrl"]} for i in issues]} if issues else
           {"emptyReason": _code("http://terminology.hl7.org/CodeSystem/list-empty-reason", "nilknown", "Nil Known")}),
    })
    comp_id = str(uuid.uuid4())
    composition = {
        "resourceType": "Composition",
        "id": comp_id,
        "text": _narrative(f"<p><b>{_e(headline(a))}</b></p>"),
        "status": "final",
        "type": _code(SECTION_SYSTEM, "care-preferences", "Resuscitation and end of life care preferences"),
        "subject": {"reference": full(patient_ref)},
        "date": instant(now),
        "author": [{"display": "Integrated care record exchange (generated from the shared record)"}],
        "title": "Resuscitation and end of life care preferences",
        "section": sections,
    }
    entries = [{"fullUrl": f"urn:uuid:{comp_id}", "resource": composition},
               {"fullUrl": full(patient_ref), "resource": patient}]
    seen = {patient_ref}
    for r in resources:
        ref = f"{r['resourceType']}/{r['id']}"
        if ref not in seen:
            seen.add(ref)
            entries.append({"fullUrl": full(ref), "resource": r})
    for i in issues:
        url = i.pop("_fullUrl")
        i.pop("_label")
        entries.append({"fullUrl": url, "resource": i})
    bundle_id = str(uuid.uuid4())
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "meta": {"lastUpdated": instant(now)},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{bundle_id}"},
        "type": "document",
        "timestamp": instant(now),
        "entry": entries,
    }


def _code(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _e(text: object) -> str:
    return html.escape(str(text), quote=False)


def _narrative(inner: str) -> dict[str, str]:
    return {"status": "generated", "div": f'<div xmlns="{XHTML}">{inner}</div>'}


def _entry_ref(p: Preference, full) -> dict[str, Any]:  # noqa: ANN001
    ext: list[dict[str, Any]] = [{"url": EXT_STATE, "valueCode": p.state}]
    if p.author_ref:
        ext.append({"url": EXT_AUTHOR, "valueReference": {"reference": full(p.author_ref),
                                                           **({"display": p.author_display} if p.author_display else {})}})
    elif p.author_display:
        ext.append({"url": EXT_AUTHOR, "valueReference": {"display": p.author_display}})
    if p.decided:
        ext.append({"url": EXT_DATE, "valueDateTime": p.decided.text})
    if p.review:
        ext.append({"url": EXT_REVIEW, "valueDateTime": p.review.text})
    ext.append({"url": EXT_SOURCE, "valueString": p.source})
    if p.source_org:
        ext.append({"url": EXT_SOURCE_ORG, "valueString": p.source_org})
    return {"extension": ext, "reference": full(p.reference), "display": p.label}


def _row(p: Preference) -> str:
    state = STATE_LABELS.get(p.state, p.state)
    flag = "<b>" if p.state == CURRENT else ""
    end = "</b>" if p.state == CURRENT else ""
    cells = [
        f"{flag}{_e(state)}{end}",
        f"{flag}{_e(p.label)}{end}" + (" (DNACPR)" if p.cpr == NOT_FOR_CPR and p.state == CURRENT else ""),
        _e(p.author_display or p.author_ref or "not recorded"),
        _e(p.decided.text if p.decided else "not recorded"),
        _e(p.review.text if p.review else ""),
        _e(p.source) + (f" / {_e(p.source_org)}" if p.source_org else ""),
        "<br/>".join(_e(d) for d in p.details) + (f"<br/>Document: {_e(p.document)}" if p.document else ""),
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _attorney_row(a: Attorney) -> str:
    contact = "; ".join(a.telecom + ([a.address] if a.address else [])) or "no contact details recorded"
    status = "" if a.active else " (no longer active)"
    return f"<li>Attorney: <b>{_e(a.name)}</b> ({_e(a.role)}){status}: {_e(contact)} [source {_e(a.source)}]</li>"


def _section(code: str, title: str, items: list[Preference], attorneys: list[Attorney], full) -> dict[str, Any]:  # noqa: ANN001
    head = "<tr><th>Status</th><th>Decision</th><th>Author</th><th>Date</th><th>Review</th><th>Source</th><th>Detail</th></tr>"
    parts = []
    if items:
        parts.append(f"<table>{head}{''.join(_row(p) for p in items)}</table>")
    if attorneys:
        parts.append(f"<ul>{''.join(_attorney_row(a) for a in attorneys)}</ul>")
    section: dict[str, Any] = {
        "title": title,
        "code": _code(SECTION_SYSTEM, code, title),
        "text": _narrative("".join(parts) or "<p>None recorded in the shared record.</p>"),
    }
    entries = [_entry_ref(p, full) for p in items]
    entries += [{"reference": full(a.reference), "display": f"Attorney: {a.name}"} for a in attorneys]
    if entries:
        section["entry"] = entries
    else:
        section["emptyReason"] = _code("http://terminology.hl7.org/CodeSystem/list-empty-reason", "nilknown", "Nil Known")
    return section


def _issues(a: Assessment, patient_url: str, now: datetime, full) -> list[dict[str, Any]]:  # noqa: ANN001
    titles = codebook().titles
    out: list[dict[str, Any]] = []

    def issue(kind: str, label: str, detail: str, implicated: list[Preference]) -> None:
        iid = str(uuid.uuid4())
        res: dict[str, Any] = {
            "resourceType": "DetectedIssue",
            "id": iid,
            "status": "final",
            "code": _code(ISSUE_SYSTEM, kind, label),
            "severity": _SEVERITY[kind],
            "patient": {"reference": patient_url},
            "identifiedDateTime": instant(now),
            "detail": detail,
        }
        if implicated:
            res["implicated"] = [{"reference": full(p.reference), "display": p.label} for p in implicated]
        res["_fullUrl"] = f"urn:uuid:{iid}"
        res["_label"] = label
        out.append(res)

    for c in a.conflicts:
        issue("conflict", f"Conflict: {titles[c.kind]}", c.summary, c.items)
    labels = {"review-overdue": "Review date passed", "incomplete": "Incomplete record",
              "withheld": "Information withheld", "notice": "Sharing notice"}
    for w in a.warnings:
        issue(w.code, labels.get(w.code, w.code), w.text, [w.item] if w.item else [])
    return out
