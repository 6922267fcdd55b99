"""Audit tables on the shared metadata (issue 7; FHIR R4 AuditEvent, IHE BALP).

* ``audit_event``: one row per AuditEvent, in chain order. ``seq`` is assigned by the
  writer that holds the chain head lock, so it is gap-free; ``content`` holds the
  canonical AuditEvent JSON bytes exactly as served; ``hash`` = SHA-256 over
  ``seq | prev_hash | content`` (see :mod:`exchange.audit.chain`). The other columns are
  derived from ``content`` for IG queries and are re-derived by ``verify``.
* ``audit_event_patient``: every patient an event concerns (a search can touch many).
* ``audit_checkpoint``: signed (Ed25519) checkpoints of the chain: count, head hash.
* ``audit_head``: the single-row chain head, locked per batch by every writer process.
* ``audit_retention_lease``: present only inside the retention job's transaction; the
  append-only triggers let a DELETE through only while a lease row exists.
* ``ig_user``: local accounts for the IG console (scrypt hashes).

``audit_event``, ``audit_event_patient`` and ``audit_checkpoint`` are append-only: the
migration ``0002_audit_append_only`` installs triggers refusing UPDATE and DELETE.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
)

from exchange.db.metadata import metadata

audit_event = Table(
    "audit_event",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("recorded", DateTime(timezone=True), nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    # derived columns for IG queries (re-derived from content by verify)
    Column("type_code", String(32), nullable=False),  # rest | 110114 (user authentication)
    Column("subtype", String(64), nullable=False),  # read, vread, search-type, token, ...
    Column("action", String(1), nullable=False),  # C R U D E
    Column("outcome", SmallInteger, nullable=False),  # 0 4 8 12
    Column("agent", String(128), nullable=True),  # practitioner SDS id
    Column("agent_name", String(256), nullable=True),
    Column("client_id", String(128), nullable=True),
    Column("organization", String(64), nullable=True),  # ODS code
    Column("role", String(64), nullable=True),
    Column("purpose", String(16), nullable=True),  # TREAT ETREAT BTG
    Column("break_glass", Boolean, nullable=False, default=False),
    Column("break_glass_reason", Text, nullable=True),
    Column("relationship", Boolean, nullable=True),  # care relationship established?
    Column("withheld", Integer, nullable=False, default=0),
    Column("released", Integer, nullable=False, default=0),
    Column("resource_type", String(64), nullable=True),
    Column("entity_types", Text, nullable=False, default=""),  # " Patient Observation "
    Index("ix_audit_event_recorded", "recorded"),
    Index("ix_audit_event_agent_recorded", "agent", "recorded"),
    Index("ix_audit_event_client_id", "client_id"),
    Index("ix_audit_event_organization", "organization"),
    Index("ix_audit_event_break_glass_recorded", "break_glass", "recorded"),
)

audit_event_patient = Table(
    "audit_event_patient",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("patient_id", String(64), primary_key=True),
    Index("ix_audit_event_patient_patient_id", "patient_id", "seq"),
)

audit_checkpoint = Table(
    "audit_checkpoint",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # periodic | manual | retention
    Column("event_count", BigInteger, nullable=False),  # seq of the last event covered
    Column("head_hash", String(64), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", String(200), nullable=False),  # base64 Ed25519 signature
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("event_count", BigInteger, nullable=False),
    Column("head_hash", String(64), nullable=False),
    Column("checkpointed", BigInteger, nullable=False),  # event_count at the last checkpoint
)

audit_retention_lease = Table(
    "audit_retention_lease",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("before_seq", BigInteger, nullable=False),
)

ig_user = Table(
    "ig_user",
    metadata,
    Column("username", String(128), primary_key=True),
    Column("password_hash", String(256), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
)

APPEND_ONLY_TABLES = ("audit_event", "audit_event_patient", "audit_checkpoint")
