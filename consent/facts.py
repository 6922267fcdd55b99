"""What the consent layer needs to know about a resource, extracted on write.

Pure extraction (:func:`facts_of`, :func:`links_of`, :func:`patient_id_of`,
:func:`author_org_of`) is used both by the gate's per-resource check and by
:func:`index_facts`, which the write path calls in the write transaction to keep the
``consent_fact`` / ``consent_link`` tables (consent/tables.py) current.
:func:`reindex_facts` rebuilds them (after a policy or code-list change).

Relationship links (issue 5, "the care relationship"): Patient.generalPractitioner
(an Organization, registered GP practice), Encounter.serviceProvider,
EpisodeOfCare.managingOrganization, CareTeam.managingOrganization and
CareTeam.participant.member (FHIR R4 patient.html, encounter.html,
episodeofcare.html, careteam.html).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import orjson
from sqlalchemy import Connection, delete, insert, select, update

from consent.care_preferences import is_care_preference
from consent.directives import parse_instant
from consent.labels import security_labels
from consent.policy import Policy
from consent.tables import consent_fact, consent_link
from exchange.db.tables import resource_current as rc
from exchange.db.tables import resource_version as rv
from exchange.repository.bulkrows import insert_rows
from exchange.repository.patients import patient_id_of

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
SOURCE_PREFIX = "urn:exchange:source:"
_CLOSED = {"finished", "inactive", "completed"}
_VOID = {"cancelled", "entered-in-error"}


def author_org_of(resource: dict[str, Any], policy: Policy) -> str | None:
    """ODS code of the authoring organisation: the source-system tag, else meta.source."""
    meta = resource.get("meta") or {}
    for t in meta.get("tag") or []:
        if isinstance(t, dict) and t.get("system") in policy.authoring_tag_systems and t.get("code"):
            return str(t["code"])
    src = meta.get("source")
    if isinstance(src, str) and src.startswith(SOURCE_PREFIX):
        return unquote(src[len(SOURCE_PREFIX):].split("#")[0]) or None
    return None


def ods_of(resource: dict[str, Any]) -> str | None:
    for ident in resource.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == ODS and ident.get("value"):
            return str(ident["value"])
    return None


@dataclass(frozen=True)
class Facts:
    patient_id: str | None
    author_org: str | None
    restricted: bool
    not_for_patient: bool
    care_pref: bool
    directive: bool
    ods_code: str | None


def facts_of(resource: dict[str, Any], policy: Policy) -> Facts:
    labels = security_labels(resource)
    rtype = resource.get("resourceType")
    directive = False
    if rtype == "Consent" and resource.get("status") == "active":
        scope = (resource.get("scope") or {}).get("coding") or []
        directive = any(isinstance(c, dict) and c.get("code") == "patient-privacy" for c in scope)
    return Facts(
        patient_id=patient_id_of(resource),
        author_org=author_org_of(resource, policy),
        restricted=bool(labels & policy.legally_restricted_labels),
        not_for_patient=bool(labels & policy.not_for_patient_labels),
        care_pref=is_care_preference(resource),
        directive=directive,
        ods_code=ods_of(resource) if rtype == "Organization" else None,
    )


@dataclass(frozen=True)
class Link:
    patient_id: str
    kind: str
    org_ref: str | None
    org_ods: str | None
    period_end: datetime | None  # None = open


def _org(ref: Any) -> tuple[str | None, str | None]:
    if not isinstance(ref, dict):
        return None, None
    r = ref.get("reference")
    org_ref = None
    if isinstance(r, str) and "Organization/" in r:
        org_ref = "Organization/" + r.split("Organization/", 1)[1].split("/")[0]
    ident = ref.get("identifier")
    ods = None
    if isinstance(ident, dict) and ident.get("system") == ODS and ident.get("value"):
        ods = str(ident["value"])
    return org_ref, ods


def _end_of(resource: dict[str, Any]) -> datetime | None:
    """When the link stopped counting (None: still open), in UTC.

    In UTC because SQLite stores an aware datetime's wall time without its offset: an
    end of ``09:30+01:00`` kept as 09:30 would count for an hour too long there."""
    period = resource.get("period") if isinstance(resource.get("period"), dict) else {}
    end = parse_instant(period.get("end"), end=True)
    if end is None and resource.get("status") in _CLOSED:
        end = (parse_instant(period.get("start"))
               or parse_instant((resource.get("meta") or {}).get("lastUpdated")))
    return end.astimezone(UTC) if end is not None else None


def links_of(resource: dict[str, Any]) -> list[Link]:
    rtype = resource.get("resourceType")
    pid = patient_id_of(resource)
    if not pid or resource.get("status") in _VOID:
        return []
    orgs: list[tuple[str, Any]] = []
    if rtype == "Patient":
        orgs = [("registered_gp", g) for g in resource.get("generalPractitioner") or []]
        end = None
    elif rtype == "Encounter":
        orgs = [("encounter", resource.get("serviceProvider"))]
        end = _end_of(resource)
    elif rtype == "EpisodeOfCare":
        orgs = [("episode_of_care", resource.get("managingOrganization"))]
        end = _end_of(resource)
    elif rtype == "CareTeam":
        orgs = [("care_team", o) for o in resource.get("managingOrganization") or []]
        orgs += [("care_team", (p or {}).get("member")) for p in resource.get("participant") or []]
        end = _end_of(resource)
    else:
        return []
    out = []
    for kind, ref in orgs:
        org_ref, ods = _org(ref)
        if org_ref or ods:
            out.append(Link(pid, kind, org_ref, ods, end))
    return out


_ACTIVE: list[Policy] = []


def set_active_policy(policy: Policy) -> None:
    """The policy the write path indexes with (set by ``ConsentGate`` at start-up)."""
    _ACTIVE[:] = [policy]


def index_facts(conn: Connection, rid: int, resource_type: str, resource: dict[str, Any] | None,
                policy: Policy | None = None) -> None:
    """(Re)write the consent rows of ``rid``; ``resource`` None = deleted (links removed,
    facts kept so that the deleted resource's history stays narrowed as before).

    Called by the write path in the write transaction, right after the search index."""
    from consent.policy import cached_policy

    pol = policy or (_ACTIVE[0] if _ACTIVE else cached_policy(None))
    conn.execute(delete(consent_link).where(consent_link.c.rid == rid))
    if resource is None:
        # a delete keeps the last facts (its history stays as hidden as it was) but no
        # longer makes a care relationship or counts as a directive
        conn.execute(update(consent_fact).where(consent_fact.c.rid == rid).values(directive=False))
        return
    conn.execute(delete(consent_fact).where(consent_fact.c.rid == rid))
    f = facts_of(resource, pol)
    conn.execute(insert(consent_fact).values(
        rid=rid, res_type=resource_type, res_id=str(resource.get("id")), patient_id=_fit(f.patient_id),
        author_org=_fit(f.author_org), restricted=f.restricted, not_for_patient=f.not_for_patient,
        care_pref=f.care_pref, directive=f.directive, ods_code=_fit(f.ods_code),
    ))
    links = [lk for lk in links_of(resource) if _fit(lk.patient_id)]
    if links:
        conn.execute(insert(consent_link), [
            {"rid": rid, "patient_id": lk.patient_id, "kind": lk.kind, "org_ref": _fit(lk.org_ref, 128),
             "org_ods": _fit(lk.org_ods), "period_end": lk.period_end} for lk in links
        ])


def index_facts_many(conn: Connection, items: list[tuple[int, str, dict[str, Any]]],
                     fresh: set[int] | frozenset[int] = frozenset(), policy: Policy | None = None) -> None:
    """:func:`index_facts` for a whole batch of written (not deleted) resources, with
    set-based statements (the adapters' bulk writer). ``fresh`` rids have no rows yet."""
    from consent.policy import cached_policy

    if not items:
        return
    pol = policy or (_ACTIVE[0] if _ACTIVE else cached_policy(None))
    old = sorted(rid for rid, _, _ in items if rid not in fresh)
    for i in range(0, len(old), 500):
        chunk = old[i : i + 500]
        conn.execute(delete(consent_link).where(consent_link.c.rid.in_(chunk)))
        conn.execute(delete(consent_fact).where(consent_fact.c.rid.in_(chunk)))
    facts, links = [], []
    for rid, rtype, resource in items:
        f = facts_of(resource, pol)
        facts.append((rid, rtype, str(resource.get("id")), _fit(f.patient_id), _fit(f.author_org),
                      f.restricted, f.not_for_patient, f.care_pref, f.directive, _fit(f.ods_code)))
        links.extend((rid, lk.patient_id, lk.kind, _fit(lk.org_ref, 128), _fit(lk.org_ods), lk.period_end)
                     for lk in links_of(resource) if _fit(lk.patient_id))
    # driver-level bulk append (COPY / executemany): the same rows as Core inserts
    insert_rows(conn, consent_fact, _FACT_COLS, facts)
    insert_rows(conn, consent_link, _LINK_COLS, links)


_FACT_COLS = ("rid", "res_type", "res_id", "patient_id", "author_org", "restricted", "not_for_patient",
              "care_pref", "directive", "ods_code")
_LINK_COLS = ("rid", "patient_id", "kind", "org_ref", "org_ods", "period_end")


def _fit(value: str | None, limit: int = 64) -> str | None:
    """A value that cannot be a FHIR id or ODS code (too long) names nothing we store."""
    return value if value is not None and len(value) <= limit else None


def reindex_facts(conn: Connection, policy: Policy | None = None) -> int:
    """Rebuild the consent tables from the current versions; returns resources indexed."""
    conn.execute(delete(consent_fact))
    conn.execute(delete(consent_link))
    n, last = 0, -1
    while True:
        q = (select(rc.c.rid, rc.c.res_type, rv.c.content)
             .select_from(rc.join(rv, rv.c.seq == rc.c.seq))
             .where(rc.c.deleted.is_(False), rc.c.rid > last)
             .order_by(rc.c.rid).limit(500))
        rows = conn.execute(q).all()
        if not rows:
            return n
        for row in rows:
            if row.content is not None:
                index_facts(conn, row.rid, row.res_type, orjson.loads(bytes(row.content)), policy)
                n += 1
        last = rows[-1].rid


__all__ = ["Facts", "Link", "author_org_of", "facts_of", "index_facts",
           "links_of", "patient_id_of", "reindex_facts"]
