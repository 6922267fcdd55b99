"""Consent index tables: per-resource facts and care-relationship links.

Kept next to the search index and maintained in the same write transaction
(:func:`consent.facts.index_facts`), so the consent gate can narrow searches in SQL
before LIMIT (design.md, "security filters go into the SQL builder"):

* ``consent_fact``: one row per current resource -- the patient it is about, the
  authoring organisation (ODS), whether it is legally restricted / not for the patient /
  a care preference / an in-force patient-privacy directive, and an Organization's
  own ODS code.
* ``consent_link``: links from a patient to an organisation that make a legitimate
  care relationship (registered GP practice, Encounter, EpisodeOfCare, CareTeam),
  with the period used for the look-back window.
"""

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, Integer, String, Table

from exchange.db.metadata import metadata

_BigIntPK = BigInteger().with_variant(Integer(), "sqlite")

consent_fact = Table(
    "consent_fact",
    metadata,
    Column("rid", BigInteger, primary_key=True, autoincrement=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=True),
    Column("author_org", String(64), nullable=True),
    Column("restricted", Boolean, nullable=False, default=False),
    Column("not_for_patient", Boolean, nullable=False, default=False),
    Column("care_pref", Boolean, nullable=False, default=False),
    Column("directive", Boolean, nullable=False, default=False),
    Column("ods_code", String(64), nullable=True),
    Index("ix_consent_fact_patient_id", "patient_id"),
    Index("ix_consent_fact_ods_code", "ods_code"),
    Index("ix_consent_fact_directive_patient", "directive", "patient_id"),
)

consent_link = Table(
    "consent_link",
    metadata,
    Column("id", _BigIntPK, primary_key=True, autoincrement=True),
    Column("rid", BigInteger, nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("org_ref", String(128), nullable=True),
    Column("org_ods", String(64), nullable=True),
    Column("period_end", DateTime(timezone=True), nullable=True),
    Index("ix_consent_link_rid", "rid"),
    Index("ix_consent_link_patient_id", "patient_id"),
    Index("ix_consent_link_org_ods", "org_ods"),
    Index("ix_consent_link_org_ref", "org_ref"),
)
