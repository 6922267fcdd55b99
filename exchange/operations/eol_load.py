"""Loading a patient's care preferences from the store, through the disclosure choke point.

Candidate resources are found with the reference search index (``search_reference``,
FHIR R4 search.html#reference: ``subject`` / ``patient`` = ``Patient/{id}``), an index
lookup rather than a scan. Every resource that will leave -- the Patient, each
preference, each attorney and each author -- passes
:func:`exchange.pipeline.disclosure.release` (design.md, "the one idea"); the
assessment is computed only from what was released, so a withheld record can never
show up indirectly (for example as one side of a conflict).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, and_, inspect, or_, select

from exchange.db.tables import resource_current as rc
from exchange.operations.eol_classify import CANDIDATE_TYPES, attorney_of, classify
from exchange.operations.eol_codes import codebook
from exchange.operations.eol_current import assess
from exchange.operations.eol_elements import ref_of
from exchange.operations.eol_model import Assessment, CareWarning, Preference
from exchange.outcome import Forbidden, Gone, NotFound
from exchange.pipeline.context import RequestContext
from exchange.pipeline.disclosure import gate_of, release
from exchange.repository.store import read_current, read_many_current, read_refs
from exchange.repository.stored import StoredResource

AUTHOR_TYPES = ("Practitioner", "PractitionerRole", "Organization")
_PATIENT_PARAMS = ("subject", "patient")


@dataclass
class Gathered:
    """A patient's released care-preference resources and their assessment."""

    patient: StoredResource
    preferences: list[StoredResource]
    supporting: list[StoredResource]  # authors (Practitioner / PractitionerRole / Organization)
    assessment: Assessment
    withheld: int = 0
    notices: list[str] = field(default_factory=list)


def candidate_rids(conn: Connection, patient_id: str) -> list[int]:
    """rids of current resources of the candidate types that point at the patient."""
    if _has_reference_index(conn):
        from exchange.search.tables import search_reference as sr
        from exchange.search.tables import search_token as st

        # Observations are numerous (vital signs, results): only those whose code,
        # value or kind tag is in the code book are candidates (token index lookup).
        book = codebook()
        pairs = list(book.by_coding)
        kind_systems = sorted({s for (s, _c), e in book.by_coding.items() if e.system == book.kind_system})
        coded_observations = select(st.c.rid).where(
            st.c.res_type == "Observation",
            or_(
                and_(st.c.param.in_(("code", "value-concept")),
                     or_(*(and_(st.c.system == s, st.c.code == c) for s, c in pairs))),
                and_(st.c.param == "_tag", st.c.system.in_(kind_systems)),
            ),
        )
        q = (
            select(sr.c.rid)
            .where(
                sr.c.target_type == "Patient",
                sr.c.target_id == patient_id,
                sr.c.res_type.in_(CANDIDATE_TYPES),
                sr.c.param.in_(_PATIENT_PARAMS),
                or_(sr.c.res_type != "Observation", sr.c.rid.in_(coded_observations)),
            )
            .distinct()
            .order_by(sr.c.rid)
        )
        return [r for (r,) in conn.execute(q)]
    # Without the search index (a database built before it existed): type-filtered scan.
    q = select(rc.c.rid).where(rc.c.res_type.in_(CANDIDATE_TYPES), rc.c.deleted.is_(False))
    rids = [r for (r,) in conn.execute(q)]
    target = f"Patient/{patient_id}"
    return [s.rid for s in read_many_current(conn, rids) if _points_at(s, target)]


def _points_at(res: StoredResource, target: str) -> bool:
    for key in _PATIENT_PARAMS:
        ref, _ = ref_of(res.data.get(key))
        if ref == target:
            return True
    return False


_INDEX_PRESENT: dict[str, bool] = {}


def _has_reference_index(conn: Connection) -> bool:
    """Whether the database has the search index (checked once per database URL)."""
    key = str(conn.engine.url)
    if key not in _INDEX_PRESENT:
        try:
            present = inspect(conn).has_table("search_reference")
        except Exception:  # noqa: BLE001 - inspection failure means "no index"
            present = False
        if not present:
            return False  # check again next time: migrations may add it while running
        _INDEX_PRESENT[key] = True
    return _INDEX_PRESENT[key]


