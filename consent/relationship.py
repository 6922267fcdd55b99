"""Legitimate care relationship, derived from the record itself (issue 5).

The requester's organisation (ODS code) has a care relationship with a patient when the
record holds, in ``consent_link`` (consent/facts.py), a link from the patient to that
organisation -- referenced by ODS identifier or as an Organization resource carrying
that ODS identifier -- of a kind the policy accepts: the registered GP practice
(Patient.generalPractitioner), an open or recent Encounter (serviceProvider) or
EpisodeOfCare (managingOrganization), or a CareTeam naming it (managingOrganization /
participant.member). *Recent* means ended no earlier than
``settings.relationship_lookback_days`` ago.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import ColumnElement, Connection, Select, and_, bindparam, exists, or_, select, true

from consent.tables import consent_fact, consent_link

_ORG_REFS = select(consent_fact.c.res_id).where(
    consent_fact.c.res_type == "Organization", consent_fact.c.ods_code == bindparam("ods")
)  # built once: executed on every clinician request


def org_refs_for(conn: Connection, ods: str) -> list[str]:
    """``Organization/<id>`` of every Organization resource identified by this ODS code."""
    return [f"Organization/{r}" for r in conn.execute(_ORG_REFS, {"ods": ods}).scalars()]


def _link_condition(ods: str, org_refs: list[str], cutoff: datetime,
                    kinds: frozenset[str]) -> ColumnElement[bool]:
    who = consent_link.c.org_ods == ods
    if org_refs:
        who = or_(who, consent_link.c.org_ref.in_(org_refs))
    when = or_(consent_link.c.period_end.is_(None), consent_link.c.period_end >= cutoff)
    return and_(who, when, consent_link.c.kind.in_(sorted(kinds)))


def unrelated(ods: str | None, org_refs: list[str], cutoff: datetime, kinds: frozenset[str],
              patient_id: ColumnElement[str]) -> ColumnElement[bool]:
    """True where ``patient_id`` has no qualifying link to this organisation.

    A correlated NOT EXISTS probing ``ix_consent_link_patient_id`` for each candidate,
    not ``NOT IN (every patient the organisation is linked to)``: that list is as long
    as the organisation's caseload (a GP practice: thousands) and PostgreSQL hashed it
    on every query, so the cost of every clinician's search grew with the practice.
    """
    if not ods:
        return true()
    return ~exists().where(consent_link.c.patient_id == patient_id,
                           _link_condition(ods, org_refs, cutoff, kinds))


@lru_cache(maxsize=16)
def _kind_statement(kinds: frozenset[str], with_refs: bool) -> Select:
    """The per-patient lookup, built once and executed with bound values."""
    who = consent_link.c.org_ods == bindparam("ods")
    if with_refs:
        who = or_(who, consent_link.c.org_ref.in_(bindparam("refs", expanding=True)))
    return (select(consent_link.c.kind)
            .where(consent_link.c.patient_id == bindparam("pid"), who,
                   or_(consent_link.c.period_end.is_(None),
                       consent_link.c.period_end >= bindparam("cutoff")),
                   consent_link.c.kind.in_(sorted(kinds)))
            .order_by(consent_link.c.kind)
            .limit(1))


def relationship_cutoff(now: datetime, lookback_days: int) -> datetime:
    """The earliest end of a link that still counts as *recent*: ``lookback_days`` before
    ``now``, rounded up to the next whole minute. The rounding lets the SQL narrowing of
    many requests share one expression (consent/narrowing.py); it only ever shortens the
    window (by under a minute), and the per-resource check uses the same cut-off, so the
    two never disagree."""
    cutoff = now - timedelta(days=lookback_days)
    whole = cutoff.replace(second=0, microsecond=0)
    return whole if whole == cutoff else whole + timedelta(minutes=1)


def relationship_kind(conn: Connection, ods: str | None, org_refs: list[str], patient_id: str,
                      now: datetime, lookback_days: int, kinds: frozenset[str]) -> str | None:
    """The kind of the first qualifying link (e.g. ``registered_gp``), or None."""
    if not ods:
        return None
    params: dict = {"ods": ods, "pid": patient_id, "cutoff": relationship_cutoff(now, lookback_days)}
    if org_refs:
        params["refs"] = org_refs
    return conn.execute(_kind_statement(kinds, bool(org_refs)), params).scalar()
