"""The adapter framework's own tables (docs/adapters.md, "Tables").

* ``adapter_person``: one row per person record of each source system (a *contribution*
  to a shared Patient). It maps the source's local person key to the shared Patient id,
  indexes verified NHS numbers and the demographic match key, and keeps the source's
  mapped Patient so the shared Patient can be recomposed from all contributions
  (demographics from the most authoritative source, identifiers from all).
* ``adapter_patient_link``: Patient.link entries created by merges (FHIR R4
  patient.html#links: replaces / replaced-by), so recomposition keeps them.
* ``adapter_unmatched``: the review queue of person records that could not be matched
  with certainty (never a silent merge).
* ``adapter_run``: one row per ingest run, its status and counts.
* ``adapter_seen``: the (resource type, local key) set stored by the last complete run of
  a full-extract source, to detect rows deleted in the source.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from exchange.db.metadata import metadata
from exchange.db.tables import BigIntPK

adapter_person = Table(
    "adapter_person",
    metadata,
    Column("source_system", String(128), primary_key=True),
    Column("local_key", String(128), primary_key=True),
    Column("patient_id", String(64), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("nhs_number", String(10), nullable=True),  # verified (Modulus 11) only
    Column("demo_key", String(255), nullable=True),
    Column("content", LargeBinary, nullable=False),  # the source's mapped Patient JSON
    Column("updated", DateTime(timezone=True), nullable=False),
    Index("ix_adapter_person_patient_id", "patient_id"),
    Index("ix_adapter_person_nhs_number", "nhs_number"),
    Index("ix_adapter_person_demo_key", "demo_key"),
)

adapter_patient_link = Table(
    "adapter_patient_link",
    metadata,
    Column("patient_id", String(64), primary_key=True),
    Column("other_id", String(64), primary_key=True),
    Column("link_type", String(16), nullable=False),  # replaces | replaced-by
    Column("source_system", String(128), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
)

adapter_unmatched = Table(
    "adapter_unmatched",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("source_system", String(128), nullable=False),
    Column("local_key", String(128), nullable=False),
    Column("patient_id", String(64), nullable=False),  # the provisional source Patient
    Column("reason", Text, nullable=False),
    Column("candidates", Text, nullable=False),  # JSON list of shared Patient ids
    Column("status", String(16), nullable=False),  # open | resolved
    Column("resolved_to", String(64), nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("resolved", DateTime(timezone=True), nullable=True),
    Index("ix_adapter_unmatched_source_system_local_key", "source_system", "local_key", unique=True),
    Index("ix_adapter_unmatched_status", "status"),
)

adapter_run = Table(
    "adapter_run",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("adapter", String(64), nullable=False),
    Column("source_system", String(128), nullable=False),
    Column("feed", Text, nullable=False),
    Column("status", String(16), nullable=False),  # running | complete | failed
    Column("started", DateTime(timezone=True), nullable=False),
    Column("finished", DateTime(timezone=True), nullable=True),
    Column("counts", Text, nullable=True),  # JSON
    Index("ix_adapter_run_source_system_adapter", "source_system", "adapter"),
)

adapter_seen = Table(
    "adapter_seen",
    metadata,
    Column("source_system", String(128), primary_key=True),
    Column("adapter", String(64), primary_key=True),
    Column("res_type", String(64), primary_key=True),
    Column("local_key", String(128), primary_key=True),
    Column("source_id", String(255), nullable=False),  # the record that produced it
)