def gather(
    conn: Connection, ctx: RequestContext, patient_id: str, *, now: datetime | None = None
) -> Gathered:
    """Load, release and assess the care preferences of ``patient_id``.

    Raises NotFound / Gone for an unknown / deleted patient and Forbidden when the
    requester may not see the patient at all.
    """
    ctx.patients.add(patient_id)
    patient = read_current(conn, "Patient", patient_id)
    if patient is None:
        raise NotFound(f"Patient/{patient_id} is not known")
    if patient.deleted:
        raise Gone(f"Patient/{patient_id} has been deleted")
    released_patient = release(conn, ctx, [patient])
    if not released_patient:
        raise Forbidden(f"You may not see the record of Patient/{patient_id}")

    stored = read_many_current(conn, candidate_rids(conn, patient_id))
    candidates = [s for s in stored if classify(s.data) is not None or attorney_of(s.data) is not None]
    withheld_before = ctx.withheld
    released = release(conn, ctx, candidates)
    withheld = ctx.withheld - withheld_before  # for the caller and the audit record only

    prefs: list[Preference] = []
    attorneys = []
    out: list[StoredResource] = []
    for s in released:
        p = classify(s.data)
        a = attorney_of(s.data) if p is None else None
        if p is not None:
            prefs.append(p)
            out.append(s)
        elif a is not None:
            attorneys.append(a)
            out.append(s)

    supporting = _authors(conn, ctx, prefs)
    assessment = assess(prefs, attorneys, now=now)
    assessment.warnings.extend(_withheld_warnings(ctx))
    for notice in ctx.informational:  # the consent layer's notes (e.g. withheld at the patient's request)
        if not any(notice in w.text for w in assessment.warnings):
            assessment.warnings.append(CareWarning("notice", notice))
    return Gathered(released_patient[0], out, supporting, assessment, withheld, list(ctx.informational))


def _withheld_warnings(ctx: RequestContext) -> list[CareWarning]:
    """What the clinician is told about care preferences that may not be shown.

    Never a count, and never derived from which records were withheld: that would tell
    the requester that a hidden record exists (a legally restricted one, say) and make
    the answer differ from the one without it. Both statements depend only on the
    patient's consent directives (the consent layer's notice, issue 6: "unless a Consent
    provision explicitly restricts this class, in which case the response says so") and
    on the token (exchange/auth/scoped_gate.py: types its scopes do not let it read)."""
    out: list[CareWarning] = []
    restricted = [n for n in ctx.informational if "preference" in n.lower()]
    if restricted:
        out.append(CareWarning(
            "withheld",
            f"{' '.join(restricted)} Records of this kind are not shown here; ask the patient or "
            "their GP practice.",
            reason="sharing",
        ))
    readable = getattr(gate_of(ctx), "readable", None)  # a ScopedGate: the token's type rules
    unreadable = [t for t in CANDIDATE_TYPES if readable is not None and not readable(t)]
    if unreadable:
        out.append(CareWarning(
            "withheld",
            f"This client's access token does not allow reading {', '.join(unreadable)} (SMART "
            "scopes): care preferences recorded as those types cannot be shown here, so their "
            "absence does not mean there are none.",
            reason="scope",
        ))
    return out


def _authors(conn: Connection, ctx: RequestContext, prefs: list[Preference]) -> list[StoredResource]:
    """Release the authors the preferences reference and fill in missing author names."""
    refs: list[tuple[str, str]] = []
    for p in prefs:
        if p.author_ref and "/" in p.author_ref:
            rtype, rid = p.author_ref.split("/", 1)
            if rtype in AUTHOR_TYPES and (rtype, rid) not in refs:
                refs.append((rtype, rid))
    if not refs:
        return []
    released = release(conn, ctx, read_refs(conn, refs))
    names = {s.reference: name_of(s.data) for s in released}
    orgs = {s.reference: _org_of(s.data) for s in released}
    for p in prefs:
        if p.author_ref in names:
            p.author_display = p.author_display or names[p.author_ref]
            if p.author_ref.startswith("Organization/"):
                p.source_org = p.source_org or names[p.author_ref]
            else:
                p.source_org = p.source_org or orgs.get(p.author_ref)
    return released


def name_of(res: dict) -> str | None:
    """A display name for a Practitioner, PractitionerRole or Organization."""
    if res.get("resourceType") == "Organization":
        return res.get("name")
    if res.get("resourceType") == "PractitionerRole":
        _, disp = ref_of(res.get("practitioner"))
        return disp
    names = res.get("name") or []
    if names and isinstance(names[0], dict):
        n = names[0]
        return n.get("text") or " ".join(
            [*(n.get("prefix") or []), *(n.get("given") or []), n.get("family") or ""]
        ).strip() or None
    return None


def _org_of(res: dict) -> str | None:
    if res.get("resourceType") == "PractitionerRole":
        ref, disp = ref_of(res.get("organization"))
        return disp or ref
    return None
